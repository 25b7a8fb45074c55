use crate::harness::{Gateway, chat, mock, mock_provider, two_targets};
use futures_util::StreamExt as _;
use std::time::{Duration, Instant};
use tollgate_mock::{MockConfig, spawn};

/// Reads an SSE response, returning each `data:` payload with the time it arrived.
async fn events(resp: reqwest::Response) -> Vec<(Instant, String)> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { break };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(i) = buf.find("\n\n") {
            let event: String = buf.drain(..i + 2).collect();
            if let Some(data) = event.trim().strip_prefix("data: ") {
                out.push((Instant::now(), data.to_owned()));
            }
        }
    }
    out
}

fn stream_body(model: &str, usage: bool) -> serde_json::Value {
    let mut body = chat(model, "tell me a story");
    body["stream"] = true.into();
    if usage {
        body["stream_options"] = serde_json::json!({"include_usage": true});
    }
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn chunks_reach_the_client_as_they_are_generated() {
    let config = MockConfig {
        chunk_delay: Duration::from_millis(50),
        chunks: 8,
        ..MockConfig::default()
    };
    let m = spawn("127.0.0.1:0", config).await.expect("mock");
    let gw = Gateway::start(&format!(
        "{}\n[models.m]\ntargets = [{{ provider = \"a\", model = \"x\" }}]\n",
        mock_provider("a", &m.base_url(), "")
    ))
    .await;
    let resp = gw
        .post("/v1/chat/completions")
        .json(&stream_body("m", true))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let evs = events(resp).await;
    let contents: Vec<&(Instant, String)> = evs
        .iter()
        .filter(|(_, d)| d.contains("\"content\":\""))
        .collect();
    assert!(contents.len() >= 8, "got {} content chunks", contents.len());
    // Eight chunks 50 ms apart: a buffering proxy would deliver them all at once.
    let spread = contents.last().expect("last").0 - contents[1].0;
    assert!(
        spread >= Duration::from_millis(250),
        "chunks arrived together ({spread:?})"
    );
    assert_eq!(evs.last().expect("events").1, "[DONE]");
    let usage: serde_json::Value =
        serde_json::from_str(&evs[evs.len() - 2].1).expect("usage chunk");
    assert!(
        usage["usage"]["completion_tokens"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_chunk_only_when_asked_for() {
    let m = spawn("127.0.0.1:0", MockConfig::default())
        .await
        .expect("mock");
    let gw = Gateway::start(&format!(
        "{}\n[models.m]\ntargets = [{{ provider = \"a\", model = \"x\" }}]\n",
        mock_provider("a", &m.base_url(), "")
    ))
    .await;
    let resp = gw
        .post("/v1/chat/completions")
        .json(&stream_body("m", false))
        .send()
        .await
        .expect("send");
    let evs = events(resp).await;
    assert!(
        evs.iter().all(|(_, d)| !d.contains("\"usage\"")),
        "no usage without include_usage"
    );
    assert_eq!(evs.last().expect("events").1, "[DONE]");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_that_breaks_midway_ends_with_an_error_event() {
    let m = spawn("127.0.0.1:0", MockConfig::default())
        .await
        .expect("mock");
    let gw = Gateway::start(&format!(
        "{}\n[models.m]\ntargets = [{{ provider = \"a\", model = \"x\" }}]\n",
        mock_provider(
            "a",
            &m.base_url(),
            "\"x-mock-reset-after\" = \"3\", \"x-mock-chunk-delay-ms\" = \"20\""
        )
    ))
    .await;
    let resp = gw
        .post("/v1/chat/completions")
        .json(&stream_body("m", false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let evs = events(resp).await;
    let last: serde_json::Value =
        serde_json::from_str(&evs.last().expect("events").1).expect("error event");
    assert_eq!(last["error"]["code"], "upstream_stream_error");
    assert!(evs.iter().all(|(_, d)| d != "[DONE]"));
}

/// A stream whose first target misbehaves (per `a_headers`) is served whole by the second.
async fn assert_stream_fails_over(a_headers: &str) {
    let (a, b) = (mock().await, mock().await);
    let gw = Gateway::start(&two_targets(&a, a_headers, &b)).await;
    let resp = gw
        .post("/v1/chat/completions")
        .json(&stream_body("m", true))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-provider"], "b");
    let evs = events(resp).await;
    assert_eq!(evs.last().expect("events").1, "[DONE]");
    assert_eq!((a.stats.requests(), b.stats.requests()), (1, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_fails_over_before_its_first_byte() {
    assert_stream_fails_over("\"x-mock-reset-after\" = \"0\"").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_request_answered_without_sse_fails_over() {
    assert_stream_fails_over("\"x-mock-malformed\" = \"1\"").await;
}
