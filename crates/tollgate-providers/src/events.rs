//! The canonical stream: what every provider's SSE stream decodes to, and what every client
//! dialect's stream is encoded from. OpenAI-to-OpenAI streams skip it and pass bytes through.

use tollgate_types::Usage;

/// Why generation stopped, in one vocabulary for every dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A natural end or a stop sequence.
    Stop,
    /// The output token cap was reached.
    Length,
    /// The model called tools and waits for their results.
    ToolCalls,
    /// A safety filter stopped or refused the answer.
    ContentFilter,
}

impl FinishReason {
    /// OpenAI's `finish_reason`.
    pub fn openai(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
        }
    }

    /// Reads OpenAI's `finish_reason` (and the non-standard values some compatible servers send).
    pub fn from_openai(s: &str) -> FinishReason {
        match s {
            "length" => FinishReason::Length,
            "tool_calls" | "function_call" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            _ => FinishReason::Stop, // "stop", Together's "eos", ...
        }
    }

    /// Anthropic's `stop_reason`.
    pub fn anthropic(self) -> &'static str {
        match self {
            FinishReason::Stop => "end_turn",
            FinishReason::Length => "max_tokens",
            FinishReason::ToolCalls => "tool_use",
            FinishReason::ContentFilter => "refusal",
        }
    }

    /// Reads Anthropic's `stop_reason`.
    pub fn from_anthropic(s: &str) -> FinishReason {
        match s {
            "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
            "tool_use" => FinishReason::ToolCalls,
            "refusal" => FinishReason::ContentFilter,
            _ => FinishReason::Stop, // end_turn, stop_sequence, pause_turn
        }
    }

    /// Reads Gemini's `finishReason`.
    pub fn from_gemini(s: &str) -> FinishReason {
        match s {
            "MAX_TOKENS" => FinishReason::Length,
            "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII"
            | "IMAGE_SAFETY" => FinishReason::ContentFilter,
            _ => FinishReason::Stop,
        }
    }
}

/// One step of a streamed chat answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// The answer began, with the provider's response id and model.
    Start {
        /// Response id.
        id: String,
        /// Model that answers.
        model: String,
    },
    /// Generated text.
    Text(String),
    /// Reasoning ("thinking") text, where the provider shows it.
    Reasoning(String),
    /// A tool call began. `index` counts tool calls from 0 in the order they started.
    ToolCall {
        /// Tool call index.
        index: u32,
        /// Call id, echoed back with the tool's result.
        id: String,
        /// Function name.
        name: String,
    },
    /// A piece of a tool call's JSON arguments.
    ToolArgs {
        /// Tool call index.
        index: u32,
        /// The next piece of the JSON text.
        json: String,
    },
    /// Generation stopped.
    Finish(FinishReason),
    /// Usage so far; a later one replaces an earlier one.
    Usage(Usage),
    /// The provider reported an error inside the stream.
    Error {
        /// The provider's error type (`overloaded_error`, ...).
        kind: String,
        /// Its message.
        message: String,
    },
    /// The stream is complete.
    Done,
}
