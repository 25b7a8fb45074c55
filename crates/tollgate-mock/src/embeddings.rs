//! `POST /v1/embeddings` and `GET /v1/models`.

use crate::http::{MockBody, error, json};
use crate::{faults::Faults, text};
use base64::Engine as _;
use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{Value, json};

const DEFAULT_DIMENSIONS: usize = 16;

pub(crate) fn handle(body: &Bytes, faults: &Faults) -> Response<MockBody> {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
    };
    if faults.malformed {
        return error(StatusCode::OK, "{not json");
    }
    let Some(model) = v.get("model").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "missing `model`");
    };
    let inputs: Vec<String> = match v.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect(),
        _ => return error(StatusCode::BAD_REQUEST, "missing `input`"),
    };
    let dims = v
        .get("dimensions")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_DIMENSIONS, |d| d.clamp(1, 4096) as usize);
    let base64 = v.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let mut tokens = 0;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            tokens += text::estimate_tokens(input);
            let vec = vector(input, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = vec.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vec)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json(
        StatusCode::OK,
        &json!({"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
}

/// A unit vector derived from the text, so equal inputs embed equally.
fn vector(input: &str, dims: usize) -> Vec<f32> {
    let mut x = text::seed(input);
    let raw: Vec<f32> = (0..dims)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    let norm = raw
        .iter()
        .map(|v| v * v)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    raw.into_iter().map(|v| v / norm).collect()
}

pub(crate) fn models() -> Value {
    let model = |id: &str| json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": "tollgate-mock"});
    json!({"object": "list", "data": [model("mock"), model("mock-embed")]})
}
