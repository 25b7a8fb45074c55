//! One table from an upstream status to what the proxy does next.

/// What to do with an upstream response status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// 2xx: forward to the client.
    Success,
    /// Transient or provider-side: try the next target while nothing has reached the client.
    Failover,
    /// The client's request is at fault (400, 413, 422): forward the provider's error as is; another
    /// target would reject it too.
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
