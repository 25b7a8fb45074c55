//! Reading the request body whole, under `max_request_bytes`.

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;
use tollgate_types::{ApiError, ErrorKind};

/// Longest pause allowed between two pieces of a request body.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads the whole request body, or fails with 413 as soon as it exceeds `limit`.
///
/// A declared `content-length` over the limit is refused before reading a byte. On 413 the rest
/// of the body stays unread, so the caller must not reuse the connection.
pub async fn read_bounded(session: &mut Session, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("request body exceeds the gateway's limit of {limit} bytes"),
        )
        .with_code("request_too_large")
    };
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let expects_continue = session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        // curl sends `Expect: 100-continue` for large bodies and waits a second without this.
        let _ = session.as_downstream_mut().write_continue_response().await;
    }
    // A client that stops sending mid-body must not hold a worker forever.
    session.set_read_timeout(Some(BODY_READ_TIMEOUT));
    // Grow as bytes arrive: a declared length is a claim, not memory to hand out up front.
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(8 * 1024).min(limit).min(64 * 1024));
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) => {
                let timed_out = matches!(e.etype(), pingora::ErrorType::ReadTimedout);
                let kind = if timed_out {
                    ErrorKind::RequestTimeout
                } else {
                    ErrorKind::InvalidRequest
                };
                return Err(ApiError::new(
                    kind,
                    format!("could not read the request body: {}", e.etype().as_str()),
                ));
            }
        }
    }
}
