//! Webhook alerts, sent off the request path by a background service:
//!
//! - **budget thresholds**: every `check_interval`, each budget counter charged since the last
//!   look is compared with its cap; crossing a share in `[alerts] thresholds` sends one alert
//!   (the highest share crossed) per counter, threshold and period;
//! - **spend anomalies**: every few minutes, each key's and model's spend in the current hour
//!   is compared with its mean hourly spend over the 24 hours before; `anomaly_factor` times
//!   that mean (and at least `anomaly_min_usd`) sends one alert per key or model and hour.
//!
//! Each alert is claimed in the store before it is sent, so a restart or another gateway
//! sharing the database does not send it again. The JSON body has a Slack-compatible `text`.
//! A webhook that keeps failing loses that alert (logged): alerts never hold up requests.

use crate::live::LiveState;
use crate::spend::{ChargedBudget, Spend, unix_now};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::connectors::http::Connector;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_state::store::reports::{Bucket, GroupBy, ReportQuery};
use tollgate_state::store::{Location, Store};
use tollgate_types::Usd;

/// Anomaly checks scan a day of the ledger: not more often than this.
const ANOMALY_EVERY: Duration = Duration::from_secs(300);
/// Attempts per alert, a second apart, then doubling.
const SEND_ATTEMPTS: u32 = 3;

/// The alerts service.
pub struct AlertService {
    live: Arc<ArcSwap<LiveState>>,
    spend: Arc<Spend>,
    location: Location,
    /// Pingora's connector: the same TLS stack and trust roots as provider calls.
    connector: Connector,
}

impl AlertService {
    /// The service, when the config at start has a webhook (budget counters are only noted
    /// for alerts then).
    pub fn for_config(
        live: Arc<ArcSwap<LiveState>>,
        spend: Arc<Spend>,
        location: Location,
        connector: Connector,
    ) -> Option<AlertService> {
        live.load().config.alerts.webhook.as_ref()?;
        Some(AlertService {
            live,
            spend,
            location,
            connector,
        })
    }
}

/// How long one delivery attempt may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The share of `limit` that `spent` is.
fn share(spent: Usd, limit: Usd) -> f64 {
    if limit == Usd::ZERO {
        return if spent == Usd::ZERO {
            0.0
        } else {
            f64::INFINITY
        };
    }
    spent.dollars() / limit.dollars()
}

/// The highest of `thresholds` (ascending) that `share` reached, and all it reached.
fn crossed(thresholds: &[f64], share: f64) -> Vec<f64> {
    thresholds.iter().copied().filter(|t| share >= *t).collect()
}

/// Per group, this hour's spend and the mean hourly spend of the 24 hours before, from a
/// report bucketed by hour.
fn hourly_against_trailing(
    rows: &[tollgate_state::store::reports::SpendRow],
    hour_start_ms: i64,
) -> HashMap<String, (Usd, Usd)> {
    let mut out: HashMap<String, (Usd, Usd)> = HashMap::new();
    for r in rows {
        let Some(group) = &r.group else { continue };
        let entry = out.entry(group.clone()).or_default();
        if r.bucket_ms == Some(hour_start_ms) {
            entry.0 = entry.0.saturating_add(r.cost);
        } else {
            entry.1 = entry.1.saturating_add(r.cost);
        }
    }
    for (_, trailing) in out.values_mut() {
        *trailing = Usd::from_picos(trailing.picos() / 24);
    }
    out
}

struct Run {
    store: Option<Store>,
    /// Alerts this gateway sent or found claimed, so the store is not asked again.
    sent: HashSet<String>,
    last_anomaly_check: Option<Instant>,
}

/// Alerts remembered in memory at most; beyond, the store alone dedups.
const SENT_MEMORY: usize = 10_000;

/// An alert to claim and send: ids in rising importance, each with the body to send when it
/// is the most important one not yet claimed.
struct Pending {
    ids: Vec<(String, Value)>,
    /// The budget counter to look at again when the store could not be asked.
    retry: Option<(String, ChargedBudget)>,
}

