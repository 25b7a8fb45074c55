//! Turning a provider's answer into the client's dialect: whole JSON bodies, and SSE streams
//! chunk by chunk. OpenAI to OpenAI passes bytes through untouched; every other pair decodes to
//! canonical [`ChatEvent`]s and encodes them again.

use crate::anthropic::AnthropicStreamDecoder;
use crate::completion::Completion;
use crate::events::ChatEvent;
use crate::gemini::GeminiStreamDecoder;
use crate::messages::AnthropicStreamEncoder;
use crate::openai_stream::{OpenAiStreamDecoder, OpenAiStreamEncoder};
use crate::request::unix_now;
use crate::sse::{MAX_PENDING_EVENT_BYTES, SseSplitter, StreamObserver, StreamSignal};
use crate::{Adapter, AdapterError};
use bytes::{Bytes, BytesMut};
use tollgate_types::{ClientApi, Usage};

/// A complete answer in the client's dialect, and the usage read from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    /// The body to send.
    pub body: Bytes,
    /// Usage, if the provider reported it.
    pub usage: Option<Usage>,
}

impl Adapter {
    /// Reads a complete 2xx chat answer and re-shapes it for `client`.
    pub fn translate_response(
        self,
        client: ClientApi,
        body: Bytes,
    ) -> Result<Translated, AdapterError> {
        let completion = match self {
            // Same dialect on both sides: the body goes through as it came.
            Adapter::OpenAi(_) if client == ClientApi::OpenAi => {
                let usage = self.parse_response(&body)?.usage;
                return Ok(Translated { body, usage });
            }
            Adapter::Anthropic if client == ClientApi::Anthropic => {
                let usage = crate::anthropic::decode_response(&body)?.usage;
                return Ok(Translated { body, usage });
            }
            Adapter::OpenAi(_) => Completion::from_openai(&body).map_err(AdapterError::Decode)?,
            Adapter::Anthropic => crate::anthropic::decode_response(&body)?,
            Adapter::Gemini => crate::gemini::decode_response(&body)?,
        };
        let out = match client {
            ClientApi::OpenAi => completion.to_openai(),
            ClientApi::Anthropic => completion.to_anthropic(),
        }
        .map_err(AdapterError::Encode)?;
        Ok(Translated {
            body: Bytes::from(out),
            usage: completion.usage,
        })
    }

    /// A decoder from this provider's SSE bytes to canonical events.
    pub fn event_decoder(self) -> EventDecoder {
        let dialect = match self {
            Adapter::OpenAi(_) => Decoder::OpenAi(OpenAiStreamDecoder::default()),
            Adapter::Anthropic => Decoder::Anthropic(AnthropicStreamDecoder::default()),
            Adapter::Gemini => Decoder::Gemini(GeminiStreamDecoder::default()),
        };
        EventDecoder {
            splitter: SseSplitter::default(),
            dialect,
            done: false,
        }
    }

    /// A transcoder for one streamed answer to `client`. `include_usage` is whether an OpenAI
    /// client asked for the final usage chunk.
    pub fn stream_transcoder(self, client: ClientApi, include_usage: bool) -> StreamTranscoder {
        let mode = match (self, client) {
            // A client that did not ask for the usage chunk does not get the one the gateway
            // asked for on its behalf.
            (Adapter::OpenAi(_), ClientApi::OpenAi) if include_usage => {
                Mode::Passthrough(StreamObserver::default())
            }
            (Adapter::OpenAi(_), ClientApi::OpenAi) => {
                Mode::Passthrough(StreamObserver::stripping_usage())
            }
            (Adapter::Anthropic, ClientApi::Anthropic) => Mode::Observe(self.event_decoder()),
            (_, ClientApi::OpenAi) => Mode::Translate {
                decoder: self.event_decoder(),
                encoder: Encoder::OpenAi(OpenAiStreamEncoder::new(include_usage, unix_now())),
            },
            (_, ClientApi::Anthropic) => Mode::Translate {
                decoder: self.event_decoder(),
                encoder: Encoder::Anthropic(AnthropicStreamEncoder::default()),
            },
        };
        StreamTranscoder {
            mode,
            saw_token: false,
            errored: false,
        }
    }
}

#[derive(Debug)]
enum Decoder {
    OpenAi(OpenAiStreamDecoder),
    Anthropic(AnthropicStreamDecoder),
    Gemini(GeminiStreamDecoder),
}

/// Splits a provider's SSE bytes into events and decodes them, whatever the chunk boundaries.
#[derive(Debug)]
pub struct EventDecoder {
    splitter: SseSplitter,
    dialect: Decoder,
    done: bool,
}

