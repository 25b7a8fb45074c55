//! Pieces every dialect's request builder shares: the HTTP envelope, data URLs, tool arguments.

use crate::UpstreamRequest;
use bytes::Bytes;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::borrow::Cow;
use tollgate_config::ProviderConfig;

/// A POST of a JSON `body` to `path`, with the provider's configured headers, then the protocol
/// headers (which win on a clash), then its credential.
pub(crate) fn http_request(
    p: &ProviderConfig,
    path: String,
    body: Vec<u8>,
    stream: bool,
) -> UpstreamRequest {
    let mut headers: Vec<(Cow<'static, str>, String)> = Vec::with_capacity(7 + p.headers.len());
    for (name, value) in &p.headers {
        headers.push((Cow::Owned(name.clone()), value.clone()));
    }
    headers.push(("host".into(), p.base_url.authority()));
    headers.push(("content-type".into(), "application/json".to_owned()));
    let accept = if stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    headers.push(("accept".into(), accept.to_owned()));
    headers.push(("content-length".into(), body.len().to_string()));
    if let Some(key) = &p.api_key {
        let (name, value) = p.auth.header(key.expose_secret());
        headers.push((name.into(), value));
    }
    UpstreamRequest {
        method: "POST",
        path,
        headers,
        body: Bytes::from(body),
    }
}

/// Splits `data:<media type>;base64,<data>` into its media type and data.
pub(crate) fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((media_type, data))
}

/// Tool-call arguments (a JSON string in OpenAI's format) as the object other dialects want.
/// Arguments that are not a JSON object are kept under `arguments` rather than dropped.
pub(crate) fn parse_arguments(args: &str) -> Value {
    if args.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(args) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({"arguments": args}),
    }
}

/// OpenAI's `stop` (a string or a list) as the list other dialects want, if it names any.
pub(crate) fn stop_sequences(extra: &serde_json::Map<String, Value>) -> Option<Value> {
    match extra.get("stop")? {
        Value::String(s) => Some(json!([s])),
        Value::Array(a) if !a.is_empty() => Some(Value::Array(a.clone())),
        _ => None,
    }
}

/// Seconds since the Unix epoch, for `created` fields.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls() {
        assert_eq!(
            data_url("data:image/png;base64,iVBOR"),
            Some(("image/png", "iVBOR"))
        );
        assert_eq!(data_url("https://example.com/a.png"), None);
        assert_eq!(data_url("data:text/plain,hello"), None, "not base64");
    }

    #[test]
    fn arguments() {
        assert_eq!(parse_arguments(r#"{"a":1}"#), json!({"a": 1}));
        assert_eq!(parse_arguments(""), json!({}));
        assert_eq!(parse_arguments("[1]"), json!({"arguments": "[1]"}));
    }
}
