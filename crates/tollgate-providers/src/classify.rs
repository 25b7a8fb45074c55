//! One table from an upstream status to what the proxy does next.

/// What to do with an upstream response status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// 2xx: forward to the client.
    Success,
    /// Transient or provider-side: try the next target while nothing has reached the client.
    Failover,
    /// The client's request is probably at fault (400, 413, 422): forwarded to the client
    /// unless its body says otherwise (context too long for this model, our credential or
    /// quota), in which case the proxy tries the next target.
    ClientError,
}

/// Classifies an upstream HTTP status.
///
/// 401/403/404 fail over: the client passed *our* checks, so these mean the gateway's credentials
/// or model mapping for that provider are wrong, and another target may well succeed. Their
/// bodies are never forwarded, since they can quote the provider key.
pub fn classify_status(status: u16) -> Disposition {
    match status {
        200..=299 => Disposition::Success,
        400 | 413 | 415 | 422 => Disposition::ClientError,
        _ => Disposition::Failover,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        for s in [429, 500, 502, 503, 504, 529, 408, 401, 403, 404] {
            assert_eq!(classify_status(s), Disposition::Failover, "{s}");
        }
        for s in [400, 413, 422] {
            assert_eq!(classify_status(s), Disposition::ClientError, "{s}");
        }
        assert_eq!(classify_status(200), Disposition::Success);
    }
}

/// What an upstream error means, whatever the dialect that reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// The request is malformed or invalid for this model.
    InvalidRequest,
    /// The prompt does not fit the model's context window: a larger-context target may serve.
    ContextLength,
    /// Our credential for the provider is missing or wrong.
    Authentication,
    /// Our credential may not use this model or feature.
    PermissionDenied,
    /// The model or route does not exist at this provider.
    NotFound,
    /// The request body is over the provider's limit.
    RequestTooLarge,
    /// A safety system refused the request.
    ContentPolicy,
    /// Rate-limited or out of quota.
    RateLimited,
    /// The provider is overloaded (Anthropic 529, Gemini 503 UNAVAILABLE).
    Overloaded,
    /// A provider-side failure.
    Server,
    /// The provider timed out.
    Timeout,
}

/// An upstream error response, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamError {
    /// HTTP status.
    pub status: u16,
    /// What it means.
    pub kind: UpstreamErrorKind,
    /// The provider's own error type or status string, when its body had one.
    pub provider_type: Option<String>,
    /// The provider's message (may be empty). Provider error messages do not echo credentials.
    pub message: String,
}

impl UpstreamError {
    /// Whether the same request may succeed if sent again later.
    pub fn retryable(&self) -> bool {
        matches!(
            self.kind,
            UpstreamErrorKind::RateLimited
                | UpstreamErrorKind::Overloaded
                | UpstreamErrorKind::Server
                | UpstreamErrorKind::Timeout
        )
    }

    /// Classifies an error by its status, and its body's `(type, message)` when it has one.
    pub fn classify(status: u16, body: Option<(String, String)>) -> UpstreamError {
        let (provider_type, message) = match body {
            Some((t, m)) => (Some(t), m),
            None => (None, String::new()),
        };
        let by_type = provider_type.as_deref().and_then(kind_of_type);
        let lower = message.to_ascii_lowercase();
        let context = [
            "context length",
            "context_length",
            "context window",
            "prompt is too long",
            "maximum context",
            "too many tokens",
            "input token count",
            "exceed context limit",
        ]
        .iter()
        .any(|n| lower.contains(n));
        let kind = match (by_type, status) {
            (_, 400 | 413) if context => UpstreamErrorKind::ContextLength,
            (Some(k), _) => k,
            (None, 401) => UpstreamErrorKind::Authentication,
            (None, 403) => UpstreamErrorKind::PermissionDenied,
            (None, 404) => UpstreamErrorKind::NotFound,
            (None, 413) => UpstreamErrorKind::RequestTooLarge,
            (None, 408 | 504) => UpstreamErrorKind::Timeout,
            (None, 429) => UpstreamErrorKind::RateLimited,
            (None, 503 | 529) => UpstreamErrorKind::Overloaded,
            (None, 500..=599) => UpstreamErrorKind::Server,
            (None, _) => UpstreamErrorKind::InvalidRequest,
        };
        UpstreamError {
            status,
            kind,
            provider_type,
            message,
        }
    }
}

/// The kind behind an error type of OpenAI (`type`/`code`), Anthropic (`error.type`) or Gemini
/// (`error.status`).
pub(crate) fn kind_of_type(t: &str) -> Option<UpstreamErrorKind> {
    use UpstreamErrorKind as K;
    Some(match t {
        "invalid_request_error" | "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => {
            K::InvalidRequest
        }
        "context_length_exceeded" => K::ContextLength,
        "authentication_error" | "invalid_api_key" | "UNAUTHENTICATED" => K::Authentication,
        "permission_error" | "PERMISSION_DENIED" => K::PermissionDenied,
        "not_found_error" | "model_not_found" | "NOT_FOUND" => K::NotFound,
        "request_too_large" => K::RequestTooLarge,
        "content_policy_violation" | "content_filter" => K::ContentPolicy,
        "rate_limit_error"
        | "rate_limit_exceeded"
        | "insufficient_quota"
        | "RESOURCE_EXHAUSTED" => K::RateLimited,
        "overloaded_error" | "UNAVAILABLE" => K::Overloaded,
        "api_error" | "server_error" | "INTERNAL" | "UNKNOWN" => K::Server,
        "timeout_error" | "DEADLINE_EXCEEDED" => K::Timeout,
        _ => return None,
    })
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    #[test]
    fn types_win_over_status_and_context_wins_over_type() {
        let e =
            UpstreamError::classify(529, Some(("overloaded_error".into(), "Overloaded".into())));
        assert_eq!(e.kind, UpstreamErrorKind::Overloaded);
        assert!(e.retryable());
        let e = UpstreamError::classify(
            400,
            Some((
                "invalid_request_error".into(),
                "prompt is too long: 210000 tokens".into(),
            )),
        );
        assert_eq!(e.kind, UpstreamErrorKind::ContextLength);
        assert!(!e.retryable());
        assert_eq!(
            UpstreamError::classify(502, None).kind,
            UpstreamErrorKind::Server
        );
    }
}
