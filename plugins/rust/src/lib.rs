//! json_tidy: a Tollgate plugin in Rust.
//!
//! - `on-response`: an answer that is JSON wrapped in a Markdown code fence (```json ... ```)
//!   is replaced by the bare JSON, so clients that parse the answer get JSON;
//! - `score`: 1.0 for an answer that parses as JSON, 0.5 for one that does after tidying,
//!   0.0 otherwise (a confidence signal for cascades that want JSON);
//! - and a keyword guard like the other examples: `deny` words refuse a request (403),
//!   `redact` words become [REDACTED], `stop` words cut a streamed answer off.
//!
//! Config (JSON): {"deny": ["falcon"], "redact": ["acme"], "stop": ["answer"]}

use std::sync::Mutex;

wit_bindgen::generate!({ world: "plugin", path: "../wit/v0.1" });

use exports::tollgate::plugin::hooks::Guest;
use tollgate::plugin::host;
use tollgate::plugin::types::{
    ChunkVerdict, Denial, HookSet, Level, Message, Modification, Request, Response,
    ResponseVerdict, StreamState, Target, Verdict,
};

struct Words {
    deny: Vec<String>,
    redact: Vec<String>,
    stop: Vec<String>,
}

/// Set by `init`; lives as long as the instance (one thread, so the lock is never contended).
static CONFIG: Mutex<Words> = Mutex::new(Words {
    deny: Vec::new(),
    redact: Vec::new(),
    stop: Vec::new(),
});

fn settings() -> std::sync::MutexGuard<'static, Words> {
    CONFIG.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn words(v: &serde_json::Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(|w| w.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|w| w.as_str())
                // An empty word would match everywhere (and never advance the redaction).
                .filter(|w| !w.is_empty())
                .map(|w| w.to_lowercase())
                .collect()
        })
        .unwrap_or_default()
}

/// The first word of `list` in `text`, ignoring case.
fn find<'a>(list: &'a [String], text: &str) -> Option<&'a str> {
    let lower = text.to_lowercase();
    list.iter().find(|w| lower.contains(w.as_str())).map(String::as_str)
}

/// `text` with every word of `list` replaced by [REDACTED] (ASCII case-insensitive).
fn redact(list: &[String], text: &str) -> String {
    let mut out = String::from(text);
    for w in list {
        let mut next = String::with_capacity(out.len());
        let lower = out.to_ascii_lowercase();
        let mut i = 0;
        while let Some(at) = lower[i..].find(w.as_str()) {
            next.push_str(&out[i..i + at]);
            next.push_str("[REDACTED]");
            i += at + w.len();
        }
        next.push_str(&out[i..]);
        out = next;
    }
    out
}

/// The JSON inside a Markdown code fence, if the answer is one.
fn unfenced(text: &str) -> Option<&str> {
    let t = text.trim();
    let body = t.strip_prefix("```")?.strip_suffix("```")?;
    let body = body.strip_prefix("json").unwrap_or(body);
    Some(body.trim())
}

fn is_json(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok()
}

struct JsonTidy;

impl Guest for JsonTidy {
    fn init(config: String) -> Result<HookSet, String> {
        let v: serde_json::Value = if config.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&config).map_err(|e| format!("json_tidy: config: {e}"))?
        };
        *settings() = Words {
            deny: words(&v, "deny"),
            redact: words(&v, "redact"),
            stop: words(&v, "stop"),
        };
        Ok(HookSet::ON_REQUEST | HookSet::ON_RESPONSE | HookSet::ON_CHUNK | HookSet::SCORE)
    }

    fn on_request(req: Request) -> Verdict {
        let cfg = settings();
        for m in &req.messages {
            if let Some(w) = find(&cfg.deny, &m.text) {
                host::metric("denied", 1);
                return Verdict::Deny(Denial {
                    status: 403,
                    message: format!("json_tidy: the request mentions \"{w}\""),
                });
            }
        }
        if cfg.redact.is_empty() {
            return Verdict::Allow;
        }
        let messages: Vec<Message> = req
            .messages
            .iter()
            .map(|m| Message {
                role: m.role.clone(),
                text: redact(&cfg.redact, &m.text),
            })
            .collect();
        if messages.iter().zip(&req.messages).all(|(a, b)| a.text == b.text) {
            return Verdict::Allow;
        }
        host::log(Level::Info, "json_tidy: redacted the request");
        Verdict::Modify(Modification {
            messages: Some(messages),
            max_tokens: None,
            model: None,
            tags: None,
        })
    }

    fn on_response(_req: Request, resp: Response) -> ResponseVerdict {
        match unfenced(&resp.text) {
            Some(json) if is_json(json) => ResponseVerdict::Replace(json.to_string()),
            _ => ResponseVerdict::Allow,
        }
    }

    fn on_chunk(_req: Request, chunk: String, state: StreamState) -> ChunkVerdict {
        let cfg = settings();
        let window = format!("{}{}", state.tail, chunk);
        match find(&cfg.stop, &window) {
            Some(w) => ChunkVerdict::Stop(format!("json_tidy: the answer mentions \"{w}\"")),
            None => ChunkVerdict::Pass,
        }
    }

    fn score(_req: Request, resp: Response) -> f32 {
        if is_json(resp.text.trim()) {
            1.0
        } else if unfenced(&resp.text).is_some_and(is_json) {
            0.5
        } else {
            0.0
        }
    }

    fn route(_req: Request, _candidates: Vec<Target>) -> Option<Vec<Target>> {
        None
    }
}

export!(JsonTidy);