fn budget_alert(
    counter: &str,
    b: &ChargedBudget,
    spent: Usd,
    period_start: i64,
    thresholds: &[f64],
) -> Option<Pending> {
    let unit = match b.unit {
        tollgate_config::BudgetUnit::Usd => "USD",
        tollgate_config::BudgetUnit::Tokens => "tokens",
    };
    let mut ids: Vec<(String, Value)> = crossed(thresholds, share(spent, b.limit))
        .into_iter()
        .map(|t| {
            let percent = (t * 100.0).round();
            let body = json!({
                "text": format!(
                    "Tollgate: budget `{counter}` has used {} {unit}, {percent}% or more of its {} {unit} {} cap.",
                    b.unit.show(spent), b.unit.show(b.limit), b.period.name()
                ),
                "kind": "budget_threshold",
                "threshold": t,
                "exhausted": false,
            });
            (format!("budget|{counter}|{period_start}|{t}"), body)
        })
        .collect();
    // A budget that refused a request is full, though reservations keep its spend under
    // the cap.
    if b.refused {
        let body = json!({
            "text": format!(
                "Tollgate: budget `{counter}` is exhausted: it refused a request, with {} of its {} {unit} {} cap used.",
                b.unit.show(spent), b.unit.show(b.limit), b.period.name()
            ),
            "kind": "budget_exhausted",
            "threshold": 1.0,
            "exhausted": true,
        });
        ids.push((format!("budget|{counter}|{period_start}|exhausted"), body));
    }
    let u = b.unit.name();
    for (_, body) in &mut ids {
        body["budget"] = b.budget.clone().into();
        body["counter"] = counter.into();
        body[format!("spent_{u}")] = b.unit.show(spent).into();
        body[format!("limit_{u}")] = b.unit.show(b.limit).into();
        body["period"] = b.period.name().into();
        body["period_start"] = period_start.into();
    }
    (!ids.is_empty()).then(|| Pending {
        ids,
        retry: Some((counter.to_owned(), b.clone())),
    })
}

impl AlertService {
    async fn tick(&self, run: &mut Run) {
        let charged = self.spend.take_charged();
        let live = self.live.load_full();
        let settings = &live.config.alerts;
        let Some(webhook) = settings.webhook.clone() else {
            return;
        };
        if run.store.is_none() {
            match Store::open_at(&self.location).await {
                Ok(s) => run.store = Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "Alerts: the store cannot be opened.");
                    self.spend.requeue_charged(charged);
                    return;
                }
            }
        }
        if run.sent.len() > SENT_MEMORY {
            run.sent.clear();
        }
        let mut alerts: Vec<Pending> = Vec::new();
        let now = unix_now();
        for (counter, b) in charged {
            let period_start = b.period.start(now);
            let spent = self.spend.spent(&counter, period_start).await;
            alerts.extend(budget_alert(
                &counter,
                &b,
                spent,
                period_start,
                &settings.thresholds,
            ));
        }
        let due = run
            .last_anomaly_check
            .is_none_or(|at| at.elapsed() >= ANOMALY_EVERY);
        if settings.anomaly_factor > 0.0 && due {
            run.last_anomaly_check = Some(Instant::now());
            self.anomalies(run, now, &mut alerts).await;
        }
        for alert in alerts {
            self.deliver(run, &webhook, alert).await;
        }
    }

    async fn anomalies(&self, run: &Run, now: i64, alerts: &mut Vec<Pending>) {
        let Some(store) = &run.store else { return };
        let settings = &self.live.load().config.alerts;
        let hour_start_ms = (now - now.rem_euclid(3_600)) * 1000;
        for (by, name) in [(GroupBy::Key, "key"), (GroupBy::Model, "model")] {
            let query = ReportQuery {
                by: Some(by),
                bucket: Some(Bucket::Hour),
                from_ms: hour_start_ms - 24 * 3_600_000,
                to_ms: hour_start_ms + 3_600_000,
            };
            let rows = match store.spend_report(query).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "Alerts: spend could not be read.");
                    return;
                }
            };
            for (group, (current, mean)) in hourly_against_trailing(&rows, hour_start_ms) {
                let threshold = mean.dollars() * settings.anomaly_factor;
                if current < settings.anomaly_min || current.dollars() <= threshold {
                    continue;
                }
                alerts.push(Pending {
                    ids: vec![(format!("anomaly|{name}|{group}|{hour_start_ms}"), json!({
                        "text": format!(
                            "Tollgate: {name} `{group}` has spent {current} USD this hour, against a mean of {mean} USD an hour over the day before."
                        ),
                        "kind": "spend_anomaly",
                        "group_by": name,
                        "group": group,
                        "hour_start_ms": hour_start_ms,
                        "spent_usd": current.to_string(),
                        "trailing_mean_usd": mean.to_string(),
                        "factor": settings.anomaly_factor,
                    }))],
                    retry: None,
                });
            }
        }
    }

    /// Claims the alert's ids, and sends the body of the most important one that was new.
    async fn deliver(&self, run: &mut Run, webhook: &tollgate_config::Webhook, alert: Pending) {
        let Some(store) = &run.store else { return };
        let mut fresh: Option<Value> = None;
        for (id, body) in alert.ids {
            if run.sent.contains(&id) {
                continue;
            }
            match store
                .claim_alert(&id, unix_now().saturating_mul(1000))
                .await
            {
                Ok(true) => fresh = Some(body),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "Alerts: the store failed; the budget is looked at again next time.");
                    if let Some(retry) = alert.retry {
                        self.spend.requeue_charged(std::iter::once(retry).collect());
                    }
                    return;
                }
            }
            run.sent.insert(id);
        }
        let Some(body) = fresh else {
            return;
        };
        let bytes = bytes::Bytes::from(body.to_string());
        let kind = body["kind"].as_str().unwrap_or("");
        let mut delay = Duration::from_secs(1);
        for attempt in 1..=SEND_ATTEMPTS {
            let sent = crate::upstream::post_json(
                &self.connector,
                &webhook.url,
                webhook.path_and_query.expose_secret(),
                bytes.clone(),
                SEND_TIMEOUT,
            )
            .await;
            match sent {
                Ok(status) if (200..300).contains(&status) => {
                    crate::metrics::record_alert_sent(kind);
                    return;
                }
                Ok(status) => {
                    tracing::warn!(status, attempt, host = %webhook.url.host,
                        "Alerts: the webhook refused an alert.");
                }
                // The summary names the failure, never the path (it may hold a token).
                Err(e) => tracing::warn!(error = %e.summary(), attempt, host = %webhook.url.host,
                    "Alerts: the webhook could not be reached."),
            }
            if attempt < SEND_ATTEMPTS {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        tracing::error!(
            kind = body["kind"].as_str().unwrap_or(""),
            "Alerts: an alert was not delivered."
        );
    }
}

