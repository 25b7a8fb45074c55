//! Every metric Tollgate exports, named in one place.
//!
//! Names follow the OpenTelemetry GenAI conventions where one exists, `tollgate_*` otherwise.
//! Labels stay bounded: configured aliases and provider names, status codes, outcome words;
//! never a key, a user or a prompt.

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;
use tollgate_types::{Usage, Usd};

/// A metric Tollgate exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricName {
    /// Histogram of tokens per request, by `gen_ai_token_type` (`input`, `output`).
    TokenUsage,
    /// Histogram of whole-request duration in seconds.
    OperationDuration,
    /// Histogram of time to the first streamed token in seconds.
    TimeToFirstToken,
    /// Counter of client requests by `model`, `provider`, `status`.
    Requests,
    /// Counter of upstream attempts by `provider`, `outcome`.
    UpstreamAttempts,
    /// Counter of routing-script failures by `script` (file name), `kind`.
    PolicyErrors,
    /// Counter of circuit-breaker transitions by `target`, `state`.
    CircuitTransitions,
    /// Counter of same-target retries by `provider`.
    Retries,
    /// Spend in USD by `model`, `provider`: monotonic, exported as a gauge because the metrics
    /// facade's counters are integers.
    Cost,
    /// Counter of ledger entries dropped because the store fell behind.
    LedgerDropped,
    /// Counter of webhook alerts delivered, by `kind`.
    AlertsSent,
    /// Counter of guardrail actions by `guardrail` and `action` (`deny_request`,
    /// `redact_request`, `deny_response`, `redact_response`, `stop_stream`).
    GuardrailActions,
    /// Counter of successful live-state reloads.
    Reloads,
    /// Counter of rejected reloads (the old state kept serving).
    ReloadFailures,
    /// Counter of cascade tier outcomes by `model`, `tier`, `decision` (`accept`, `escalate`,
    /// `failed`, `final`) and `scorer` (for escalations, the scorer that scored lowest).
    CascadeDecisions,
}

impl MetricName {
    /// The exported name.
    pub const fn as_str(self) -> &'static str {
        match self {
            MetricName::TokenUsage => "gen_ai_client_token_usage",
            MetricName::OperationDuration => "gen_ai_client_operation_duration_seconds",
            MetricName::TimeToFirstToken => "gen_ai_server_time_to_first_token_seconds",
            MetricName::Requests => "tollgate_requests_total",
            MetricName::UpstreamAttempts => "tollgate_upstream_attempts_total",
            MetricName::PolicyErrors => "tollgate_policy_errors_total",
            MetricName::CircuitTransitions => "tollgate_circuit_transitions_total",
            MetricName::Retries => "tollgate_upstream_retries_total",
            MetricName::Cost => "tollgate_cost_usd_total",
            MetricName::LedgerDropped => "tollgate_ledger_dropped_total",
            MetricName::AlertsSent => "tollgate_alerts_sent_total",
            MetricName::GuardrailActions => "tollgate_guardrail_actions_total",
            MetricName::Reloads => "tollgate_reloads_total",
            MetricName::ReloadFailures => "tollgate_reload_failures_total",
            MetricName::CascadeDecisions => "tollgate_cascade_decisions_total",
        }
    }
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder once per process, with the GenAI spec's buckets.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let tokens: Vec<f64> = (0..14).map(|i| 4f64.powi(i)).collect();
        let duration = [
            0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
        ];
        let ttft = [
            0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
            10.0,
        ];
        let builder = PrometheusBuilder::new();
        let with_buckets = builder
            .set_buckets_for_metric(
                Matcher::Full(MetricName::TokenUsage.as_str().into()),
                &tokens,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(MetricName::OperationDuration.as_str().into()),
                    &duration,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(MetricName::TimeToFirstToken.as_str().into()),
                    &ttft,
                )
            });
        let recorder = match with_buckets {
            Ok(b) => b.build_recorder(),
            // Only an empty bucket list can fail, and ours are constants.
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        // A second recorder (tests embedding two gateways) keeps the first; both render it.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Renders the Prometheus text exposition.
pub fn render() -> String {
    install().render()
}

/// What one finished client request reports.
pub struct RequestRecord<'a> {
    /// `chat`, `embeddings` or `none`.
    pub operation: &'static str,
    /// Whether it was an LLM call (duration, TTFT and tokens are recorded only for those).
    pub llm: bool,
    /// A configured alias, or `unknown`.
    pub model: &'a str,
    /// The provider that served it, or `none`.
    pub provider: &'a str,
    /// HTTP status sent to the client.
    pub status: u16,
    /// Whole-request duration.
    pub duration: Duration,
    /// Time to first token, for streams.
    pub ttft: Option<Duration>,
    /// Token usage, if known.
    pub usage: Option<Usage>,
    /// What the usage cost, when the target has a price.
    pub cost: Option<Usd>,
}

