//! Writing responses to the client: common headers, JSON bodies, OpenAI-shaped errors.

use crate::context::RequestCtx;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use tollgate_types::ApiError;

/// A response header with the headers every response carries (`x-request-id`,
/// `x-tollgate-config-version`, `x-tollgate-attempts`).
pub fn base_header(status: u16, ctx: &RequestCtx) -> pingora::Result<ResponseHeader> {
    let mut h = ResponseHeader::build(status, Some(8))?;
    h.insert_header("x-request-id", ctx.request_id.as_str())?;
    h.insert_header("x-tollgate-config-version", ctx.state.version.to_string())?;
    // Upstream attempts made, on every response: 0 says the gateway answered by itself.
    h.insert_header("x-tollgate-attempts", ctx.attempts.to_string())?;
    Ok(h)
}

/// Sends a complete JSON response.
pub async fn send_json(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    body: Bytes,
    extra: &[(&'static str, String)],
) -> pingora::Result<()> {
    let mut h = base_header(status, ctx)?;
    h.insert_header("content-type", "application/json")?;
    h.insert_header("content-length", body.len().to_string())?;
    for (k, v) in extra {
        h.insert_header(*k, v.as_str())?;
    }
    ctx.status = status;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(h), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Sends an error in the shape of the API the client called. A request body left unread makes the connection unusable, so
/// callers that did not drain it should disable keep-alive first.
pub async fn send_error(
    session: &mut Session,
    ctx: &mut RequestCtx,
    err: &ApiError,
) -> pingora::Result<()> {
    tracing::debug!(request_id = %ctx.request_id, status = err.status(), message = %err.message, "Request rejected.");
    ctx.error = Some(err.message.clone());
    let mut headers: Vec<(&'static str, String)> = Vec::with_capacity(3);
    if let Some(retry) = err.should_retry() {
        headers.push(("x-should-retry", retry.to_string()));
    }
    if let Some(secs) = err.retry_after_secs {
        headers.push(("retry-after", secs.to_string()));
    }
    let body = err.body_for(ctx.client_api);
    send_json(session, ctx, err.status(), body, &headers).await
}

/// The 404 for an alias that is not configured, worded as OpenAI words it.
pub fn model_not_found(alias: &str) -> ApiError {
    ApiError::new(
        tollgate_types::ErrorKind::NotFound,
        format!("The model `{alias}` does not exist or you do not have access to it."),
    )
    .with_code("model_not_found")
    .with_param("model")
}
