//! The format-neutral answer: each route reads its request into a [`Prompt`], the answer is
//! computed once from it, and the route renders that [`Answer`] in its own wire format.
//!
//! Equal seed text and token cap give the same answer in every format.

use crate::{faults::Faults, sim, text};
use serde_json::{Map, Value, json};

/// What any wire format's request boils down to.
pub(crate) struct Prompt {
    /// The text the answer is derived from: the last user turn's text.
    pub(crate) seed_text: String,
    /// Prompt size, from [`prompt_tokens`].
    pub(crate) prompt_tokens: u64,
    /// The request's output cap.
    pub(crate) max_tokens: Option<u32>,
    /// The tool the request forces, if any.
    pub(crate) tool: Option<ToolCall>,
    /// The JSON schema the answer must follow (OpenAI `response_format: json_schema`).
    pub(crate) json_schema: Option<Value>,
    /// The model asked for (simulated quality differs per model).
    pub(crate) model: String,
    /// The system and developer turns' text (a self-rating request is read from it).
    pub(crate) instructions: String,
}

/// A forced tool call with arguments built from the tool's schema.
pub(crate) struct ToolCall {
    pub(crate) name: String,
    pub(crate) args: Map<String, Value>,
    /// `args` serialized, as OpenAI's `arguments` and Anthropic's `partial_json` carry it.
    pub(crate) args_json: String,
}

/// Why the answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// The answer is complete.
    Stop,
    /// The token cap cut it short.
    Length,
    /// It is a tool call.
    Tool,
}

/// The answer to one request, before rendering.
pub(crate) struct Answer {
    /// Answer tokens (words with their leading space); empty for a tool call.
    pub(crate) tokens: Vec<String>,
    pub(crate) tool: Option<ToolCall>,
    pub(crate) finish: Finish,
    /// Prompt tokens, cached ones included.
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
    /// Prompt tokens served from cache (`x-mock-cached-tokens`, at most `prompt_tokens`).
    pub(crate) cached_tokens: u64,
    /// Stable per seed text; ids derive from it.
    pub(crate) seed: u64,
    /// How sure the simulated model is (`x-mock-confidence`, or a quiz's): its
    /// log-probabilities say so.
    pub(crate) confidence: Option<f64>,
}

impl Answer {
    pub(crate) fn new(prompt: Prompt, faults: &Faults) -> Answer {
        let mut confidence = faults.confidence;
        let simulated = sim::grade(&prompt.seed_text).or_else(|| {
            let accuracy = faults.accuracy?;
            let (question, truth) = sim::question(&prompt.seed_text)?;
            let (c, right, off) = sim::quiz(&prompt.model, &question, accuracy);
            confidence = Some(confidence.unwrap_or(c));
            Some(sim::quiz_answer(truth, right, off))
        });
        let (mut tokens, truncated) = match (&prompt.json_schema, simulated) {
            (_, Some(text)) => (words(&text), false),
            // Structured output: an object with every required property (unless a fault
            // makes the model ignore the schema).
            (Some(schema), None) if !faults.off_schema => {
                let json = tool_call("answer", Some(schema)).args_json;
                let chars: Vec<char> = json.chars().collect();
                (chars.chunks(4).map(|c| c.iter().collect()).collect(), false)
            }
            _ => text::answer_tokens(&prompt.seed_text, prompt.max_tokens),
        };
        // Asked to rate itself, the model says how sure it is.
        if prompt.instructions.contains("<confidence>") && !truncated {
            let c = confidence
                .unwrap_or_else(|| 0.5 + (text::seed(&prompt.seed_text) % 500) as f64 / 1000.0);
            tokens.push(format!("\n<confidence>{c:.2}</confidence>"));
        }
        let (tokens, completion_tokens, finish) = match &prompt.tool {
            Some(t) => (
                Vec::new(),
                text::estimate_tokens(&t.args_json) + 5,
                Finish::Tool,
            ),
            None => {
                let n = tokens.len() as u64;
                let finish = if truncated {
                    Finish::Length
                } else {
                    Finish::Stop
                };
                (tokens, n, finish)
            }
        };
        Answer {
            tokens,
            tool: prompt.tool,
            finish,
            prompt_tokens: prompt.prompt_tokens,
            completion_tokens,
            cached_tokens: faults.cached_tokens.unwrap_or(0).min(prompt.prompt_tokens),
            seed: text::seed(&prompt.seed_text),
            confidence,
        }
    }

    /// The answer text (empty for a tool call).
    pub(crate) fn text(&self) -> String {
        self.tokens.concat()
    }

    /// 16 hex digits for ids.
    pub(crate) fn hex(&self) -> String {
        format!("{:016x}", self.seed)
    }

    /// The tokens in at most `n` groups of equal size, as streamed content chunks.
    pub(crate) fn groups(&self, n: usize) -> std::slice::Chunks<'_, String> {
        let per = self.tokens.len().div_ceil(n.max(1)).max(1);
        self.tokens.chunks(per)
    }
}

/// Prompt size from each message's text: chat templates add a few tokens per message (OpenAI
/// documents 3) and 3 to prime the reply.
pub(crate) fn prompt_tokens<S: AsRef<str>>(messages: impl IntoIterator<Item = S>) -> u64 {
    messages
        .into_iter()
        .map(|m| text::estimate_tokens(m.as_ref()) + 3)
        .sum::<u64>()
        + 3
}

/// A call to `name` with a placeholder for each required property of the JSON `schema`.
pub(crate) fn tool_call(name: &str, schema: Option<&Value>) -> ToolCall {
    let mut args = Map::new();
    let required = schema
        .and_then(|p| p.get("required"))
        .and_then(Value::as_array);
    for key in required.into_iter().flatten().filter_map(Value::as_str) {
        let ty = schema
            .and_then(|p| p.get("properties"))
            .and_then(|p| p.get(key))
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        let val = match ty.as_deref() {
            Some("integer" | "number") => json!(1),
            Some("boolean") => json!(true),
            Some("array") => json!([]),
            Some("object") => json!({}),
            _ => json!("mock"),
        };
        args.insert(key.to_owned(), val);
    }
    let args_json = Value::Object(args.clone()).to_string();
    ToolCall {
        name: name.to_owned(),
        args,
        args_json,
    }
}

/// `text` as tokens: words with their leading space.
fn words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, w) in text.split(' ').enumerate() {
        out.push(if i == 0 {
            w.to_owned()
        } else {
            format!(" {w}")
        });
    }
    out
}

/// Joins the texts of a turn's parts, as every format's seed text does.
pub(crate) fn join<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    parts.into_iter().collect::<Vec<_>>().join("\n")
}
