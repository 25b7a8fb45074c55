//! Identifying the caller from its virtual key.

use crate::keys::StoredKeys;
use crate::live::LiveState;
use crate::spend::unix_now;
use pingora::http::RequestHeader;
use tollgate_config::{VirtualKey, hash_key};
use tollgate_types::{ApiError, ErrorKind};

/// Reads the key from `Authorization: Bearer`, `x-api-key` or `api-key`, and returns the
/// matching virtual key, from the config or made through the admin API (`None` when the
/// gateway has no keys at all).
///
/// Keys are compared by SHA-256, so neither the config nor the store holds a usable key.
pub fn identify(
    req: &RequestHeader,
    state: &LiveState,
    stored: &StoredKeys,
) -> Result<Option<VirtualKey>, ApiError> {
    if !state.auth_required() && stored.is_empty() {
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
    let refused =
        |why: &str| Err(ApiError::new(ErrorKind::Authentication, why).with_code("invalid_api_key"));
    let hash = hash_key(key);
    let found = match state.key(&hash) {
        Some(vk) => Some(vk.clone()),
        None => stored.get(&hash),
    };
    match found {
        None => refused("invalid API key"),
        Some(vk) if vk.revoked => refused("this API key has been revoked"),
        Some(vk) if vk.expires_at.is_some_and(|at| unix_now() >= at) => {
            refused("this API key has expired")
        }
        Some(vk) => Ok(Some(vk)),
    }
}