/// Records a finished request.
pub fn record_request(r: &RequestRecord<'_>) {
    let (model, provider) = (r.model.to_owned(), r.provider.to_owned());
    counter!(MetricName::Requests.as_str(), "model" => model.clone(), "provider" => provider.clone(),
        "status" => r.status.to_string())
    .increment(1);
    if !r.llm {
        return;
    }
    histogram!(MetricName::OperationDuration.as_str(), "gen_ai_operation_name" => r.operation,
        "gen_ai_request_model" => model.clone(), "gen_ai_provider_name" => provider.clone())
    .record(r.duration.as_secs_f64());
    if let Some(ttft) = r.ttft {
        histogram!(MetricName::TimeToFirstToken.as_str(), "gen_ai_operation_name" => r.operation,
            "gen_ai_request_model" => model.clone(), "gen_ai_provider_name" => provider.clone())
        .record(ttft.as_secs_f64());
    }
    if let Some(cost) = r.cost {
        gauge!(MetricName::Cost.as_str(), "model" => model.clone(), "provider" => provider.clone())
            .increment(cost.dollars());
    }
    if let Some(u) = r.usage {
        for (kind, n) in [("input", u.input_tokens), ("output", u.output_tokens)] {
            histogram!(MetricName::TokenUsage.as_str(), "gen_ai_operation_name" => r.operation,
                "gen_ai_request_model" => model.clone(), "gen_ai_provider_name" => provider.clone(),
                "gen_ai_token_type" => kind)
            .record(n as f64);
        }
    }
}

/// Records one upstream attempt and how it ended (`ok`, `status_503`, `connect_error`, ...).
pub fn record_attempt(provider: &str, outcome: &'static str) {
    counter!(MetricName::UpstreamAttempts.as_str(), "provider" => provider.to_owned(), "outcome" => outcome)
        .increment(1);
}

/// Records a circuit-breaker transition of a target (`provider/model`, bounded by config).
pub fn record_circuit(target: &str, state: &'static str) {
    counter!(MetricName::CircuitTransitions.as_str(), "target" => target.to_owned(), "state" => state)
        .increment(1);
}

/// Records a same-target retry.
pub fn record_retry(provider: &str) {
    counter!(MetricName::Retries.as_str(), "provider" => provider.to_owned()).increment(1);
}

/// Records a routing-script failure. The label is the script's file name: bounded by config.
pub fn record_policy_error(script: &str, kind: &'static str) {
    let name = std::path::Path::new(script)
        .file_name()
        .map_or_else(|| script.to_owned(), |n| n.to_string_lossy().into_owned());
    counter!(MetricName::PolicyErrors.as_str(), "script" => name, "kind" => kind).increment(1);
}

/// Records what a cascade tier's answer led to. Escalations per model and scorer are the
/// `decision="escalate"` series.
pub fn record_cascade(model: &str, tier: usize, decision: &'static str, scorer: &'static str) {
    counter!(MetricName::CascadeDecisions.as_str(), "model" => model.to_owned(),
        "tier" => tier.to_string(), "decision" => decision, "scorer" => scorer)
    .increment(1);
}

/// Records a ledger entry the store could not take in time.
pub fn record_ledger_dropped() {
    counter!(MetricName::LedgerDropped.as_str()).increment(1);
}

/// Records a webhook alert delivered.
pub fn record_alert_sent(kind: &str) {
    counter!(MetricName::AlertsSent.as_str(), "kind" => kind.to_owned()).increment(1);
}

/// Records what a guardrail did.
pub fn record_guardrail(guardrail: &str, action: &'static str) {
    counter!(MetricName::GuardrailActions.as_str(), "guardrail" => guardrail.to_owned(), "action" => action)
        .increment(1);
}

/// Records a reload attempt.
pub fn record_reload(ok: bool) {
    let name = if ok {
        MetricName::Reloads
    } else {
        MetricName::ReloadFailures
    };
    counter!(name.as_str()).increment(1);
}
