use crate::harness::{Gateway, chat, mock_provider};
use std::time::{Duration, Instant};
use tollgate_mock::{MockConfig, spawn};

/// SIGQUIT + `serve --upgrade` hands the listening socket to a new process without failing a
/// single request.
#[tokio::test(flavor = "multi_thread")]
async fn graceful_upgrade_drops_no_requests() {
    let m = spawn("127.0.0.1:0", MockConfig::default())
        .await
        .expect("mock");
    let mut old = Gateway::start(&format!(
        "{}\n[models.m]\ntargets = [{{ provider = \"a\", model = \"x\" }}]\n",
        mock_provider("a", &m.base_url(), "")
    ))
    .await;
    let mut new = old.spawn_upgrade();
    // The new process waits on the upgrade socket; give it a moment to connect.
    tokio::time::sleep(Duration::from_millis(500)).await;
    old.signal("QUIT");

    let (mut ok, mut failed) = (0, Vec::new());
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        // A fresh connection per request, so requests land on whichever process is accepting.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let resp = client
            .post(format!("{}/v1/chat/completions", old.url))
            .bearer_auth(crate::harness::KEY)
            .json(&chat("m", "hi"))
            .send()
            .await;
        match resp {
            Ok(r) if r.status() == 200 => ok += 1,
            Ok(r) => failed.push(format!("HTTP {}", r.status())),
            Err(e) => failed.push(e.to_string()),
        }
    }
    assert!(failed.is_empty(), "{} ok, failures: {failed:?}", ok);
    assert!(ok > 20, "only {ok} requests ran");
    assert!(
        old.wait_exit(Duration::from_secs(10)),
        "the old process exits after handing over"
    );
    let after = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", old.url))
        .bearer_auth(crate::harness::KEY)
        .json(&chat("m", "hi"))
        .send()
        .await
        .expect("the new process serves");
    assert_eq!(after.status(), 200);
    let _ = new.kill();
    let _ = new.wait();
}
