//! Keys managed through the admin API with the `tollgate keys` CLI: made, used, limited,
//! rotated and revoked, each change in force at once; spend reported per team.

use crate::harness::{Gateway, KEY, chat, mock, mock_provider};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

pub const ADMIN_KEY: &str = "admin-key-0123456789abcdef";

/// `[server]` lines that turn the admin API on.
pub fn admin_server() -> String {
    format!("admin_key = \"{ADMIN_KEY}\"\n")
}

/// Model `m` on a priced mock, with the embedded store in the gateway's own directory.
fn priced(m: &tollgate_mock::MockHandle, data_dir: &std::path::Path) -> String {
    format!(
        "[spend]\ndata_dir = \"{}\"\nreserve_output_tokens = 64\n\n{}\n\
         [models.m]\ntargets = [{{ provider = \"a\", model = \"mock\" }}]\n\
         [prices.\"a/mock\"]\ninput_per_1m = 1000.0\noutput_per_1m = 2000.0\n",
        data_dir.display(),
        mock_provider("a", &m.base_url(), "")
    )
}

/// Runs `tollgate ARGS` against `gw`'s admin API: (success, stdout, stderr).
fn cli(gw: &Gateway, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .env("TOLLGATE_ADMIN_URL", &gw.admin_url)
        .env("TOLLGATE_ADMIN_KEY", ADMIN_KEY)
        .output()
        .expect("run tollgate");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cli_json(gw: &Gateway, args: &[&str]) -> Value {
    let (ok, out, err) = cli(gw, args);
    assert!(ok, "tollgate {args:?} failed: {err}");
    serde_json::from_str(&out).expect("json output")
}

/// A chat request with `key`: (status, error code, cost header).
async fn call(gw: &Gateway, key: &str) -> (u16, String, Option<f64>) {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(key)
        .json(&chat("m", "hello there"))
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    let cost = r
        .headers()
        .get("x-tollgate-cost-usd")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
    (status, code, cost)
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_made_rotated_limited_and_revoked_take_effect_at_once() {
    let m = mock().await;
    let data = tempfile::tempdir().expect("dir");
    let gw = Gateway::start_full(&admin_server(), &priced(&m, data.path()), &[]).await;

    // The admin API asks for its own key; virtual keys are not admin keys.
    let admin = reqwest::Client::new();
    for auth in [None, Some(KEY), Some("wrong-admin-key-000000")] {
        let mut req = admin.get(format!("{}/admin/keys", gw.admin_url));
        if let Some(k) = auth {
            req = req.bearer_auth(k);
        }
        let r = req.send().await.expect("admin");
        assert_eq!(r.status(), 401, "admin API with {auth:?}");
    }
    let wrong = admin
        .post(format!("{}/admin/spend", gw.admin_url))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("admin");
    assert_eq!(wrong.status(), 405, "a report is read, never posted");
    let metrics = reqwest::get(format!("{}/metrics", gw.admin_url))
        .await
        .expect("metrics");
    assert_eq!(metrics.status(), 200, "metrics stay open to scrapers");

    let made = cli_json(
        &gw,
        &[
            "keys", "create", "--name", "alice", "--tenant", "acme", "--team", "search", "--rpm",
            "1000",
        ],
    );
    let alice = made["key"].as_str().expect("secret").to_owned();
    assert!(alice.starts_with("sk-tg-"), "{made}");
    assert!(
        alice.starts_with(
            made["display"]
                .as_str()
                .expect("display")
                .trim_end_matches('…')
        )
    );

    let mut alice_spent = 0.0;
    for _ in 0..3 {
        let (status, _, cost) = call(&gw, &alice).await;
        assert_eq!(status, 200);
        alice_spent += cost.expect("priced");
    }
    assert_eq!(call(&gw, KEY).await.0, 200, "config keys keep working");

    let (ok, _, err) = cli(&gw, &["keys", "create", "--name", "alice", "--tenant", "x"]);
    assert!(!ok && err.contains("exists"), "{err}");
    let (ok, _, err) = cli(&gw, &["keys", "revoke", "test"]);
    assert!(
        !ok && err.contains("config"),
        "config keys are changed in the config: {err}"
    );
    let (ok, table, _) = cli(&gw, &["keys", "list"]);
    assert!(ok);
    let names: Vec<&str> = table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, ["test", "alice"], "{table}");
    assert!(!table.contains(&alice), "the secret is never listed");

    // Rotation: the old secret is refused at once, the new one works.
    let rotated = cli_json(&gw, &["keys", "rotate", "alice"]);
    let alice2 = rotated["key"].as_str().expect("new secret").to_owned();
    assert_ne!(alice2, alice);
    assert_eq!(call(&gw, &alice).await.0, 401);
    let (status, _, cost) = call(&gw, &alice2).await;
    assert_eq!(status, 200);
    alice_spent += cost.expect("priced");

    // A budget of nothing, set on the live key, refuses its next request.
    let updated = cli_json(
        &gw,
        &[
            "keys",
            "update",
            "alice",
            "--budget-usd",
            "0",
            "--period",
            "daily",
        ],
    );
    assert_eq!(updated["budget_usd"], "0");
    assert_eq!(updated["rpm"], 1000, "left out, kept");
    let (status, code, _) = call(&gw, &alice2).await;
    assert_eq!((status, code.as_str()), (402, "budget_exceeded"));
    cli_json(&gw, &["keys", "update", "alice", "--no-budget"]);
    let (status, _, cost) = call(&gw, &alice2).await;
    assert_eq!(status, 200);
    alice_spent += cost.expect("priced");

    // A key's own rate limit.
    let bob = cli_json(
        &gw,
        &[
            "keys", "create", "--name", "bob", "--tenant", "acme", "--rpm", "2",
        ],
    );
    let bob = bob["key"].as_str().expect("secret").to_owned();
    assert_eq!(call(&gw, &bob).await.0, 200);
    assert_eq!(call(&gw, &bob).await.0, 200);
    let (status, _, _) = call(&gw, &bob).await;
    assert_eq!(status, 429, "bob's own limit is 2 a minute");

    // Revocation is at once.
    let revoked = cli_json(&gw, &["keys", "revoke", "alice"]);
    assert_eq!(revoked["revoked"], true);
    let (status, code, _) = call(&gw, &alice2).await;
    assert_eq!((status, code.as_str()), (401, "invalid_api_key"));

    // The team's spend, from the ledger (written in batches: wait for it).
    let mut reported = 0.0;
    for _ in 0..100 {
        let report = cli_json(&gw, &["spend", "--by", "team", "--json"]);
        reported = report["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .filter(|r| r["group"] == "search")
            .map(|r| {
                r["cost_usd"]
                    .as_str()
                    .expect("cost")
                    .parse::<f64>()
                    .expect("number")
            })
            .sum();
        if (reported - alice_spent).abs() < 1e-9 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        (reported - alice_spent).abs() < 1e-9,
        "reported {reported}, charged {alice_spent}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_admin_key_key_management_is_off() {
    let m = mock().await;
    let data = tempfile::tempdir().expect("dir");
    let gw = Gateway::start(&priced(&m, data.path())).await;
    let (ok, _, err) = cli(&gw, &["keys", "list"]);
    assert!(!ok && err.contains("admin_key"), "{err}");
    assert_eq!(gw.chat("m", "hi").await.status(), 200);
}

/// Two gateways sharing PostgreSQL: a key made on one works on the other within a few
/// seconds, and a revocation reaches it as fast.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL: tests/run.sh runs it when TOLLGATE_TEST_DATABASE_URL is set"]
async fn keys_reach_every_gateway_sharing_the_database() {
    let url = std::env::var("TOLLGATE_TEST_DATABASE_URL").expect("TOLLGATE_TEST_DATABASE_URL");
    let m = mock().await;
    let body = format!(
        "[shared]\ndatabase_url = \"{url}\"\n\n{}\n[models.m]\ntargets = [{{ provider = \"a\", model = \"mock\" }}]\n",
        mock_provider("a", &m.base_url(), "")
    );
    let a = Gateway::start_full(&admin_server(), &body, &[]).await;
    let b = Gateway::start_full(&admin_server(), &body, &[]).await;
    let name = format!(
        "shared-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis()
    );
    let made = cli_json(&a, &["keys", "create", "--name", &name, "--tenant", "acme"]);
    let secret = made["key"].as_str().expect("secret").to_owned();
    assert_eq!(call(&a, &secret).await.0, 200, "at once where it was made");
    let until = |want: u16| {
        let (b, secret) = (&b, &secret);
        async move {
            for _ in 0..100 {
                if call(b, secret).await.0 == want {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        }
    };
    assert!(
        until(200).await,
        "the other gateway never accepted the new key"
    );
    cli_json(&a, &["keys", "revoke", &name]);
    assert_eq!(call(&a, &secret).await.0, 401);
    assert!(
        until(401).await,
        "the other gateway never refused the revoked key"
    );
}

/// The ledger keeps every attempt: a request that failed over has both in its row, which
/// `GET /admin/requests/{id}` shows.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_ledger_row_lists_every_attempt() {
    let (a, b) = (mock().await, mock().await);
    let data = tempfile::tempdir().expect("dir");
    let body = format!(
        "[spend]\ndata_dir = \"{}\"\n\n{}",
        data.path().display(),
        crate::harness::two_targets(&a, "\"x-mock-status\" = \"503\"", &b)
    );
    let gw = Gateway::start_full(&admin_server(), &body, &[]).await;
    let resp = gw.chat("m", "hello").await;
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let row = gw.ledger_row(ADMIN_KEY, &id).await;
    let admin = reqwest::Client::new();
    assert_eq!(row["provider"], "b", "{row}");
    let attempts: Vec<(String, String)> = row["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| {
            (
                a["provider"].as_str().unwrap_or("").to_owned(),
                a["outcome"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            ("a".to_owned(), "server_error".to_owned()),
            ("b".to_owned(), "ok".to_owned())
        ]
    );
    let missing = admin
        .get(format!("{}/admin/requests/nope", gw.admin_url))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("admin");
    assert_eq!(missing.status(), 404);
}
