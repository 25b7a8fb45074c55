//! Adapter errors.

/// Why an adapter could not build a request or read a response.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The canonical request could not be encoded for this provider.
    #[error("cannot encode request: {0}")]
    Encode(#[source] serde_json::Error),
    /// The provider's response is not JSON.
    #[error("malformed provider response: {0}")]
    Decode(#[source] serde_json::Error),
    /// The provider's response is JSON but not in the shape its API documents.
    #[error("malformed provider response: {0}")]
    Shape(&'static str),
    /// The provider's API has no such operation.
    #[error("{0} is not supported by this provider's API")]
    Unsupported(&'static str),
}
