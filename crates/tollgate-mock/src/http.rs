//! The HTTP layer: accept loop, routing, and the response body type.

use crate::{MockConfig, MockStats, chat, embeddings, faults::Faults};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

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
    let faults = Faults::from_headers(req.headers());
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(error(StatusCode::BAD_REQUEST, "could not read body")),
    };
    stats.record(body.len());
    if let Some(latency) = faults.latency {
        tokio::time::sleep(latency).await;
    }
    if faults.hang {
        std::future::pending::<()>().await;
    }
    if let Some(status) = faults.injected_status() {
        let mut resp = error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &format!("mock: injected status {status}"),
        );
        if let Some(ra) = faults.retry_after.as_deref().and_then(|v| v.parse().ok()) {
            resp.headers_mut().insert(header::RETRY_AFTER, ra);
        }
        return Ok(resp);
    }
    let path = parts.uri.path();
    let path = path.strip_prefix("/v1").unwrap_or(path);
    let resp = match (&parts.method, path) {
        (&Method::POST, "/chat/completions") => chat::handle(&body, &config, &faults),
        (&Method::POST, "/embeddings") => embeddings::handle(&body, &faults),
        (&Method::GET, "/models") => json(StatusCode::OK, &embeddings::models()),
        _ => error(
            StatusCode::NOT_FOUND,
            &format!("mock: no route {} {}", parts.method, parts.uri.path()),
        ),
    };
    Ok(resp)
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
pub(crate) struct ChannelBody(pub mpsc::Receiver<Result<Bytes, std::io::Error>>);

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

pub(crate) fn sse(rx: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Response<MockBody> {
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
