//! The admin listener: `/metrics` (Prometheus text), health checks, `/admin/reload`,
//! `/admin/targets` (each target's circuit, moving averages and last error),
//! `/admin/budgets` (each budget's limit, spend and reservations in its current period), and
//! with `server.admin_key`, key management and spend reports ([`crate::admin_api`]).
//!
//! With an admin key, every `/admin/*` path asks for it (`Authorization: Bearer`); without
//! one, key management and spend reports are off, and the rest stays open, as the listener is
//! meant for a private network. `/metrics` and `/health/*` are always open, for scrapers and
//! probes.

use crate::admin_api::{Answer, KeysApi, error};
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
    /// The hash of the admin key, from the config at start.
    pub admin_key: Option<tollgate_config::KeyHash>,
    /// The store, opened on first use on the admin listener's runtime.
    pub store: tokio::sync::OnceCell<tollgate_state::store::Store>,
}

/// The largest request body the admin API reads.
const ADMIN_BODY_LIMIT: usize = 64 * 1024;

/// Reads a JSON object body, or says why not.
async fn read_json(session: &mut ServerSession) -> Result<serde_json::Value, Answer> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > ADMIN_BODY_LIMIT {
                    return Err(error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "request_too_large",
                        "the body is too large",
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    format!("could not read the body: {}", e.etype().as_str()),
                ));
            }
        }
    }
    if body.is_empty() {
        return Ok(serde_json::json!({}));
    }
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "expected a JSON object",
        )),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("invalid JSON: {e}"),
        )),
    }
}

impl AdminApp {
    /// `None` when the request may go on; else the refusal.
    fn refuse(&self, session: &ServerSession) -> Option<Answer> {
        let want = self.admin_key?;
        let presented = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match presented {
            Some(k) if tollgate_config::hash_key(k) == want => None,
            Some(_) => Some(error(
                StatusCode::UNAUTHORIZED,
                "invalid_admin_key",
                "invalid admin key",
            )),
            None => Some(error(
                StatusCode::UNAUTHORIZED,
                "missing_admin_key",
                "send the admin key as `Authorization: Bearer <key>`",
            )),
        }
    }

    /// Key management and spend reports.
    async fn keys_api(&self, session: &mut ServerSession, method: &Method, path: &str) -> Answer {
        if self.admin_key.is_none() {
            return error(
                StatusCode::FORBIDDEN,
                "admin_key_required",
                "set `server.admin_key` to manage keys and read spend reports",
            );
        }
        let Some(location) = self.spend.location.as_ref() else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "this gateway has no store",
            );
        };
        let store = match self
            .store
            .get_or_try_init(|| tollgate_state::store::Store::open_at(location))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "Admin API: the store cannot be opened.");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the key store is unavailable; try again shortly",
                );
            }
        };
        let live = self.live.load_full();
        let api = KeysApi {
            store,
            spend: &self.spend,
            config: &live.config,
        };
        if let Some(id) = path.strip_prefix("/admin/requests/") {
            return match *method {
                Method::GET => api.request(id).await,
                _ => error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "use GET",
                ),
            };
        }
        if path == "/admin/spend" {
            return match *method {
                Method::GET => {
                    let query = session.req_header().uri.query().unwrap_or("").to_owned();
                    api.spend_report(&query).await
                }
                _ => error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "use GET",
                ),
            };
        }
        let rest = path.strip_prefix("/admin/keys").unwrap_or("");
        let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
        match (method, parts.as_slice()) {
            (&Method::GET, []) => api.list().await,
            (&Method::POST, []) => match read_json(session).await {
                Ok(body) => api.create(&body).await,
                Err(a) => a,
            },
            (&Method::GET, [name]) => api.get(name).await,
            (&Method::PATCH | &Method::PUT, [name]) => match read_json(session).await {
                Ok(body) => api.update(name, &body).await,
                Err(a) => a,
            },
            (&Method::POST, [name, "revoke"]) => api.revoke(name).await,
            (&Method::POST, [name, "rotate"]) => api.rotate(name).await,
            _ => error(StatusCode::NOT_FOUND, "not_found", "not found"),
        }
    }
}

fn json(status: StatusCode, v: &serde_json::Value) -> (StatusCode, &'static str, Vec<u8>) {
    (status, "application/json", v.to_string().into_bytes())
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_owned();
        let method = session.req_header().method.clone();
        if path.starts_with("/admin/")
            && let Some((status, body)) = self.refuse(session)
        {
            return respond(status, "application/json", body.to_string().into_bytes());
        }
        if path == "/admin/spend"
            || path == "/admin/keys"
            || path.starts_with("/admin/keys/")
            || path.starts_with("/admin/requests/")
        {
            let (status, body) = self.keys_api(session, &method, &path).await;
            return respond(status, "application/json", body.to_string().into_bytes());
        }
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
        respond(status, content_type, body)
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Vec<u8>> {
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
