//! Errors that reach clients, rendered in OpenAI's error shape.

use serde_json::json;

/// What went wrong, from the client's point of view. One variant maps to one HTTP status and
/// one OpenAI error `type`: both tables live here and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed JSON, a missing field, an unsupported route. 400.
    InvalidRequest,
    /// Missing or unknown virtual key. 401.
    Authentication,
    /// Unknown model alias or route. 404.
    NotFound,
    /// Method not allowed on the route. 405.
    MethodNotAllowed,
    /// A routing policy refused the request, with the status it chose (400..=599).
    PolicyDenied(u16),
    /// A provider rejected the request as invalid, with its status (400, 413, 415, 422): another
    /// target would reject it too, so it is the client's to fix.
    UpstreamRejected(u16),
    /// Request body over `max_request_bytes`. 413.
    PayloadTooLarge,
    /// The client stopped sending its body. 408.
    RequestTimeout,
    /// Every upstream attempt was rate-limited by its provider. 429.
    RateLimited,
    /// A budget has no room for the request, with the configured status (402 or 429).
    BudgetExceeded(u16),
    /// Every upstream attempt failed with an upstream error. 502.
    UpstreamFailed,
    /// Every upstream attempt failed to connect, or no target is available. 503.
    Unavailable,
    /// Every upstream attempt timed out. 504.
    Timeout,
    /// A bug or an unexpected condition inside the gateway. 500.
    Internal,
}

impl ErrorKind {
    /// The HTTP status of this kind.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Authentication => 401,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::PolicyDenied(status)
            | ErrorKind::UpstreamRejected(status)
            | ErrorKind::BudgetExceeded(status) => status,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::RequestTimeout => 408,
            ErrorKind::RateLimited => 429,
            ErrorKind::Internal => 500,
            ErrorKind::UpstreamFailed => 502,
            ErrorKind::Unavailable => 503,
            ErrorKind::Timeout => 504,
        }
    }

    /// The OpenAI error `type` of this kind.
    pub fn error_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::NotFound
            | ErrorKind::MethodNotAllowed
            | ErrorKind::PayloadTooLarge
            | ErrorKind::RequestTimeout
            | ErrorKind::UpstreamRejected(_) => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::UpstreamFailed | ErrorKind::Unavailable | ErrorKind::Timeout => {
                "upstream_error"
            }
            ErrorKind::Internal => "server_error",
            ErrorKind::PolicyDenied(_) => "policy_denied",
            ErrorKind::BudgetExceeded(_) => "insufficient_quota",
        }
    }

    /// The Anthropic error `type` of this kind, for the `/v1/messages` route.
    pub fn anthropic_type(self) -> &'static str {
        match self.status() {
            400 | 405 | 408 | 415 | 422 => "invalid_request_error",
            401 => "authentication_error",
            402 => "billing_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            504 => "timeout_error",
            _ => "api_error",
        }
    }
}

/// The API a client speaks, which decides how its answers and errors are shaped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientApi {
    /// OpenAI's Chat Completions (and every other OpenAI-shaped route).
    #[default]
    OpenAi,
    /// Anthropic's Messages (`/v1/messages`).
    Anthropic,
}

/// An error for a client: kind, message, and OpenAI's optional `param` and `code`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The kind, which decides the status and `type`.
    pub kind: ErrorKind,
    /// A human-readable message. Never contains a secret.
    pub message: String,
    /// The offending request parameter, if any.
    pub param: Option<&'static str>,
    /// A machine-readable code (`model_not_found`, `invalid_api_key`, ...).
    pub code: Option<&'static str>,
    /// Seconds after which a retry may succeed, sent as `retry-after`.
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    /// A new error with no `param` or `code`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            param: None,
            code: None,
            retry_after_secs: None,
        }
    }

    /// Sets the `code`.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// Sets the `param`.
    pub fn with_param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    /// Sets `retry_after_secs`.
    pub fn with_retry_after(mut self, secs: Option<u64>) -> Self {
        self.retry_after_secs = secs;
        self
    }

    /// What `x-should-retry` should say, if anything. Official SDKs obey it over their own
    /// rules: a request that cannot succeed as sent is marked so they do not resend it.
    pub fn should_retry(&self) -> Option<bool> {
        if let ErrorKind::BudgetExceeded(_) = self.kind {
            // Even as a 429: retrying cannot help until the budget resets or is raised.
            return Some(false);
        }
        match self.status() {
            408 | 429 => Some(true),
            400..=499 => Some(false),
            _ => None,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// `{"error":{"message","type","param","code"}}`.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind.error_type(),
                "param": self.param,
                "code": self.code,
            }
        })
    }

    /// The JSON body as bytes.
    pub fn body(&self) -> bytes::Bytes {
        bytes::Bytes::from(self.to_json().to_string())
    }

    /// Anthropic's error shape: `{"type":"error","error":{"type","message"}}`.
    pub fn to_anthropic_json(&self) -> serde_json::Value {
        json!({
            "type": "error",
            "error": {"type": self.kind.anthropic_type(), "message": self.message},
        })
    }

    /// The error as one SSE event, for failures after a stream has started.
    pub fn sse_event(&self) -> bytes::Bytes {
        bytes::Bytes::from(format!("data: {}\n\n", self.to_json()))
    }

    /// The JSON body in the shape `api` documents.
    pub fn body_for(&self, api: ClientApi) -> bytes::Bytes {
        match api {
            ClientApi::OpenAi => self.body(),
            ClientApi::Anthropic => bytes::Bytes::from(self.to_anthropic_json().to_string()),
        }
    }

    /// The in-stream error event in the shape `api` documents.
    pub fn sse_event_for(&self, api: ClientApi) -> bytes::Bytes {
        match api {
            ClientApi::OpenAi => self.sse_event(),
            ClientApi::Anthropic => bytes::Bytes::from(format!(
                "event: error\ndata: {}\n\n",
                self.to_anthropic_json()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_shape() {
        let e = ApiError::new(ErrorKind::NotFound, "no such model")
            .with_code("model_not_found")
            .with_param("model");
        let v = e.to_json();
        assert_eq!(e.status(), 404);
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], "model");
        assert_eq!(v["error"]["message"], "no such model");
    }

    #[test]
    fn retry_hints() {
        assert_eq!(
            ApiError::new(ErrorKind::NotFound, "x").should_retry(),
            Some(false)
        );
        assert_eq!(
            ApiError::new(ErrorKind::RateLimited, "x").should_retry(),
            Some(true)
        );
        assert_eq!(
            ApiError::new(ErrorKind::UpstreamFailed, "x").should_retry(),
            None
        );
    }

    #[test]
    fn anthropic_shape() {
        let e = ApiError::new(ErrorKind::RateLimited, "slow down");
        let v = e.to_anthropic_json();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["message"], "slow down");
        let rejected = ApiError::new(ErrorKind::UpstreamRejected(413), "too big");
        assert_eq!(rejected.status(), 413);
        assert_eq!(rejected.kind.anthropic_type(), "request_too_large");
        assert_eq!(rejected.should_retry(), Some(false));
    }

    #[test]
    fn sse_event_is_one_data_line() {
        let e = ApiError::new(ErrorKind::Timeout, "idle");
        let s = String::from_utf8(e.sse_event().to_vec()).expect("utf8");
        assert!(s.starts_with("data: {\"error\":"));
        assert!(s.ends_with("\n\n"));
        assert_eq!(s.matches('\n').count(), 2);
    }
}
