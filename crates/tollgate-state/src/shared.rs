//! Circuit state shared between gateways through Redis, so several replicas agree on an
//! outage: when one gateway's breaker opens or closes a circuit, the others follow.
//!
//! Nothing here is on the request path. Local transitions go out through a channel to
//! [`run`], which publishes them on a pub/sub channel and keeps a key per open circuit (with
//! the cool-down as its expiry, so a gateway that starts later learns the circuits open now).
//! If Redis is unreachable, each gateway's breakers keep working on their own, and `run`
//! reconnects with backoff.

use futures_util::StreamExt;
use redis::AsyncCommands;
use std::time::Duration;
use tokio::sync::mpsc;

/// A circuit transition to share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitEvent {
    /// The target (`provider/model`).
    pub target: String,
    /// Open (`true`) or closed.
    pub open: bool,
    /// How long it stays open.
    pub cooldown: Duration,
}

/// Why sharing failed.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// Redis refused or dropped the connection.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The subscription ended.
    #[error("the subscription to {0} ended")]
    SubscriptionEnded(String),
}

/// Where and as whom to share. Its `Debug` output leaves out the URL, which may hold a
/// password.
#[derive(Clone)]
pub struct SharedConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// Prefix of the channel and keys, so several deployments can share one Redis.
    pub prefix: String,
    /// This gateway's id: its own messages come back over pub/sub and are ignored.
    pub instance: String,
}

impl std::fmt::Debug for SharedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedConfig")
            .field("url", &"[redacted]")
            .field("prefix", &self.prefix)
            .field("instance", &self.instance)
            .finish()
    }
}

impl SharedConfig {
    fn channel(&self) -> String {
        format!("{}:circuits", self.prefix)
    }

    fn key(&self, target: &str) -> String {
        format!("{}:circuit:{target}", self.prefix)
    }
}

/// The longest cool-down accepted from another gateway (a day).
const MAX_SHARED_MS: u64 = 24 * 3600 * 1000;

fn encode(instance: &str, ev: &CircuitEvent) -> String {
    serde_json::json!({
        "from": instance, "target": ev.target, "open": ev.open,
        "cooldown_ms": u64::try_from(ev.cooldown.as_millis()).unwrap_or(u64::MAX),
    })
    .to_string()
}

fn decode(payload: &str) -> Option<(String, CircuitEvent)> {
    let v: serde_json::Value = serde_json::from_str(payload).ok()?;
    Some((
        v.get("from")?.as_str()?.to_owned(),
        CircuitEvent {
            target: v.get("target")?.as_str()?.to_owned(),
            open: v.get("open")?.as_bool()?,
            // Another process's number: bounded, so a bad message cannot overflow a deadline.
            cooldown: Duration::from_millis(v.get("cooldown_ms")?.as_u64()?.min(MAX_SHARED_MS)),
        },
    ))
}

