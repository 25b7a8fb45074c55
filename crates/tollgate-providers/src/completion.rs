//! The canonical complete answer: what every provider's JSON answer decodes to (borrowing from
//! the body where it can) and what every client dialect's answer is encoded from.

use crate::answer_text::AnswerText;
use crate::events::FinishReason;
use crate::request::{parse_arguments, unix_now};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use tollgate_types::Usage;

/// One complete chat answer with a single choice.
#[derive(Debug, Default)]
pub(crate) struct Completion<'a> {
    pub id: Cow<'a, str>,
    pub model: Cow<'a, str>,
    pub text: AnswerText<'a>,
    /// Reasoning text, where the provider returns it.
    pub reasoning: AnswerText<'a>,
    pub tool_calls: Vec<ToolCall<'a>>,
    pub finish: Option<FinishReason>,
    pub usage: Option<Usage>,
}

/// A tool call with JSON-string arguments.
#[derive(Debug)]
pub(crate) struct ToolCall<'a> {
    pub id: Cow<'a, str>,
    pub name: Cow<'a, str>,
    pub arguments: Cow<'a, str>,
}

impl<'a> Completion<'a> {
    fn finish(&self) -> FinishReason {
        self.finish.unwrap_or(FinishReason::Stop)
    }

    /// OpenAI's `chat.completion` JSON.
    pub fn to_openai(&self) -> Result<Vec<u8>, serde_json::Error> {
        #[derive(Serialize)]
        struct Out<'b> {
            id: &'b str,
            object: &'static str,
            created: u64,
            model: &'b str,
            choices: [Choice<'b>; 1],
            #[serde(skip_serializing_if = "Option::is_none")]
            usage: Option<Value>,
        }
        #[derive(Serialize)]
        struct Choice<'b> {
            index: u32,
            message: Message<'b>,
            logprobs: Option<()>,
            finish_reason: &'static str,
        }
        #[derive(Serialize)]
        struct Message<'b> {
            role: &'static str,
            content: Option<&'b AnswerText<'b>>,
            refusal: Option<()>,
            #[serde(skip_serializing_if = "Option::is_none")]
            reasoning_content: Option<&'b AnswerText<'b>>,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            tool_calls: Vec<Call<'b>>,
        }
        #[derive(Serialize)]
        struct Call<'b> {
            id: &'b str,
            #[serde(rename = "type")]
            kind: &'static str,
            function: Function<'b>,
        }
        #[derive(Serialize)]
        struct Function<'b> {
            name: &'b str,
            arguments: &'b str,
        }
        let text_is_null = self.text.is_empty() && !self.tool_calls.is_empty();
        serde_json::to_vec(&Out {
            id: &self.id,
            object: "chat.completion",
            created: unix_now(),
            model: &self.model,
            choices: [Choice {
                index: 0,
                message: Message {
                    role: "assistant",
                    content: (!text_is_null).then_some(&self.text),
                    refusal: None,
                    reasoning_content: (!self.reasoning.is_empty()).then_some(&self.reasoning),
                    tool_calls: self
                        .tool_calls
                        .iter()
                        .map(|c| Call {
                            id: &c.id,
                            kind: "function",
                            function: Function {
                                name: &c.name,
                                arguments: &c.arguments,
                            },
                        })
                        .collect(),
                },
                logprobs: None,
                finish_reason: self.finish().openai(),
            }],
            usage: self.usage.map(|u| u.to_openai()),
        })
    }

    /// Anthropic's Messages JSON.
    pub fn to_anthropic(&self) -> Result<Vec<u8>, serde_json::Error> {
        #[derive(Serialize)]
        struct Out<'b> {
            id: Cow<'b, str>,
            #[serde(rename = "type")]
            kind: &'static str,
            role: &'static str,
            model: &'b str,
            content: Vec<Block<'b>>,
            stop_reason: &'static str,
            stop_sequence: Option<()>,
            usage: Value,
        }
        #[derive(Serialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum Block<'b> {
            Text {
                text: &'b AnswerText<'b>,
            },
            ToolUse {
                id: &'b str,
                name: &'b str,
                input: Value,
            },
        }
        let mut content = Vec::with_capacity(1 + self.tool_calls.len());
        if !self.text.is_empty() {
            content.push(Block::Text { text: &self.text });
        }
        for c in &self.tool_calls {
            content.push(Block::ToolUse {
                id: &c.id,
                name: &c.name,
                input: parse_arguments(&c.arguments),
            });
        }
        serde_json::to_vec(&Out {
            id: message_id(&self.id),
            kind: "message",
            role: "assistant",
            model: &self.model,
            content,
            stop_reason: self.finish().anthropic(),
            stop_sequence: None,
            usage: self.usage.unwrap_or_default().to_anthropic(),
        })
    }

    /// Reads an OpenAI `chat.completion` (for a client that speaks another dialect).
    pub fn from_openai(body: &'a [u8]) -> Result<Completion<'a>, serde_json::Error> {
        #[derive(Deserialize)]
        struct In<'b> {
            #[serde(default, borrow)]
            id: Cow<'b, str>,
            #[serde(default, borrow)]
            model: Cow<'b, str>,
            #[serde(borrow)]
            choices: Vec<Choice<'b>>,
            #[serde(default)]
            usage: Option<Value>,
        }
        #[derive(Deserialize)]
        struct Choice<'b> {
            #[serde(borrow)]
            message: Message<'b>,
            #[serde(default, borrow)]
            finish_reason: Option<Cow<'b, str>>,
        }
        #[derive(Deserialize)]
        struct Message<'b> {
            /// A string, an array of parts, or null; a string stays escaped.
            #[serde(default, borrow)]
            content: Option<&'b RawValue>,
            #[serde(default, borrow)]
            reasoning_content: Option<&'b RawValue>,
            #[serde(default, borrow)]
            tool_calls: Vec<Call<'b>>,
        }
        #[derive(Deserialize)]
        struct Call<'b> {
            #[serde(default, borrow)]
            id: Cow<'b, str>,
            #[serde(borrow)]
            function: Function<'b>,
        }
        #[derive(Deserialize)]
        struct Function<'b> {
            #[serde(borrow)]
            name: Cow<'b, str>,
            #[serde(default, borrow)]
            arguments: Cow<'b, str>,
        }
        let v: In<'a> = serde_json::from_slice(body)?;
        let usage = v
            .usage
            .as_ref()
            .and_then(crate::openai::usage_from_openai_family);
        let Some(choice) = v.choices.into_iter().next() else {
            return Ok(Completion {
                id: v.id,
                model: v.model,
                usage,
                ..Completion::default()
            });
        };
        let mut text = AnswerText::default();
        if let Some(content) = choice.message.content {
            if content.get().starts_with('[') {
                let parts = tollgate_types::Message {
                    content: serde_json::from_str(content.get())?,
                    ..Default::default()
                };
                text.push(Cow::Owned(parts.text()));
            } else {
                text.push_escaped(content);
            }
        }
        let mut reasoning = AnswerText::default();
        if let Some(r) = choice.message.reasoning_content {
            reasoning.push_escaped(r);
        }
        Ok(Completion {
            id: v.id,
            model: v.model,
            text,
            reasoning,
            tool_calls: choice
                .message
                .tool_calls
                .into_iter()
                .map(|c| ToolCall {
                    id: c.id,
                    name: c.function.name,
                    arguments: c.function.arguments,
                })
                .collect(),
            finish: choice
                .finish_reason
                .as_deref()
                .map(FinishReason::from_openai),
            usage,
        })
    }
}

/// Anthropic message ids start with `msg_`.
pub(crate) fn message_id(id: &str) -> Cow<'_, str> {
    if id.starts_with("msg_") {
        Cow::Borrowed(id)
    } else {
        Cow::Owned(format!(
            "msg_{}",
            id.strip_prefix("chatcmpl-").unwrap_or(id)
        ))
    }
}
