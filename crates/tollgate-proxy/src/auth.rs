//! Identifying the caller from its virtual key.

use crate::live::LiveState;
use pingora::http::RequestHeader;
use tollgate_config::{VirtualKey, hash_key};
use tollgate_types::{ApiError, ErrorKind};

/// Reads the key from `Authorization: Bearer`, `x-api-key` or `api-key`, and returns the
/// matching virtual key (`None` when the gateway has no keys configured).
///
/// Keys are compared by SHA-256, so the config never holds a usable key.
pub fn identify(req: &RequestHeader, state: &LiveState) -> Result<Option<VirtualKey>, ApiError> {
    if !state.auth_required() {
        return Ok(None);
    }
    let header = |name: &str| {
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let presented = header("authorization")
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .map(str::trim)
        })
        .or_else(|| header("x-api-key"))
        .or_else(|| header("api-key"))
        .filter(|k| !k.is_empty());
    let Some(key) = presented else {
        return Err(ApiError::new(
            ErrorKind::Authentication,
            "missing API key: send `Authorization: Bearer <key>`",
        )
        .with_code("invalid_api_key"));
    };
    match state.key(&hash_key(key)) {
        Some(vk) => Ok(Some(vk.clone())),
        None => Err(ApiError::new(ErrorKind::Authentication, "invalid API key")
            .with_code("invalid_api_key")),
    }
}