/// Shares local transitions from `outgoing` and applies other gateways' through `apply`,
/// until `outgoing` closes. Reconnects after any Redis failure.
pub async fn run(
    config: SharedConfig,
    mut outgoing: mpsc::Receiver<CircuitEvent>,
    apply: impl Fn(CircuitEvent),
) {
    let mut wait = Duration::from_millis(200);
    loop {
        match session(&config, &mut outgoing, &apply).await {
            Ok(()) => return, // the gateway is shutting down
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64,
                    "Circuit sharing through Redis interrupted; breakers work locally meanwhile.");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn session(
    config: &SharedConfig,
    outgoing: &mut mpsc::Receiver<CircuitEvent>,
    apply: &impl Fn(CircuitEvent),
) -> Result<(), SharedError> {
    let client = redis::Client::open(config.url.as_str())?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let mut pubsub = client.get_async_pubsub().await?;
    let channel = config.channel();
    pubsub.subscribe(&channel).await?;
    // Circuits other gateways opened before this one started (or reconnected).
    let pattern = config.key("*");
    let keys: Vec<String> = {
        // SCAN, not KEYS: a shared Redis is never blocked for a full key walk.
        let mut iter = con.scan_match::<_, String>(&pattern).await?;
        let mut keys = Vec::new();
        while let Some(k) = iter.next_item().await {
            keys.push(k?);
        }
        keys
    };
    let key_prefix = config.key("");
    for key in keys {
        let owner: Option<String> = con.get(&key).await?;
        if owner.as_deref() == Some(config.instance.as_str()) {
            continue; // this gateway's own news
        }
        let ttl_ms: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut con).await?;
        if let (Some(target), Ok(ms)) = (key.strip_prefix(&key_prefix), u64::try_from(ttl_ms)) {
            apply(CircuitEvent {
                target: target.to_owned(),
                open: true,
                cooldown: Duration::from_millis(ms.min(MAX_SHARED_MS)),
            });
        }
    }
    tracing::info!(channel = %channel, "Sharing circuit state through Redis.");
    let mut messages = pubsub.on_message();
    loop {
        tokio::select! {
            ev = outgoing.recv() => {
                let Some(ev) = ev else { return Ok(()) };
                let key = config.key(&ev.target);
                if ev.open {
                    let ms = u64::try_from(ev.cooldown.as_millis()).unwrap_or(u64::MAX).max(1);
                    let _: () = redis::cmd("SET").arg(&key).arg(&config.instance)
                        .arg("PX").arg(ms).query_async(&mut con).await?;
                } else {
                    let _: () = con.del(&key).await?;
                }
                let _: () = con.publish(&channel, encode(&config.instance, &ev)).await?;
            }
            msg = messages.next() => {
                let Some(msg) = msg else {
                    return Err(SharedError::SubscriptionEnded(channel));
                };
                let Ok(payload) = msg.get_payload::<String>() else { continue };
                match decode(&payload) {
                    Some((from, ev)) if from != config.instance => apply(ev),
                    Some(_) => {}
                    None => tracing::debug!(%payload, "Ignored a malformed circuit message."),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let ev = CircuitEvent {
            target: "openai/gpt-4o".into(),
            open: true,
            cooldown: Duration::from_millis(5000),
        };
        assert_eq!(decode(&encode("gw-1", &ev)), Some(("gw-1".to_owned(), ev)));
        assert_eq!(decode("not json"), None);
    }

    /// Two sharers on a real Redis: one's open circuit reaches the other, and a sharer that
    /// starts later learns it from the key.
    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "needs Redis: tests/run.sh runs it when TOLLGATE_TEST_REDIS_URL is set"]
    async fn transitions_reach_other_gateways() {
        let url = std::env::var("TOLLGATE_TEST_REDIS_URL")
            .expect("TOLLGATE_TEST_REDIS_URL (redis://127.0.0.1:6379)");
        let prefix = format!("tollgate-test-{}", std::process::id());
        let config = |instance: &str| SharedConfig {
            url: url.clone(),
            prefix: prefix.clone(),
            instance: instance.to_owned(),
        };
        let (tx_a, rx_a) = mpsc::channel(8);
        let (_tx_b, rx_b) = mpsc::channel(8);
        let (seen_tx, mut seen_b) = mpsc::unbounded_channel();
        tokio::spawn(run(config("a"), rx_a, |_| {}));
        tokio::spawn(run(config("b"), rx_b, move |ev| {
            let _ = seen_tx.send(ev);
        }));
        // Let both subscribe before publishing.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ev = CircuitEvent {
            target: "p/m".into(),
            open: true,
            cooldown: Duration::from_secs(30),
        };
        tx_a.send(ev.clone()).await.expect("send");
        let got = tokio::time::timeout(Duration::from_secs(5), seen_b.recv())
            .await
            .expect("b heard of it")
            .expect("event");
        assert_eq!(got, ev);

        let (_tx_c, rx_c) = mpsc::channel(8);
        let (late_tx, mut seen_c) = mpsc::unbounded_channel();
        tokio::spawn(run(config("c"), rx_c, move |ev| {
            let _ = late_tx.send(ev);
        }));
        let got = tokio::time::timeout(Duration::from_secs(5), seen_c.recv())
            .await
            .expect("c learned it at start")
            .expect("event");
        assert_eq!((got.target.as_str(), got.open), ("p/m", true));
        assert!(
            got.cooldown > Duration::from_secs(20),
            "the key's remaining cool-down"
        );

        tx_a.send(CircuitEvent { open: false, ..ev })
            .await
            .expect("send");
        let got = tokio::time::timeout(Duration::from_secs(5), seen_b.recv())
            .await
            .expect("b heard it closed")
            .expect("event");
        assert!(!got.open);
    }
}
