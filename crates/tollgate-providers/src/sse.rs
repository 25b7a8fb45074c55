//! Server-Sent Events: splitting a byte stream into events, and observing OpenAI chat chunks.

use crate::openai::usage_from_openai_family;
use bytes::{Bytes, BytesMut};
use memchr::memmem;
use tollgate_types::Usage;

/// One SSE event: its `event:` name (if any) and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field.
    pub event: Option<String>,
    /// The `data:` payload.
    pub data: String,
}

/// Splits an SSE byte stream into events, carrying partial events across chunks.
#[derive(Debug, Default)]
pub struct SseSplitter {
    buf: BytesMut,
    /// Where the next boundary search starts: the bytes before it hold no boundary, so a huge
    /// event arriving in many chunks is scanned once, not once per chunk.
    scanned: usize,
}

impl SseSplitter {
    /// Adds `chunk` and returns every event it completes.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some((at, sep)) = find_boundary(&self.buf[self.scanned..]) {
            let end = self.scanned + at;
            let raw = self.buf.split_to(end + sep);
            self.scanned = 0;
            if let Some(ev) = parse_event(&raw[..end]) {
                out.push(ev);
            }
        }
        // A boundary (at most 4 bytes) may straddle the end of what has arrived.
        self.scanned = self.buf.len().saturating_sub(3);
        out
    }

    /// Bytes of an incomplete trailing event.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

fn find_boundary(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = memmem::find(buf, b"\n\n").map(|i| (i, 2));
    let crlf = memmem::find(buf, b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn parse_event(raw: &[u8]) -> Option<SseEvent> {
    let text = String::from_utf8_lossy(raw);
    let mut event = None;
    let mut data: Option<String> = None;
    for line in text.lines() {
        if line.starts_with(':') {
            continue; // comment, e.g. OpenRouter's ": OPENROUTER PROCESSING"
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = Some(value.to_owned()),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            _ => {}
        }
    }
    data.map(|data| SseEvent { event, data })
}

/// Largest partial event the observer and decoders buffer.
pub(crate) const MAX_PENDING_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// Something the proxy wants to know about a passing stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamSignal {
    /// The first chunk carrying generated content or a tool call.
    FirstToken,
    /// The usage chunk.
    Usage(Usage),
    /// `data: [DONE]`.
    Done,
    /// An in-stream error event; the payload is the provider's JSON.
    Error(String),
}

/// Watches an OpenAI-format SSE stream chunk by chunk. The bytes themselves are forwarded
/// untouched by the caller; only events that can matter are parsed.
#[derive(Debug, Default)]
pub struct StreamObserver {
    splitter: SseSplitter,
    saw_token: bool,
}

impl StreamObserver {
    /// Observes one body chunk.
    pub fn observe(&mut self, chunk: &Bytes) -> Vec<StreamSignal> {
        let mut signals = Vec::new();
        let events = self.splitter.push(chunk);
        if self.splitter.pending() > MAX_PENDING_EVENT_BYTES {
            // A stream without event boundaries would otherwise grow this buffer without end.
            self.splitter = SseSplitter::default();
            signals.push(StreamSignal::Error(
                "SSE event larger than 8 MiB".to_owned(),
            ));
        }
        for ev in events {
            let data = ev.data.trim();
            if data == "[DONE]" {
                signals.push(StreamSignal::Done);
                continue;
            }
            if !self.saw_token && carries_token(data) {
                self.saw_token = true;
                signals.push(StreamSignal::FirstToken);
            }
            // Parse only the few events that can carry usage or an error.
            let maybe_usage = data.contains("\"usage\":{") || data.contains("\"usage\": {");
            let maybe_error =
                data.starts_with("{\"error\"") || ev.event.as_deref() == Some("error");
            if maybe_usage || maybe_error {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else {
                    continue;
                };
                if let Some(err) = v.get("error") {
                    signals.push(StreamSignal::Error(err.to_string()));
                } else if let Some(u) = v
                    .get("usage")
                    .or_else(|| v.pointer("/x_groq/usage")) // Groq streams put usage here
                    .and_then(usage_from_openai_family)
                {
                    signals.push(StreamSignal::Usage(u));
                }
            }
        }
        signals
    }
}

fn carries_token(data: &str) -> bool {
    let bytes = data.as_bytes();
    // The value after `"key":`, whitespace skipped (some providers write `"key": value`).
    let values = |key: &'static [u8]| {
        memmem::find_iter(bytes, key).filter_map(move |i| {
            let rest = &bytes[i + key.len()..];
            let colon = rest.iter().position(|b| !b.is_ascii_whitespace())?;
            (rest[colon] == b':').then(|| rest[colon + 1..].trim_ascii_start())
        })
    };
    if values(b"\"tool_calls\"").any(|v| v.starts_with(b"[")) {
        return true;
    }
    // `"content":""` and `"content":null` are role or finish chunks, not tokens. Reasoning
    // text (DeepSeek's `reasoning_content`, OpenRouter's `reasoning`) is generation too.
    let text = |v: &[u8]| v.starts_with(b"\"") && !v.starts_with(b"\"\"");
    values(b"\"content\"").any(text)
        || values(b"\"reasoning_content\"").any(text)
        || values(b"\"reasoning\"").any(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_across_chunk_boundaries() {
        let mut s = SseSplitter::default();
        assert!(s.push(b"data: {\"a\":").is_empty());
        let evs = s.push(b"1}\n\ndata: [DONE]\n\n");
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].data, "{\"a\":1}");
        assert_eq!(evs[1].data, "[DONE]");
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn handles_crlf_comments_and_event_names() {
        let mut s = SseSplitter::default();
        let evs = s.push(b": OPENROUTER PROCESSING\r\n\r\nevent: error\r\ndata: {\"x\":1}\r\n\r\n");
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].event.as_deref(), Some("error"));
    }

    #[test]
    fn first_token_skips_role_chunk() {
        let mut o = StreamObserver::default();
        let role = Bytes::from_static(
            b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        );
        assert!(o.observe(&role).is_empty());
        let tok = Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n");
        assert_eq!(o.observe(&tok), vec![StreamSignal::FirstToken]);
        assert!(o.observe(&tok).is_empty(), "reported once");
        let mut spaced = StreamObserver::default();
        let tok =
            Bytes::from_static(b"data: {\"choices\": [{\"delta\": {\"content\": \"Hi\"}}]}\n\n");
        assert_eq!(spaced.observe(&tok), vec![StreamSignal::FirstToken]);
    }
}
