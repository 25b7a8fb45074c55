//! Adapter errors.

/// Why an adapter could not build a request or read a response.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The canonical request could not be encoded for this provider.
    #[error("cannot encode request: {0}")]
    Encode(#[source] serde_json::Error),
    /// The provider's response is not what its API documents.
    #[error("malformed provider response: {0}")]
    Decode(#[source] serde_json::Error),
}