#[async_trait]
impl BackgroundService for AlertService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut run = Run {
            store: None,
            sent: HashSet::new(),
            last_anomaly_check: None,
        };
        loop {
            let every = self.live.load().config.alerts.check_interval;
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => break,
            }
            self.tick(&mut run).await;
        }
        if let Some(store) = run.store {
            store.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_state::store::reports::SpendRow;

    #[test]
    fn a_refusing_budget_is_exhausted_whatever_the_thresholds() {
        let b = ChargedBudget {
            budget: "cap".to_owned(),
            limit: Usd::from_dollars(10.0),
            period: tollgate_config::Period::Daily,
            unit: tollgate_config::BudgetUnit::Usd,
            refused: true,
        };
        let pending =
            budget_alert("cap", &b, Usd::from_dollars(6.0), 0, &[0.5, 0.8]).expect("alerts");
        let ids: Vec<&str> = pending.ids.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["budget|cap|0|0.5", "budget|cap|0|exhausted"]);
        assert_eq!(pending.ids[1].1["kind"], "budget_exhausted");
        assert_eq!(pending.ids[0].1["spent_usd"], "6");
        let quiet = ChargedBudget {
            refused: false,
            ..b
        };
        assert!(budget_alert("cap", &quiet, Usd::from_dollars(4.0), 0, &[0.5]).is_none());
    }

    #[test]
    fn thresholds_crossed_are_all_those_reached() {
        let t = [0.5, 0.8, 1.0];
        assert!(crossed(&t, 0.49).is_empty());
        assert_eq!(crossed(&t, 0.8), vec![0.5, 0.8]);
        assert_eq!(crossed(&t, 3.0), vec![0.5, 0.8, 1.0]);
        assert!(share(Usd::from_dollars(1.0), Usd::ZERO).is_infinite());
        assert!((share(Usd::from_dollars(1.0), Usd::from_dollars(4.0)) - 0.25).abs() < 1e-12);
    }

    #[test]
    fn this_hour_is_compared_with_the_mean_of_the_day_before() {
        let hour = 100 * 3_600_000;
        let row = |group: &str, bucket_ms: i64, dollars: f64| SpendRow {
            group: Some(group.to_owned()),
            bucket_ms: Some(bucket_ms),
            requests: 1,
            input_tokens: 0,
            output_tokens: 0,
            cost: Usd::from_dollars(dollars),
            baseline: Usd::from_dollars(dollars),
            cascaded: 0,
        };
        let rows = [
            row("a", hour - 3_600_000, 12.0),
            row("a", hour - 7_200_000, 12.0),
            row("a", hour, 5.0),
            row("b", hour, 2.0),
        ];
        let got = hourly_against_trailing(&rows, hour);
        assert_eq!(got["a"], (Usd::from_dollars(5.0), Usd::from_dollars(1.0)));
        assert_eq!(got["b"], (Usd::from_dollars(2.0), Usd::ZERO));
    }
}
