//! The admin listener: `/metrics` (Prometheus text) and health checks.

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

/// The admin HTTP app.
pub struct AdminApp;

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_owned();
        let (status, content_type, body) = match path.as_str() {
            "/metrics" => (StatusCode::OK, "text/plain; version=0.0.4", crate::metrics::render().into_bytes()),
            "/health/liveliness" | "/health/liveness" | "/health/readiness" => {
                (StatusCode::OK, "application/json", b"{\"status\":\"ok\"}".to_vec())
            }
            _ => (StatusCode::NOT_FOUND, "application/json", b"{\"error\":{\"message\":\"not found\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}".to_vec()),
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        if let Ok(v) = http::HeaderValue::from_str(content_type) {
            resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
        }
        let len = resp.body().len();
        resp.headers_mut()
            .insert(http::header::CONTENT_LENGTH, len.into());
        resp
    }
}
