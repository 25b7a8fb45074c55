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
        self.push_raw(chunk)
            .into_iter()
            .filter_map(|(_, ev)| ev)
            .collect()
    }

    /// Like [`Self::push`], with each completed event's bytes as they came (its blank line
    /// included), and `None` for a block without data (a comment or a bare `event:`).
    pub fn push_raw(&mut self, chunk: &[u8]) -> Vec<(Bytes, Option<SseEvent>)> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some((at, sep)) = find_boundary(&self.buf[self.scanned..]) {
            let end = self.scanned + at;
            let raw = self.buf.split_to(end + sep).freeze();
            self.scanned = 0;
            let event = parse_event(&raw[..end]);
            out.push((raw, event));
        }
        // A boundary (at most 4 bytes) may straddle the end of what has arrived.
        self.scanned = self.buf.len().saturating_sub(3);
        out
    }

    /// Takes the bytes of an incomplete trailing event, at the end of the body.
    pub fn take_pending(&mut self) -> Bytes {
        self.scanned = 0;
        self.buf.split().freeze()
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
    /// Bytes of generated content (text, reasoning, tool arguments) in the events of one
    /// chunk: what a stream has produced so far, before the provider reports usage.
    Generated(usize),
    /// An in-stream error event; the payload is the provider's JSON.
    Error(String),
}

/// Watches an OpenAI-format SSE stream chunk by chunk; only events that can matter are parsed.
///
/// By default the caller forwards the bytes untouched ([`Self::observe`]). When the gateway
/// asked for a usage chunk the client did not ([`Self::stripping_usage`]), [`Self::filter`]
/// forwards whole events and drops that chunk.
#[derive(Debug, Default)]
pub struct StreamObserver {
    splitter: SseSplitter,
    saw_token: bool,
    strip_usage: bool,
}

impl StreamObserver {
    /// An observer whose [`Self::filter`] drops usage-only chunks (`"choices": []`).
    pub fn stripping_usage() -> Self {
        StreamObserver {
            strip_usage: true,
            ..StreamObserver::default()
        }
    }

    /// Whether this observer drops usage-only chunks: use [`Self::filter`].
    pub fn strips_usage(&self) -> bool {
        self.strip_usage
    }

    /// Observes one body chunk, which the caller forwards as it is.
    pub fn observe(&mut self, chunk: &Bytes) -> Vec<StreamSignal> {
        let mut signals = Vec::new();
        for ev in self.splitter.push(chunk) {
            self.note(&ev, &mut signals);
        }
        self.check_pending(&mut signals);
        signals
    }

    /// Observes one body chunk and returns the bytes to forward: the events it completes,
    /// less any usage-only chunk when stripping.
    pub fn filter(&mut self, chunk: &Bytes) -> (Bytes, Vec<StreamSignal>) {
        let mut signals = Vec::new();
        let mut out = BytesMut::new();
        for (raw, ev) in self.splitter.push_raw(chunk) {
            self.forward(&raw, ev.as_ref(), &mut out, &mut signals);
        }
        if self.splitter.pending() > MAX_PENDING_EVENT_BYTES {
            // Held back from the client so far: hand it over rather than lose it, and say so.
            out.extend_from_slice(&self.splitter.take_pending());
            signals.push(StreamSignal::Error(
                "SSE event larger than 8 MiB".to_owned(),
            ));
        }
        (out.freeze(), signals)
    }

    /// At the end of the body: the unterminated last event [`Self::filter`] still holds,
    /// inspected (and stripped) like any other.
    pub fn finish(&mut self) -> (Bytes, Vec<StreamSignal>) {
        let (mut out, mut signals) = (BytesMut::new(), Vec::new());
        let raw = self.splitter.take_pending();
        if !raw.is_empty() {
            let ev = parse_event(&raw);
            self.forward(&raw, ev.as_ref(), &mut out, &mut signals);
        }
        (out.freeze(), signals)
    }

    /// Notes one event and adds what the client should get of it to `out`.
    fn forward(
        &mut self,
        raw: &Bytes,
        ev: Option<&SseEvent>,
        out: &mut BytesMut,
        signals: &mut Vec<StreamSignal>,
    ) {
        let usage_only = ev.is_some_and(|ev| self.note(ev, signals));
        if !self.strip_usage {
            out.extend_from_slice(raw);
        } else if !usage_only {
            // Asked for usage, OpenAI also adds `"usage":null` to every other chunk.
            out.extend_from_slice(&without_null_usage(raw));
        }
    }

