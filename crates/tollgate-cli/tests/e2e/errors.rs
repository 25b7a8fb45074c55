use crate::harness::{Gateway, KEY, chat, mock_provider};
use tollgate_mock::{MockConfig, spawn};

async fn gateway(extra: &str) -> Gateway {
    let m = spawn("127.0.0.1:0", MockConfig::default())
        .await
        .expect("mock");
    Gateway::start(&format!(
        "{extra}\n{}\n[models.m]\ntargets = [{{ provider = \"a\", model = \"x\" }}]\n",
        mock_provider("a", &m.base_url(), "")
    ))
    .await
}

async fn error_of(resp: reqwest::Response) -> (u16, serde_json::Value) {
    let status = resp.status().as_u16();
    assert!(
        resp.headers().contains_key("x-request-id"),
        "every response has x-request-id"
    );
    (status, resp.json().await.expect("OpenAI-shaped JSON error"))
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_400() {
    let gw = gateway("").await;
    let (s, e) = error_of(
        gw.post("/v1/chat/completions")
            .body("{not json")
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(e["error"]["type"], "invalid_request_error");

    let body = serde_json::json!({"model": "m"});
    let (s, e) = error_of(
        gw.post("/v1/chat/completions")
            .json(&body)
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(e["error"]["param"], "messages");

    let body = serde_json::json!({"messages": [{"role": "user", "content": "hi"}]});
    let (s, e) = error_of(
        gw.post("/v1/chat/completions")
            .json(&body)
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(e["error"]["param"], "model");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_or_unknown_keys_get_401() {
    let gw = gateway("").await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", gw.url);
    let (s, e) = error_of(
        client
            .post(&url)
            .json(&chat("m", "hi"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(e["error"]["code"], "invalid_api_key");
    let (s, _) = error_of(
        client
            .post(&url)
            .bearer_auth("sk-wrong")
            .json(&chat("m", "hi"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(s, 401);
    let ok = client
        .post(&url)
        .header("x-api-key", KEY)
        .json(&chat("m", "hi"))
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), 200, "x-api-key is accepted too");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_models_and_paths_get_404_and_wrong_methods_405() {
    let gw = gateway("").await;
    let (s, e) = error_of(
        gw.post("/v1/chat/completions")
            .json(&chat("nope", "hi"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(e["error"]["code"], "model_not_found");
    let resp = gw
        .post("/v1/chat/completions")
        .json(&chat("nope", "hi"))
        .send()
        .await
        .expect("send");
    assert_eq!(
        resp.headers()["x-should-retry"],
        "false",
        "SDKs must not resend a request that cannot succeed"
    );
    let (s, _) = error_of(
        gw.post("/v1/nothing-here")
            .json(&chat("m", "hi"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(s, 404);
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/chat/completions", gw.url))
        .send()
        .await
        .expect("send");
    assert_eq!(error_of(resp).await.0, 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_the_limit_get_413_and_the_gateway_keeps_serving() {
    let gw = gateway("[limits]\nmax_request_bytes = 4096\n").await;
    let (s, e) = error_of(
        gw.post("/v1/chat/completions")
            .json(&chat("m", &"x".repeat(8192)))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(s, 413);
    assert_eq!(e["error"]["code"], "request_too_large");
    let ok = gw
        .post("/v1/chat/completions")
        .json(&chat("m", "small"))
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn models_are_listed_and_looked_up() {
    let gw = gateway("").await;
    let client = reqwest::Client::new();
    let list: serde_json::Value = client
        .get(format!("{}/v1/models", gw.url))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(list["data"][0]["id"], "m");
    let one = client
        .get(format!("{}/models/m", gw.url))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("send");
    assert_eq!(one.status(), 200);
    let missing = client
        .get(format!("{}/v1/models/zzz", gw.url))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("send");
    assert_eq!(missing.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_fields_pass_through_to_the_provider() {
    let gw = gateway("").await;
    let mut body = chat("m", "hi");
    body["logprobs"] = true.into();
    body["seed"] = 42.into();
    let resp: serde_json::Value = gw
        .post("/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    // The mock only returns logprobs when it received `logprobs: true`.
    assert!(
        resp["choices"][0]["logprobs"]["content"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    );
}

/// `[[keys]]` entries for `live`, `expired` (in 2020) and `revoked`, in that order.
fn keys(revoke_live: bool) -> String {
    let entry = |name: &str, extra: &str| {
        format!(
            "[[keys]]\nname = \"{name}\"\nhash = \"{}\"\ntenant = \"t1\"\n{extra}\n",
            tollgate_config::hash_key(&format!("sk-{name}"))
        )
    };
    [
        entry("live", if revoke_live { "revoked = true" } else { "" }),
        entry("expired", "expires = 2020-01-01T00:00:00Z"),
        entry("revoked", "revoked = true"),
    ]
    .concat()
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_and_revoked_keys_get_401_at_once() {
    let m = crate::harness::mock().await;
    let body = |revoke_live: bool| {
        format!(
            "{}\n[models.m]\ntargets = [{{ provider = \"a\", model = \"x\" }}]\n{}",
            mock_provider("a", &m.base_url(), ""),
            keys(revoke_live)
        )
    };
    let gw = Gateway::start(&body(false)).await;
    let ask = |key: &'static str| {
        reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(key)
            .json(&chat("m", "hi"))
            .send()
    };
    assert_eq!(ask("sk-live").await.expect("send").status(), 200);
    for (key, why) in [("sk-expired", "expired"), ("sk-revoked", "revoked")] {
        let resp = ask(key).await.expect("send");
        assert_eq!(resp.status(), 401);
        let body: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(body["error"]["code"], "invalid_api_key");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(why)),
            "{body}"
        );
    }
    // Revoking a key is a config change: it takes effect with the reload, no restart.
    gw.write_config(&body(true));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if ask("sk-live").await.expect("send").status() == 401 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the revocation never took effect"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
