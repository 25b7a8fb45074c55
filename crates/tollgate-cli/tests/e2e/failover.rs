use crate::harness::{Gateway, chat, mock, mock_provider, two_targets};

#[tokio::test(flavor = "multi_thread")]
async fn one_mebibyte_body_fails_over_from_503_to_the_second_target() {
    let (a, b) = (mock().await, mock().await);
    let gw = Gateway::start(&two_targets(&a, "\"x-mock-status\" = \"503\"", &b)).await;
    let big = "x".repeat(1024 * 1024);
    let resp = gw
        .post("/v1/chat/completions")
        .json(&chat("m", &big))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-provider"], "b");
    assert_eq!(resp.headers()["x-tollgate-model"], "m2");
    assert_eq!(resp.headers()["x-tollgate-attempts"], "2");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|s| s.starts_with("Mock answer"))
    );
    assert_eq!((a.stats.requests(), b.stats.requests()), (1, 1));
    assert!(
        b.stats.last_body_bytes() > 1024 * 1024,
        "the second target got the whole body"
    );
    assert_eq!(
        a.stats.last_body_bytes(),
        b.stats.last_body_bytes(),
        "each attempt sent the same body"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limited_and_unreachable_targets_fail_over() {
    let (a, b) = (mock().await, mock().await);
    let gw = Gateway::start(&two_targets(&a, "\"x-mock-status\" = \"429\"", &b)).await;
    let resp = gw
        .post("/chat/completions")
        .json(&chat("m", "hi"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-provider"], "b");

    let closed = format!("http://127.0.0.1:{}/v1", crate::harness::free_port());
    let config = format!(
        "{}\n{}\n[models.m]\ntargets = [{{ provider = \"dead\", model = \"x\" }}, {{ provider = \"b\", model = \"m2\" }}]\n",
        mock_provider("dead", &closed, ""),
        mock_provider("b", &b.base_url(), "")
    );
    let gw = Gateway::start(&config).await;
    let resp = gw
        .post("/v1/chat/completions")
        .json(&chat("m", "hi"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-attempts"], "2");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_target_times_out_and_fails_over() {
    let (a, b) = (mock().await, mock().await);
    let gw = Gateway::start(&two_targets(&a, "\"x-mock-hang\" = \"1\"", &b)).await;
    let started = std::time::Instant::now();
    let resp = gw
        .post("/v1/chat/completions")
        .json(&chat("m", "hi"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-provider"], "b");
    // first_byte_timeout_ms is 2000 in the harness: the gateway waited for it, not forever.
    assert!(started.elapsed() >= std::time::Duration::from_millis(1900));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_success_body_fails_over() {
    let (a, b) = (mock().await, mock().await);
    let gw = Gateway::start(&two_targets(&a, "\"x-mock-malformed\" = \"1\"", &b)).await;
    let resp = gw
        .post("/v1/chat/completions")
        .json(&chat("m", "hi"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-provider"], "b");
    let body: serde_json::Value = resp.json().await.expect("valid JSON reached the client");
    assert_eq!(body["object"], "chat.completion");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_error_is_returned_without_trying_other_targets() {
    let (a, b) = (mock().await, mock().await);
    let gw = Gateway::start(&two_targets(&a, "\"x-mock-status\" = \"400\"", &b)).await;
    let resp = gw
        .post("/v1/chat/completions")
        .json(&chat("m", "hi"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("injected status 400"))
    );
    assert_eq!(b.stats.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn when_every_target_fails_the_client_gets_a_summary_without_secrets() {
    let (a, b) = (mock().await, mock().await);
    let secret = "sk-upstream-very-secret-0123456789";
    let config = format!(
        "{}api_key_env = \"UPSTREAM_KEY\"\n{}\n[models.m]\ntargets = [{{ provider = \"a\", model = \"m1\" }}, {{ provider = \"b\", model = \"m2\" }}]\n",
        mock_provider("a", &a.base_url(), "\"x-mock-status\" = \"503\""),
        mock_provider("b", &b.base_url(), "\"x-mock-status\" = \"401\"")
    );
    let gw = Gateway::start_with(&config, &[("UPSTREAM_KEY", secret)]).await;
    let resp = gw
        .post("/v1/chat/completions")
        .json(&chat("m", "hi"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 502);
    assert!(resp.headers().contains_key("x-request-id"));
    let text = resp.text().await.expect("text");
    assert!(!text.contains(secret), "no secret in {text}");
    let body: serde_json::Value = serde_json::from_str(&text).expect("json");
    let msg = body["error"]["message"].as_str().expect("message");
    assert!(msg.contains("a/m1: HTTP 503"), "{msg}");
    assert!(msg.contains("b/m2: HTTP 401"), "{msg}");
    assert_eq!(body["error"]["code"], "upstream_failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn when_every_target_is_rate_limited_the_client_gets_429_with_the_shortest_wait() {
    let (a, b) = (mock().await, mock().await);
    let config = format!(
        "{}\n{}\n[models.m]\nretries = 0\ntargets = [{{ provider = \"a\", model = \"m1\" }}, {{ provider = \"b\", model = \"m2\" }}]\n",
        mock_provider(
            "a",
            &a.base_url(),
            "\"x-mock-status\" = \"429\", \"x-mock-retry-after\" = \"7\""
        ),
        mock_provider(
            "b",
            &b.base_url(),
            "\"x-mock-status\" = \"429\", \"x-mock-retry-after\" = \"2\""
        )
    );
    let gw = Gateway::start(&config).await;
    let resp = gw
        .post("/v1/chat/completions")
        .json(&chat("m", "hi"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
    assert_eq!(resp.headers()["x-should-retry"], "true");
    assert_eq!(resp.headers()["x-tollgate-attempts"], "2");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("retry after 7.0s")),
        "{body}"
    );
}
