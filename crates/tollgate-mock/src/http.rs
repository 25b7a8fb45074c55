//! The HTTP layer: accept loop, routing, and the response body type.

use crate::stream::Frames;
use crate::{MockConfig, MockStats, anthropic, chat, embeddings, faults::Faults, gemini};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpListener;

/// The mock's response body: a whole buffer, or frames from a task.
pub type MockBody = BoxBody<Bytes, std::io::Error>;

pub(crate) async fn accept_loop(
    listener: TcpListener,
    config: Arc<MockConfig>,
    stats: Arc<MockStats>,
) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "Mock accept failed.");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (config, stats) = (config.clone(), stats.clone());
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req| handle(req, config.clone(), stats.clone()));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    config: Arc<MockConfig>,
    stats: Arc<MockStats>,
) -> Result<Response<MockBody>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            let route = Route::of(&parts.method, &parts.uri);
            return Ok(route.error(StatusCode::BAD_REQUEST, "could not read body"));
        }
    };
    if let Some(resp) = control(&parts.method, parts.uri.path(), &body, &stats) {
        return Ok(resp);
    }
    let faults = stats
        .control
        .next_faults()
        .unwrap_or_else(|| Faults::from_headers(&parts.headers));
    let route = Route::of(&parts.method, &parts.uri);
    stats.record(body.len());
    let resp = respond(&route, &body, &config, &faults).await;
    stats
        .control
        .log(parts.uri.path(), resp.status().as_u16(), &body);
    Ok(resp)
}

/// The `/mock/*` control routes (see `control.rs`); `None` for every other path.
fn control(
    method: &Method,
    path: &str,
    body: &[u8],
    stats: &MockStats,
) -> Option<Response<MockBody>> {
    let c = &stats.control;
    Some(match (method, path) {
        (&Method::POST, "/mock/faults") => match c.set_script(body) {
            Ok(n) => json(StatusCode::OK, &serde_json::json!({"steps": n})),
            Err(e) => error(StatusCode::BAD_REQUEST, &e),
        },
        (&Method::DELETE, "/mock/faults") => {
            c.clear_script();
            json(StatusCode::OK, &serde_json::json!({"steps": 0}))
        }
        (&Method::GET, "/mock/requests") => json(StatusCode::OK, &c.requests_json()),
        (&Method::DELETE, "/mock/requests") => {
            c.clear_log();
            json(StatusCode::OK, &serde_json::json!({"requests": []}))
        }
        _ => return None,
    })
}

/// What a request asks for, from its method and URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// OpenAI `POST /v1/chat/completions`.
    Chat,
    /// OpenAI `POST /v1/embeddings`.
    Embeddings,
    /// OpenAI `GET /v1/models`.
    Models,
    /// Anthropic `POST /v1/messages`.
    Messages,
    /// Gemini `POST .../models/{model}:generateContent` or `:streamGenerateContent`.
    Gemini(gemini::Call),
    /// Anything else, with the 404 message.
    NotFound(String),
}

impl Route {
    pub(crate) fn of(method: &Method, uri: &Uri) -> Route {
        let full = uri.path();
        let path = full.strip_prefix("/v1").unwrap_or(full);
        match (method, path) {
            (&Method::POST, "/chat/completions") => Route::Chat,
            (&Method::POST, "/embeddings") => Route::Embeddings,
            (&Method::GET, "/models") => Route::Models,
            (&Method::POST, "/messages") => Route::Messages,
            _ => match gemini::Call::parse(full, uri.query()) {
                Some(call) if method == Method::POST => Route::Gemini(call),
                _ => Route::NotFound(format!("mock: no route {method} {full}")),
            },
        }
    }

    /// An error response in this route's wire format.
    pub(crate) fn error(&self, status: StatusCode, message: &str) -> Response<MockBody> {
        match self {
            Route::Messages => anthropic::error(status, message),
            Route::Gemini(_) => gemini::error(status, message),
            _ => error(status, message),
        }
    }
}

/// Answers a request whose body has been read: latency, hang and injected status first.
pub(crate) async fn respond(
    route: &Route,
    body: &Bytes,
    config: &MockConfig,
    faults: &Faults,
) -> Response<MockBody> {
    if let Some(latency) = faults.latency {
        tokio::time::sleep(latency).await;
    }
    if faults.hang {
        std::future::pending::<()>().await;
    }
    if let Some(status) = faults.injected_status() {
        let mut resp = route.error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &format!("mock: injected status {status}"),
        );
        if let Some(ra) = faults.retry_after.as_deref().and_then(|v| v.parse().ok()) {
            resp.headers_mut().insert(header::RETRY_AFTER, ra);
        }
        return resp;
    }
    let prompt_tokens = body.len() as u64 / 4;
    if let Some(max) = faults.max_context.filter(|max| prompt_tokens > *max) {
        let mut resp = route.error(
            StatusCode::BAD_REQUEST,
            &format!(
                "This model's maximum context length is {max} tokens. However, your messages \
                 resulted in {prompt_tokens} tokens. Please reduce the length of the messages."
            ),
        );
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        return resp;
    }
    match route {
        Route::Chat => chat::handle(body, config, faults),
        Route::Embeddings => embeddings::handle(body, faults),
        Route::Models => json(StatusCode::OK, &embeddings::models()),
        Route::Messages => anthropic::handle(body, config, faults),
        Route::Gemini(call) => gemini::handle(body, call, config, faults),
        Route::NotFound(msg) => error(StatusCode::NOT_FOUND, msg),
    }
}

pub(crate) fn json(status: StatusCode, v: &serde_json::Value) -> Response<MockBody> {
    let mut resp = Response::new(full(Bytes::from(v.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

pub(crate) fn error(status: StatusCode, message: &str) -> Response<MockBody> {
    let kind = if status.is_server_error() {
        "server_error"
    } else {
        "invalid_request_error"
    };
    json(
        status,
        &serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": null}}),
    )
}

pub(crate) fn full(b: Bytes) -> MockBody {
    Full::new(b).map_err(|never| match never {}).boxed()
}

/// A body fed by a channel; an `Err` item aborts the connection mid-body.
struct ChannelBody(Frames);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(Frame::data)))
    }
}

pub(crate) fn sse(rx: Frames) -> Response<MockBody> {
    let mut resp = Response::new(ChannelBody(rx).boxed());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    resp
}

/// A `application/json` body streamed from a task (Gemini's streamed JSON array).
pub(crate) fn json_stream(rx: Frames) -> Response<MockBody> {
    let mut resp = Response::new(ChannelBody(rx).boxed());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A 200 `application/json` response whose body is `b`, not valid JSON (`x-mock-malformed`).
pub(crate) fn malformed(b: &'static [u8]) -> Response<MockBody> {
    let mut r = Response::new(full(Bytes::from_static(b)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}
