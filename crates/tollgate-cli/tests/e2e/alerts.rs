//! Webhook alerts: a budget passing 50% and then refusing a request sends one alert each,
//! once; a key's spend jumping far above its trailing mean sends an anomaly alert.

use crate::harness::{Gateway, ask_mock, chat, mock, mock_provider};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tollgate_state::store::{LedgerEntry, Store};
use tollgate_types::Usd;

/// A webhook that keeps every JSON body POSTed to it.
struct Webhook {
    url: String,
    received: Arc<Mutex<Vec<Value>>>,
}

impl Webhook {
    async fn start() -> Webhook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Read the head, then as many body bytes as it declares.
                    loop {
                        let n = conn.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).into_owned();
                        let Some(head_end) = text.find("\r\n\r\n") else {
                            continue;
                        };
                        let length: usize = text[..head_end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() >= head_end + 4 + length {
                            let body = &buf[head_end + 4..head_end + 4 + length];
                            if let Ok(v) = serde_json::from_slice(body) {
                                store.lock().expect("lock").push(v);
                            }
                            let _ = conn
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                                .await;
                            return;
                        }
                    }
                });
            }
        });
        Webhook { url, received }
    }

    fn received(&self) -> Vec<Value> {
        self.received.lock().expect("lock").clone()
    }

    /// Waits until `n` alerts have arrived.
    async fn wait_for(&self, n: usize) -> Vec<Value> {
        for _ in 0..100 {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("expected {n} alerts, got {:?}", self.received());
    }
}

// Output dominates, so a request's reservation (its body's bytes as prompt tokens, plus its
// `max_tokens`) is close to what it costs.
const PRICE_IN: f64 = 10.0;
const PRICE_OUT: f64 = 2000.0;

/// The mock's answer to "hello" in tokens, and what it costs at the test prices, asked of the
/// mock directly; then a request for `m` capped at that many tokens.
async fn measured(m: &tollgate_mock::MockHandle) -> (f64, Value) {
    let v = ask_mock(m, &chat("mock", "hello")).await;
    let u = &v["usage"];
    let tokens = |f: &str| u[f].as_u64().expect("tokens");
    let cost = (tokens("prompt_tokens") as f64 * PRICE_IN
        + tokens("completion_tokens") as f64 * PRICE_OUT)
        / 1e6;
    let mut body = chat("m", "hello");
    body["max_tokens"] = tokens("completion_tokens").into();
    (cost, body)
}

fn config(
    m: &tollgate_mock::MockHandle,
    data: &std::path::Path,
    alerts: &str,
    budgets: &str,
) -> String {
    format!(
        "[spend]\ndata_dir = \"{}\"\nreserve_output_tokens = 16\n\n{}\n\
         [models.m]\ntargets = [{{ provider = \"a\", model = \"mock\" }}]\n\
         [prices.\"a/mock\"]\ninput_per_1m = {PRICE_IN}\noutput_per_1m = {PRICE_OUT}\n\
         [alerts]\ncheck_interval_secs = 1\n{alerts}\n{budgets}\n",
        data.display(),
        mock_provider("a", &m.base_url(), "")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_budget_alerts_at_half_and_when_it_refuses_once_each() {
    let m = mock().await;
    let hook = Webhook::start().await;
    let data = tempfile::tempdir().expect("dir");
    let (cost, body) = measured(&m).await;
    let limit = cost * 3.5;
    let gw = Gateway::start(&config(
        &m,
        data.path(),
        &format!(
            "webhook_url = \"{}\"\nthresholds = [0.5, 1.0]\nanomaly_factor = 0\n",
            hook.url
        ),
        &format!("[[budgets]]\nname = \"team-cap\"\nkey = \"test\"\nlimit_usd = {limit}\n"),
    ))
    .await;

    let send = || async {
        gw.post("/v1/chat/completions")
            .json(&body)
            .send()
            .await
            .expect("send")
            .status()
    };
    assert_eq!(send().await, 200); // 29%
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        hook.received().is_empty(),
        "under every threshold: {:?}",
        hook.received()
    );
    assert_eq!(send().await, 200); // 57%
    let half = hook.wait_for(1).await;
    assert_eq!(half[0]["kind"], "budget_threshold");
    assert_eq!(half[0]["budget"], "team-cap");
    assert_eq!(half[0]["threshold"], 0.5);
    assert_eq!(half[0]["exhausted"], false);
    assert!(
        half[0]["text"]
            .as_str()
            .expect("slack text")
            .contains("team-cap")
    );

    let mut refused = false;
    for _ in 0..5 {
        if send().await == 402 {
            refused = true;
            break;
        }
    }
    assert!(refused, "the budget never refused");
    let full = hook.wait_for(2).await;
    assert_eq!(full[1]["kind"], "budget_exhausted");
    assert_eq!(full[1]["exhausted"], true);
    assert_eq!(full[1]["budget"], "team-cap");
    // More refusals in this period send nothing more.
    assert_eq!(send().await, 402);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(hook.received().len(), 2, "{:?}", hook.received());
}

#[tokio::test(flavor = "multi_thread")]
async fn spend_far_above_its_trailing_mean_raises_an_anomaly_alert() {
    let m = mock().await;
    let hook = Webhook::start().await;
    let data = tempfile::tempdir().expect("dir");
    // A day of $0.24 an hour for key `test` on model `m`, then $2 in the current hour.
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms");
    let hour_ms = 3_600_000;
    let this_hour = now_ms - now_ms.rem_euclid(hour_ms);
    let entry = |i: i64, at_ms: i64, dollars: f64| LedgerEntry {
        request_id: format!("seed-{i}"),
        at_ms,
        key: Some("test".to_owned()),
        model: "m".to_owned(),
        cost: Usd::from_dollars(dollars),
        status: 200,
        ..LedgerEntry::default()
    };
    let mut seed: Vec<LedgerEntry> = (1..=24)
        .map(|h| entry(h, this_hour - h * hour_ms, 0.24))
        .collect();
    seed.push(entry(0, this_hour, 2.0));
    let store = Store::open(data.path()).await.expect("store");
    store.write(&seed).await.expect("seed");
    store.close().await;

    let gw = Gateway::start(&config(
        &m,
        data.path(),
        &format!(
            "webhook_url = \"{}\"\nanomaly_factor = 3\nanomaly_min_usd = 1\n",
            hook.url
        ),
        "",
    ))
    .await;
    let got = hook.wait_for(2).await;
    let mut groups: Vec<(String, String)> = got
        .iter()
        .map(|a| {
            assert_eq!(a["kind"], "spend_anomaly", "{a}");
            assert_eq!(a["trailing_mean_usd"], "0.24");
            assert_eq!(a["spent_usd"], "2");
            (
                a["group_by"].as_str().unwrap_or("").to_owned(),
                a["group"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        [
            ("key".to_owned(), "test".to_owned()),
            ("model".to_owned(), "m".to_owned())
        ]
    );
    drop(gw);
}
