//! Tests that drive the router in-process and parse what each format renders.

mod anthropic;
mod cross;
mod gemini;
mod openai;

use crate::MockConfig;
use crate::faults::Faults;
use crate::http::{Route, respond};
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};
use http_body_util::BodyExt as _;
use serde_json::Value;

/// A response, its body read to the end (`Err` when the stream was cut).
pub(super) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Result<String, String>,
}

impl Reply {
    pub fn text(&self) -> &str {
        self.body.as_deref().expect("complete body")
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(self.text()).expect("JSON body")
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// SSE events as (event name, data JSON).
    pub fn events(&self) -> Vec<(Option<String>, Value)> {
        sse_events(self.text())
    }
}

pub(super) fn sse_events(body: &str) -> Vec<(Option<String>, Value)> {
    body.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let mut name = None;
            let mut data = None;
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(d).expect("data is JSON"));
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            (name, data.expect("data line"))
        })
        .collect()
}

/// Sends a request through the router, with `x-mock-*` headers, and reads the whole reply.
pub(super) async fn call(
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Reply {
    call_with(method, uri, headers, body, &MockConfig::default()).await
}

pub(super) async fn call_with(
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: &Value,
    config: &MockConfig,
) -> Reply {
    let uri: Uri = uri.parse().expect("uri");
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            v.parse().expect("value"),
        );
    }
    let route = Route::of(&method, &uri);
    let resp = respond(
        &route,
        &Bytes::from(body.to_string()),
        config,
        &Faults::from_headers(&h),
    )
    .await;
    let (parts, body) = resp.into_parts();
    let body = match body.collect().await {
        Ok(b) => Ok(String::from_utf8(b.to_bytes().to_vec()).expect("UTF-8 body")),
        Err(e) => Err(e.to_string()),
    };
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub(super) async fn post(uri: &str, headers: &[(&str, &str)], body: &Value) -> Reply {
    call(Method::POST, uri, headers, body).await
}

/// The keys of a JSON object, sorted.
pub(super) fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

/// A weather tool's JSON schema, with `type` names in the given case (Gemini accepts upper).
pub(super) fn weather_schema(upper: bool) -> Value {
    let t = |s: &str| {
        if upper {
            s.to_ascii_uppercase()
        } else {
            s.to_owned()
        }
    };
    serde_json::json!({"type": t("object"), "properties": {
        "city": {"type": t("string")}, "days": {"type": t("integer")},
        "metric": {"type": t("boolean")}, "unit": {"type": t("string")}},
        "required": ["city", "days", "metric"]})
}

/// The arguments [`weather_schema`] yields.
pub(super) fn weather_args() -> Value {
    serde_json::json!({"city": "mock", "days": 1, "metric": true})
}