impl EventDecoder {
    /// Decodes the events `chunk` completes.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<ChatEvent>) {
        let events = self.splitter.push(chunk);
        if self.splitter.pending() > MAX_PENDING_EVENT_BYTES {
            // A stream without event boundaries would otherwise grow the buffer without end.
            self.splitter = SseSplitter::default();
            out.push(ChatEvent::Error {
                kind: "api_error".to_owned(),
                message: "SSE event larger than 8 MiB".to_owned(),
            });
        }
        for ev in events {
            let before = out.len();
            match &mut self.dialect {
                Decoder::OpenAi(d) => d.decode(&ev.data, out),
                Decoder::Anthropic(d) => d.decode(&ev.data, out),
                Decoder::Gemini(d) => d.decode(&ev.data, out),
            }
            self.done |= out[before..].contains(&ChatEvent::Done);
        }
    }

    /// At the end of the upstream body: Gemini streams (and some OpenAI-compatible servers)
    /// have no end marker, so the end of the body is the end of the answer.
    pub fn finish(&mut self, out: &mut Vec<ChatEvent>) {
        if !self.done {
            self.done = true;
            out.push(ChatEvent::Done);
        }
    }
}

#[derive(Debug)]
enum Encoder {
    OpenAi(OpenAiStreamEncoder),
    Anthropic(AnthropicStreamEncoder),
}

#[derive(Debug)]
enum Mode {
    /// OpenAI to OpenAI: bytes untouched, a few events parsed.
    Passthrough(StreamObserver),
    /// Anthropic to Anthropic: bytes untouched, events decoded for the signals only.
    Observe(EventDecoder),
    Translate {
        decoder: EventDecoder,
        encoder: Encoder,
    },
}

/// What one upstream chunk became.
#[derive(Debug, Default)]
pub struct Transcoded {
    /// Bytes for the client (maybe empty: an event can span chunks).
    pub bytes: Bytes,
    /// What the proxy wants to know about the stream.
    pub signals: Vec<StreamSignal>,
}

/// Re-shapes one streamed answer for the client, chunk by chunk, and reports first token,
/// usage, errors and the end as they pass.
#[derive(Debug)]
pub struct StreamTranscoder {
    mode: Mode,
    saw_token: bool,
    /// The provider reported an error: the stream must not be given a clean ending.
    errored: bool,
}

impl StreamTranscoder {
    /// Transcodes one upstream chunk.
    pub fn push(&mut self, chunk: &Bytes) -> Transcoded {
        match &mut self.mode {
            Mode::Passthrough(observer) if observer.strips_usage() => {
                let (bytes, signals) = observer.filter(chunk);
                Transcoded { bytes, signals }
            }
            Mode::Passthrough(observer) => Transcoded {
                bytes: chunk.clone(),
                signals: observer.observe(chunk),
            },
            Mode::Observe(decoder) => {
                let mut events = Vec::new();
                decoder.push(chunk, &mut events);
                Transcoded {
                    bytes: chunk.clone(),
                    signals: self.signals(&events),
                }
            }
            Mode::Translate { decoder, .. } => {
                let mut events = Vec::new();
                decoder.push(chunk, &mut events);
                self.emit(&events)
            }
        }
    }

    /// Flushes at the end of the upstream body.
    pub fn finish(&mut self) -> Transcoded {
        match &mut self.mode {
            Mode::Passthrough(observer) if observer.strips_usage() => {
                let (bytes, signals) = observer.finish();
                Transcoded { bytes, signals }
            }
            Mode::Passthrough(_) | Mode::Observe(_) => Transcoded::default(),
            Mode::Translate { .. } if self.errored => Transcoded::default(),
            Mode::Translate { decoder, .. } => {
                let mut events = Vec::new();
                decoder.finish(&mut events);
                self.emit(&events)
            }
        }
    }

    /// What the proxy wants to know about these events.
    fn signals(&mut self, events: &[ChatEvent]) -> Vec<StreamSignal> {
        let mut signals = Vec::new();
        for event in events {
            match event {
                // Reasoning is generation too: a thinking model's first token is its first thought.
                ChatEvent::Text(_) | ChatEvent::Reasoning(_) | ChatEvent::ToolCall { .. }
                    if !self.saw_token =>
                {
                    self.saw_token = true;
                    signals.push(StreamSignal::FirstToken);
                }
                ChatEvent::Usage(u) => signals.push(StreamSignal::Usage(*u)),
                _ => {}
            }
            match event {
                ChatEvent::Text(t)
                | ChatEvent::Reasoning(t)
                | ChatEvent::ToolArgs { json: t, .. }
                    if !t.is_empty() =>
                {
                    signals.push(StreamSignal::Generated(t.len()));
                }
                ChatEvent::Done => signals.push(StreamSignal::Done),
                ChatEvent::Error { kind, message } => {
                    self.errored = true;
                    signals.push(StreamSignal::Error(format!("{kind}: {message}")));
                }
                _ => {}
            }
        }
        signals
    }

    fn emit(&mut self, events: &[ChatEvent]) -> Transcoded {
        let signals = self.signals(events);
        let Mode::Translate { encoder, .. } = &mut self.mode else {
            return Transcoded::default();
        };
        let mut out = BytesMut::new();
        for event in events {
            match encoder {
                Encoder::OpenAi(e) => e.encode(event, &mut out),
                Encoder::Anthropic(e) => e.encode(event, &mut out),
            }
        }
        Transcoded {
            bytes: out.freeze(),
            signals,
        }
    }
}
