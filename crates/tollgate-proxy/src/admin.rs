//! The admin listener: `/metrics` (Prometheus text), health checks, `/admin/reload`,
//! `/admin/targets` (each target's circuit, moving averages and last error) and
//! `/admin/budgets` (each budget's limit, spend and reservations in its current period).

use crate::reload::Reloader;
use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

/// The admin HTTP app.
pub struct AdminApp {
    /// Rebuilds the live state on `POST /admin/reload`.
    pub reloader: Arc<Reloader>,
    /// Per-target health, for `GET /admin/targets`.
    pub health: Arc<crate::health::HealthRegistry>,
    /// Budget counters, for `GET /admin/budgets`.
    pub spend: Arc<crate::spend::Spend>,
    /// The live state, for the budgets' configured limits.
    pub live: Arc<arc_swap::ArcSwap<crate::live::LiveState>>,
}

fn json(status: StatusCode, v: &serde_json::Value) -> (StatusCode, &'static str, Vec<u8>) {
    (status, "application/json", v.to_string().into_bytes())
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_owned();
        let method = session.req_header().method.clone();
        let (status, content_type, body) = match (method, path.as_str()) {
            (Method::GET, "/metrics") => (
                StatusCode::OK,
                "text/plain; version=0.0.4",
                crate::metrics::render().into_bytes(),
            ),
            (Method::GET, "/health/liveliness" | "/health/liveness" | "/health/readiness") => {
                json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
            }
            (Method::GET, "/admin/reload") => json(StatusCode::OK, &self.reloader.status_json()),
            (Method::GET, "/admin/targets") => json(StatusCode::OK, &self.health.report()),
            (Method::GET, "/admin/budgets") => json(
                StatusCode::OK,
                &self.spend.report(&self.live.load_full()).await,
            ),
            (Method::POST, "/admin/reload") => {
                let r = self.reloader.clone();
                match tokio::task::spawn_blocking(move || r.reload(true)).await {
                    Ok(Ok(version)) => json(
                        StatusCode::OK,
                        &serde_json::json!({"ok": true, "version": version}),
                    ),
                    Ok(Err(e)) => json(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &serde_json::json!({"ok": false, "error": e}),
                    ),
                    Err(e) => json(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &serde_json::json!({"ok": false, "error": e.to_string()}),
                    ),
                }
            }
            _ => json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": {"message": "not found", "type": "invalid_request_error", "param": null, "code": null}}),
            ),
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        let len = resp.body().len();
        resp.headers_mut()
            .insert(http::header::CONTENT_LENGTH, len.into());
        resp
    }
}