    /// A stream without event boundaries would otherwise grow the buffer without end.
    fn check_pending(&mut self, signals: &mut Vec<StreamSignal>) {
        if self.splitter.pending() > MAX_PENDING_EVENT_BYTES {
            self.splitter = SseSplitter::default();
            signals.push(StreamSignal::Error(
                "SSE event larger than 8 MiB".to_owned(),
            ));
        }
    }

    /// Notes what one event signals; `true` when it is a usage-only chunk.
    fn note(&mut self, ev: &SseEvent, signals: &mut Vec<StreamSignal>) -> bool {
        let data = ev.data.trim();
        if data == "[DONE]" {
            signals.push(StreamSignal::Done);
            return false;
        }
        if !self.saw_token && carries_token(data) {
            self.saw_token = true;
            signals.push(StreamSignal::FirstToken);
        }
        let generated = generated_bytes(data);
        if generated > 0 {
            signals.push(StreamSignal::Generated(generated));
        }
        // Parse only the few events that can carry usage or an error.
        let maybe_usage = data.contains("\"usage\":{") || data.contains("\"usage\": {");
        let maybe_error = data.starts_with("{\"error\"") || ev.event.as_deref() == Some("error");
        if !(maybe_usage || maybe_error) {
            return false;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else {
            return false;
        };
        if let Some(err) = v.get("error") {
            signals.push(StreamSignal::Error(err.to_string()));
            return false;
        }
        let Some(u) = v
            .get("usage")
            .or_else(|| v.pointer("/x_groq/usage")) // Groq streams put usage here
            .and_then(usage_from_openai_family)
        else {
            return false;
        };
        signals.push(StreamSignal::Usage(u));
        v.get("choices")
            .and_then(serde_json::Value::as_array)
            .is_some_and(Vec::is_empty)
    }
}

/// The length of the string values of generated content in an OpenAI chunk: `content`,
/// `reasoning_content` and tool-call `arguments` (escaped, which is close enough to count).
fn generated_bytes(data: &str) -> usize {
    let bytes = data.as_bytes();
    let mut total = 0;
    for key in [
        &b"\"content\""[..],
        b"\"reasoning_content\"",
        b"\"reasoning\"",
        b"\"arguments\"",
    ] {
        for at in memmem::find_iter(bytes, key) {
            // `"key": "value"`, with or without spaces; `null` and other values are not text.
            let after = bytes[at + key.len()..].trim_ascii_start();
            let Some(after) = after.strip_prefix(b":") else {
                continue;
            };
            let Some(rest) = after.trim_ascii_start().strip_prefix(b"\"") else {
                continue;
            };
            let mut escaped = false;
            let len = rest
                .iter()
                .position(|&b| {
                    let end = b == b'"' && !escaped;
                    escaped = b == b'\\' && !escaped;
                    end
                })
                .unwrap_or(rest.len());
            total += len;
        }
    }
    total
}

/// `raw` without a compact `"usage":null` member (and its comma), as OpenAI writes it.
fn without_null_usage(raw: &Bytes) -> std::borrow::Cow<'_, [u8]> {
    for member in [&b",\"usage\":null"[..], &b"\"usage\":null,"[..]] {
        if let Some(at) = memmem::find(raw, member) {
            let mut out = Vec::with_capacity(raw.len() - member.len());
            out.extend_from_slice(&raw[..at]);
            out.extend_from_slice(&raw[at + member.len()..]);
            return std::borrow::Cow::Owned(out);
        }
    }
    std::borrow::Cow::Borrowed(raw)
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
        let first = vec![StreamSignal::FirstToken, StreamSignal::Generated(2)];
        assert_eq!(o.observe(&tok), first);
        assert_eq!(
            o.observe(&tok),
            vec![StreamSignal::Generated(2)],
            "first once"
        );
        let mut spaced = StreamObserver::default();
        let tok =
            Bytes::from_static(b"data: {\"choices\": [{\"delta\": {\"content\": \"Hi\"}}]}\n\n");
        assert_eq!(spaced.observe(&tok), first);
    }
}
