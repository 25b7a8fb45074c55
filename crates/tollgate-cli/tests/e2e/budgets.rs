//! Budgets hold under concurrency, the ledger adds up to the counters exactly, and spend
//! survives a restart.

use crate::harness::{Gateway, KEY, mock, mock_provider};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use tollgate_state::store::{Location, Store};
use tollgate_types::Usd;

/// Model `m` on a mock priced high enough that a few dozen requests exhaust `limit_usd` for
/// the test key, with the embedded store in `data_dir`.
fn metered(m: &tollgate_mock::MockHandle, data_dir: &Path, limit_usd: f64) -> String {
    format!(
        "[spend]\ndata_dir = \"{}\"\nreserve_output_tokens = 64\n\n{}\n\
         [models.m]\ntargets = [{{ provider = \"a\", model = \"mock\" }}]\n\
         [prices.\"a/mock\"]\ninput_per_1m = 1000.0\noutput_per_1m = 2000.0\n\
         [[budgets]]\nkey = \"test\"\nlimit_usd = {limit_usd}\n",
        data_dir.display(),
        mock_provider("a", &m.base_url(), "")
    )
}

fn request() -> Value {
    json!({"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "hello"}]})
}

fn usd(v: &Value) -> Usd {
    Usd::from_dollars(v.as_str().expect("amount").parse().expect("number"))
}

/// `GET /admin/budgets`.
async fn budgets_report(gw: &Gateway) -> Value {
    reqwest::get(format!("{}/admin/budgets", gw.admin_url))
        .await
        .expect("admin")
        .json()
        .await
        .expect("json")
}

/// (spent, reserved) of the only budget.
async fn budget(gw: &Gateway) -> (Usd, Usd) {
    let v = budgets_report(gw).await;
    let b = &v["budgets"][0];
    (usd(&b["spent_usd"]), usd(&b["reserved_usd"]))
}

/// Requests are settled just after their response is written: wait for in-flight ones.
async fn settled(gw: &Gateway) -> Usd {
    for _ in 0..100 {
        let (spent, reserved) = budget(gw).await;
        if reserved == Usd::ZERO {
            return spent;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("reservations never settled");
}

/// The ledger is written in batches off the request path: wait for it to catch up with
/// `want`, counting the test key's entries since `since_ms`.
async fn ledger_total(location: &Location, since_ms: i64, want: Usd) -> Usd {
    let store = Store::open_at(location).await.expect("store");
    let mut total = Usd::ZERO;
    for _ in 0..100 {
        total = store.ledger_total("test", since_ms).await.expect("sum");
        if total == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.close().await;
    total
}

/// 64 clients, 4 requests each, spread over `urls`: what they were charged (from each
/// answer's `x-tollgate-cost-usd`), the largest single charge, and how many were refused.
async fn sixty_four_clients(urls: &[String]) -> (Usd, Usd, usize) {
    let client = reqwest::Client::new();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let client = client.clone();
            let url = format!("{}/v1/chat/completions", urls[i % urls.len()]);
            tokio::spawn(async move {
                let mut out = Vec::new();
                for _ in 0..4 {
                    let resp = client
                        .post(&url)
                        .bearer_auth(KEY)
                        .json(&request())
                        .send()
                        .await
                        .expect("send");
                    let status = resp.status().as_u16();
                    let retry = resp.headers().get("x-should-retry").cloned();
                    let cost = resp
                        .headers()
                        .get("x-tollgate-cost-usd")
                        .map(|v| Usd::from_dollars(v.to_str().expect("ascii").parse().expect("n")));
                    let body: Value = resp.json().await.expect("json");
                    out.push((status, retry, cost, body));
                }
                out
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.extend(t.await.expect("task"));
    }
    let (mut charged, mut most, mut refused) = (Usd::ZERO, Usd::ZERO, 0);
    for (status, retry, cost, body) in &results {
        match status {
            200 => {
                let cost = cost.expect("a priced answer carries its cost");
                charged = charged.saturating_add(cost);
                most = most.max(cost);
            }
            402 => {
                refused += 1;
                assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
                assert_eq!(body["error"]["type"], "insufficient_quota", "{body}");
                assert_eq!(retry.as_ref().and_then(|v| v.to_str().ok()), Some("false"));
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    (charged, most, refused)
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_four_clients_never_overspend_and_the_ledger_adds_up() {
    let m = mock().await;
    let data = tempfile::tempdir().expect("data dir");
    let gw = Gateway::start(&metered(&m, data.path(), 1.0)).await;
    let (charged, most, refused) = sixty_four_clients(std::slice::from_ref(&gw.url)).await;
    assert!(refused > 0, "the budget ran out");
    assert!(charged > Usd::ZERO);
    let spent = settled(&gw).await;
    // The counter is exactly what the answers said they cost, and the cap held.
    assert_eq!(spent, charged);
    let limit = Usd::from_dollars(1.0);
    assert!(
        spent <= limit.saturating_add(most),
        "{spent} > {limit} + {most}"
    );
    // The durable ledger adds up to the counter to the picodollar.
    let location = Location::Sqlite(data.path().to_owned());
    assert_eq!(ledger_total(&location, 0, spent).await, spent);
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    i64::try_from(since.expect("clock").as_millis()).expect("ms")
}

/// The same load through two gateway processes sharing one budget in Redis and one ledger in
/// PostgreSQL.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Redis and PostgreSQL: tests/run.sh runs it when TOLLGATE_TEST_REDIS_URL and TOLLGATE_TEST_DATABASE_URL are set"]
async fn two_gateways_share_one_budget_through_redis_and_postgres() {
    let url = std::env::var("TOLLGATE_TEST_REDIS_URL").expect("TOLLGATE_TEST_REDIS_URL");
    let db = std::env::var("TOLLGATE_TEST_DATABASE_URL").expect("TOLLGATE_TEST_DATABASE_URL");
    let since = now_ms();
    let m = mock().await;
    let prefix = format!("tollgate-e2e-{}-{}", std::process::id(), m.addr.port());
    let (a_dir, b_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let shared = format!(
        "[shared]\nredis_url = \"{url}\"\ndatabase_url = \"{db}\"\nprefix = \"{prefix}\"\n"
    );
    // A daily budget, so the test's counters in Redis expire (a `total` one's never do).
    let daily = |dir: &Path| {
        metered(&m, dir, 1.0).replace("limit_usd = 1\n", "limit_usd = 1\nperiod = \"daily\"\n")
    };
    let a = Gateway::start(&format!("{shared}{}", daily(a_dir.path()))).await;
    let b = Gateway::start(&format!("{shared}{}", daily(b_dir.path()))).await;
    let (charged, most, refused) = sixty_four_clients(&[a.url.clone(), b.url.clone()]).await;
    assert!(refused > 0, "the budget ran out");
    let spent = settled(&a).await;
    assert_eq!(settled(&b).await, spent, "both gateways read one counter");
    assert_eq!(spent, charged);
    let limit = Usd::from_dollars(1.0);
    assert!(
        spent <= limit.saturating_add(most),
        "{spent} > {limit} + {most}"
    );
    // One ledger for both gateways, in PostgreSQL, adds up to the shared counter. (Other
    // runs' entries are older than this test, and keyed the same: count from its start.)
    let total = ledger_total(&Location::Postgres(db), since, spent).await;
    assert_eq!(total, spent);
}

#[tokio::test(flavor = "multi_thread")]
async fn spend_survives_a_restart() {
    let m = mock().await;
    let data = tempfile::tempdir().expect("data dir");
    let config = metered(&m, data.path(), 0.5);
    let mut gw = Gateway::start(&config).await;
    let mut served = 0;
    loop {
        let resp = gw
            .post("/v1/chat/completions")
            .json(&request())
            .send()
            .await
            .expect("send");
        match resp.status().as_u16() {
            200 => served += 1,
            402 => break,
            other => panic!("unexpected status {other}"),
        }
        assert!(served < 1000, "the budget never ran out");
    }
    let spent = settled(&gw).await;
    assert!(spent > Usd::ZERO);
    // A graceful stop writes what is queued; a new process reads it back.
    gw.signal("TERM");
    assert!(
        gw.wait_exit(Duration::from_secs(20)),
        "gateway did not stop"
    );
    let gw = Gateway::start(&config).await;
    assert_eq!(budget(&gw).await, (spent, Usd::ZERO));
    let resp = gw
        .post("/v1/chat/completions")
        .json(&request())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 402, "still out of budget after the restart");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_script_falls_back_to_a_cheaper_model_as_the_budget_runs_down() {
    let m = mock().await;
    let data = tempfile::tempdir().expect("data dir");
    let script = data.path().join("thrifty.rhai");
    std::fs::write(
        &script,
        "fn route(req, ctx) {\n    let left = ctx.budget_remaining;\n    \
         if left == () || left > 0.5 { \"a/mock\" } else { \"a/cheap\" }\n}\n",
    )
    .expect("script");
    let config = metered(&m, data.path(), 1.0).replace(
        "[models.m]\ntargets = [{ provider = \"a\", model = \"mock\" }]\n",
        &format!(
            "[models.m]\npolicy = \"{}\"\ntargets = [{{ provider = \"a\", model = \"mock\" }}, \
             {{ provider = \"a\", model = \"cheap\" }}]\n\
             [prices.\"a/cheap\"]\ninput_per_1m = 100.0\noutput_per_1m = 200.0\n",
            script.display()
        ),
    );
    let gw = Gateway::start(&config).await;
    let mut served = Vec::new();
    for _ in 0..2000 {
        let resp = gw
            .post("/v1/chat/completions")
            .json(&request())
            .send()
            .await
            .expect("send");
        if resp.status() == 402 {
            break;
        }
        assert_eq!(resp.status(), 200);
        let model = resp.headers()["x-tollgate-model"]
            .to_str()
            .expect("ascii")
            .to_owned();
        served.push(model);
    }
    let switch = served
        .iter()
        .position(|m| m == "cheap")
        .expect("switched to cheap");
    assert!(
        switch > 0,
        "the frontier model served while the budget was fresh"
    );
    assert!(
        served[switch..].iter().all(|m| m == "cheap"),
        "once past half the budget, only the cheap model: {served:?}"
    );
}

/// With the shared counters unreachable, budgets refuse (503) unless told to count locally.
#[tokio::test(flavor = "multi_thread")]
async fn unreachable_shared_budgets_refuse_unless_told_to_count_locally() {
    let m = mock().await;
    let data = tempfile::tempdir().expect("data dir");
    let closed = crate::harness::free_port();
    let shared = format!("[shared]\nredis_url = \"redis://127.0.0.1:{closed}\"\n");
    let strict = Gateway::start(&format!("{shared}{}", metered(&m, data.path(), 1.0))).await;
    let resp = strict
        .post("/v1/chat/completions")
        .json(&request())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "budget_store_unavailable");
    let local_dir = tempfile::tempdir().expect("data dir");
    let lenient = metered(&m, local_dir.path(), 1.0).replace(
        "reserve_output_tokens = 64\n",
        "reserve_output_tokens = 64\non_shared_error = \"local\"\n",
    );
    let lenient = Gateway::start(&format!("{shared}{lenient}")).await;
    let resp = lenient
        .post("/v1/chat/completions")
        .json(&request())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert!(
        settled(&lenient).await > Usd::ZERO,
        "counted in the gateway's own counters"
    );
}

/// A stream that runs past the output it reserved, with no room left in its budget, is cut
/// off with an error event, and charged for what it generated (estimated: the stream ended
/// before the provider's usage).
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_past_its_reservation_is_cut_off_when_the_budget_runs_out() {
    let m = mock().await;
    let data = tempfile::tempdir().expect("data dir");
    // Output only, $0.001 a token; 4 output tokens reserved for a request without max_tokens;
    // a budget with room for 6.
    let config = format!(
        "[spend]\ndata_dir = \"{}\"\nreserve_output_tokens = 4\n\n{}\n\
         [models.m]\ntargets = [{{ provider = \"a\", model = \"mock\" }}]\n\
         [prices.\"a/mock\"]\ninput_per_1m = 0.0\noutput_per_1m = 1000.0\n\
         [[budgets]]\nkey = \"test\"\nlimit_usd = 0.006\n",
        data.path().display(),
        mock_provider("a", &m.base_url(), "\"x-mock-chunks\" = \"40\"")
    );
    let gw = Gateway::start(&config).await;
    let text = gw
        .post("/v1/chat/completions")
        .json(&json!({"model": "m", "stream": true,
                      "messages": [{"role": "user", "content": "tell me a long story"}]}))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(text.contains("\"budget_exceeded\""), "{text}");
    assert!(
        !text.contains("data: [DONE]"),
        "the stream was cut short: {text}"
    );
    let spent = settled(&gw).await;
    assert!(
        spent > Usd::from_dollars(0.004),
        "charged for what it generated: {spent}"
    );
    // It stops within one look at the budget (8 tokens) past the limit.
    assert!(spent <= Usd::from_dollars(0.006 + 0.008 + 0.001), "{spent}");
    // The ledger holds the same (estimated) charge.
    let store = Store::open(data.path()).await.expect("store");
    for _ in 0..100 {
        if store.ledger_total("test", 0).await.expect("sum") == spent {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.ledger_total("test", 0).await.expect("sum"), spent);
    store.close().await;
}

/// `per = "user"`: each end user has a cap of their own.
#[tokio::test(flavor = "multi_thread")]
async fn each_user_runs_out_of_their_own_budget() {
    let m = mock().await;
    let data = tempfile::tempdir().expect("data dir");
    let config = metered(&m, data.path(), 0.5).replace(
        "[[budgets]]\nkey = \"test\"\n",
        "[[budgets]]\nper = \"user\"\n",
    );
    let gw = Gateway::start(&config).await;
    let ask = |user: &'static str| {
        gw.post("/v1/chat/completions")
            .header("x-tollgate-user", user)
            .json(&request())
            .send()
    };
    let mut served = 0;
    loop {
        let status = ask("ana").await.expect("send").status().as_u16();
        if status == 402 {
            break;
        }
        assert_eq!(status, 200);
        served += 1;
        assert!(served < 1000, "ana's budget never ran out");
    }
    assert!(served > 0);
    assert_eq!(
        ask("bo").await.expect("send").status(),
        200,
        "bo has his own"
    );
    let plain = gw.post("/v1/chat/completions").json(&request()).send();
    assert_eq!(
        plain.await.expect("send").status(),
        200,
        "no user: no per-user cap"
    );
    let report = budgets_report(&gw).await;
    let each = report["budgets"][0]["each"]
        .as_array()
        .expect("per-user rows");
    let names: Vec<&str> = each.iter().filter_map(|r| r["name"].as_str()).collect();
    assert!(names.contains(&"ana") && names.contains(&"bo"), "{report}");
}

/// A budget in tokens: requests reserve their worst case in tokens (the body's bytes plus
/// `max_tokens`), are settled with the tokens the provider reported, and are refused once the
/// cap cannot cover the next one. A budget may cap dollars and tokens at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_budget_counts_reported_tokens_and_runs_out() {
    let m = mock().await;
    let data = tempfile::tempdir().expect("dir");
    let gw = Gateway::start(&metered(&m, data.path(), 1000.0).replace(
        "limit_usd = 1000\n",
        "limit_usd = 1000\nlimit_tokens = 400\nname = \"cap\"\n",
    ))
    .await;
    let mut used = 0u64;
    let mut refused = None;
    for _ in 0..50 {
        let resp = gw
            .post("/v1/chat/completions")
            .json(&request())
            .send()
            .await
            .expect("send");
        if resp.status() != 200 {
            refused = Some(resp);
            break;
        }
        let body: Value = resp.json().await.expect("json");
        used += body["usage"]["total_tokens"].as_u64().expect("tokens");
    }
    let refused = refused.expect("the token budget ran out");
    assert_eq!(refused.status(), 402);
    let err: Value = refused.json().await.expect("json");
    assert_eq!(err["error"]["code"], "budget_exceeded");
    assert!(
        err["error"]["message"]
            .as_str()
            .expect("message")
            .contains("cap:tokens"),
        "{err}"
    );
    let report = budgets_report(&gw).await;
    let named = |name: &str| {
        report["budgets"]
            .as_array()
            .expect("budgets")
            .iter()
            .find(|b| b["name"] == name)
            .unwrap_or_else(|| panic!("no budget {name:?}"))
            .clone()
    };
    let tokens = named("cap:tokens");
    assert_eq!(tokens["unit"], "tokens");
    assert_eq!(tokens["limit_tokens"], "400");
    assert_eq!(
        tokens["spent_tokens"],
        used.to_string(),
        "settled with the reported tokens"
    );
    assert!(used <= 400);
    let dollars = named("cap");
    assert_eq!(dollars["unit"], "usd");
    assert_ne!(
        dollars["spent_usd"], "0",
        "the same requests were charged in dollars too"
    );
}
