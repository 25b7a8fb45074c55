//! Reading the ledger back: spend grouped by who or what, over time; and the record of
//! alerts sent, so each is sent once.

use super::{Pool, Store, StoreError};
use tollgate_types::Usd;

/// What spend is grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// The virtual key's name.
    Key,
    /// The key's team.
    Team,
    /// The key's tenant.
    Tenant,
    /// The end user.
    User,
    /// The session.
    Session,
    /// The model alias.
    Model,
    /// The provider that answered.
    Provider,
}

impl GroupBy {
    /// Every grouping with its name in the admin API.
    pub const ALL: [(&'static str, GroupBy); 7] = [
        ("key", GroupBy::Key),
        ("team", GroupBy::Team),
        ("tenant", GroupBy::Tenant),
        ("user", GroupBy::User),
        ("session", GroupBy::Session),
        ("model", GroupBy::Model),
        ("provider", GroupBy::Provider),
    ];

    /// The ledger column (a constant: nothing a caller sends reaches the SQL text).
    fn column(self) -> &'static str {
        match self {
            GroupBy::Key => "key",
            GroupBy::Team => "team",
            GroupBy::Tenant => "tenant",
            GroupBy::User => "end_user",
            GroupBy::Session => "session_id",
            GroupBy::Model => "model",
            GroupBy::Provider => "provider",
        }
    }
}

/// Time buckets of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Clock hours, UTC.
    Hour,
    /// Days, UTC.
    Day,
}

impl Bucket {
    fn millis(self) -> i64 {
        match self {
            Bucket::Hour => 3_600_000,
            Bucket::Day => 86_400_000,
        }
    }
}

/// What a report asks for: requests with `from_ms <= at_ms < to_ms`, grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportQuery {
    /// Grouped by this, or all together.
    pub by: Option<GroupBy>,
    /// And per time bucket, or over the whole range.
    pub bucket: Option<Bucket>,
    /// Start, ms since the Unix epoch (inclusive).
    pub from_ms: i64,
    /// End, ms since the Unix epoch (exclusive).
    pub to_ms: i64,
}

/// One row of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendRow {
    /// The group's value (`None`: requests without one, such as no user).
    pub group: Option<String>,
    /// The bucket's start, ms since the Unix epoch.
    pub bucket_ms: Option<i64>,
    /// Requests.
    pub requests: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
    /// Spend.
    pub cost: Usd,
    /// What the same requests would have cost with every cascade going straight to its last
    /// tier (requests without a cascade count at their cost).
    pub baseline: Usd,
    /// Requests served through a cascade.
    pub cascaded: u64,
}

impl SpendRow {
    /// Saved against always the strongest tier, in USD: negative when escalations cost more
    /// than going straight to the strong model would have.
    pub fn saved(&self) -> String {
        if self.baseline >= self.cost {
            self.baseline.saturating_sub(self.cost).to_string()
        } else {
            format!("-{}", self.cost.saturating_sub(self.baseline))
        }
    }
}

type ReportRow = (Option<String>, Option<i64>, i64, i64, i64, i64, i64, i64);

fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// One request's ledger row, for `GET /admin/requests/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LedgerRow {
    /// When it finished, ms since the Unix epoch.
    pub at_ms: i64,
    /// The key's name.
    pub key: Option<String>,
    /// Its team.
    pub team: Option<String>,
    /// Its tenant.
    pub tenant: Option<String>,
    /// The end user.
    pub user: Option<String>,
    /// The session.
    pub session: Option<String>,
    /// Tags, comma-separated.
    pub tags: Option<String>,
    /// The model alias.
    pub model: String,
    /// The provider that answered.
    pub provider: Option<String>,
    /// Its model.
    pub upstream_model: Option<String>,
    /// Prompt tokens.
    pub input_tokens: i64,
    /// Generated tokens.
    pub output_tokens: i64,
    /// Prompt tokens read from the cache.
    pub cached_input_tokens: i64,
    /// Prompt tokens written to the cache.
    pub cache_write_tokens: i64,
    /// What it cost, in USD.
    pub cost_usd: String,
    /// Status sent to the client.
    pub status: i64,
    /// Whole-request latency, ms.
    pub latency_ms: i64,
    /// Time to first token, ms.
    pub ttft_ms: Option<i64>,
    /// The tokens are an estimate.
    pub estimated: bool,
    /// Every attempt: `[{"provider", "model", "outcome", "ms"}]`.
    pub attempts: serde_json::Value,
    /// A cascade's tiers: `[{"tier", "provider", "model", "cost_usd", "score", "decision"}]`.
    pub cascade: serde_json::Value,
    /// A cascade's baseline: what the request would have cost on its last tier alone, USD.
    pub baseline_usd: Option<String>,
}

/// Reads a [`LedgerRow`] from a row of either backend.
macro_rules! ledger_row {
    ($r:expr) => {{
        use sqlx::Row as _;
        let r = $r;
        let attempts: Option<String> = r.try_get(19)?;
        let cascade: Option<String> = r.try_get(20)?;
        let baseline: Option<i64> = r.try_get(21)?;
        let cost: i64 = r.try_get(14)?;
        LedgerRow {
            at_ms: r.try_get(0)?,
            key: r.try_get(1)?,
            team: r.try_get(2)?,
            tenant: r.try_get(3)?,
            user: r.try_get(4)?,
            session: r.try_get(5)?,
            tags: r.try_get(6)?,
            model: r.try_get(7)?,
            provider: r.try_get(8)?,
            upstream_model: r.try_get(9)?,
            input_tokens: r.try_get(10)?,
            output_tokens: r.try_get(11)?,
            cached_input_tokens: r.try_get(12)?,
            cache_write_tokens: r.try_get(13)?,
            cost_usd: Usd::from_picos(u64::try_from(cost).unwrap_or(0)).to_string(),
            status: r.try_get(15)?,
            latency_ms: r.try_get(16)?,
            ttft_ms: r.try_get(17)?,
            estimated: r.try_get::<i64, _>(18)? != 0,
            attempts: attempts
                .and_then(|a| serde_json::from_str(&a).ok())
                .unwrap_or(serde_json::Value::Null),
            cascade: cascade
                .and_then(|c| serde_json::from_str(&c).ok())
                .unwrap_or(serde_json::Value::Null),
            baseline_usd: baseline
                .map(|b| Usd::from_picos(u64::try_from(b).unwrap_or(0)).to_string()),
        }
    }};
}

impl Store {
    /// The ledger row of request `request_id`, once written.
    pub async fn ledger_row(&self, request_id: &str) -> Result<Option<LedgerRow>, StoreError> {
        let text = self.dialect(
            "SELECT at_ms, key, team, tenant, end_user, session_id, tags, model, provider,
                upstream_model, input_tokens, output_tokens, cached_input_tokens,
                cache_write_tokens, cost_picos, status, latency_ms, ttft_ms, estimated, attempts,
                cascade, baseline_picos
             FROM ledger WHERE request_id = ?",
        );
        let row: Result<Option<LedgerRow>, sqlx::Error> = on_pool!(&self.pool, |p| async {
            match sqlx::query(&text)
                .bind(request_id)
                .fetch_optional(p)
                .await?
            {
                Some(r) => Ok(Some(ledger_row!(r))),
                None => Ok(None),
            }
        }
        .await);
        row.map_err(|e| self.sql(e))
    }

    /// Spend over a time range, grouped as `q` asks; largest spend first (in time order when
    /// bucketed).
    pub async fn spend_report(&self, q: ReportQuery) -> Result<Vec<SpendRow>, StoreError> {
        let group = q.by.map_or("CAST(NULL AS TEXT)", GroupBy::column);
        let bucket = q.bucket.map_or_else(
            || "CAST(NULL AS BIGINT)".to_owned(),
            |b| format!("CAST((at_ms / {0}) * {0} AS BIGINT)", b.millis()),
        );
        let order = if q.bucket.is_some() {
            "2, 6 DESC"
        } else {
            "6 DESC, 1"
        };
        let text = self.dialect(&format!(
            "SELECT {group}, {bucket}, CAST(COUNT(*) AS BIGINT),
                CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT),
                CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT),
                CAST(COALESCE(SUM(cost_picos), 0) AS BIGINT),
                CAST(COALESCE(SUM(COALESCE(baseline_picos, cost_picos)), 0) AS BIGINT),
                CAST(COALESCE(SUM(CASE WHEN cascade IS NULL THEN 0 ELSE 1 END), 0) AS BIGINT)
             FROM ledger WHERE at_ms >= ? AND at_ms < ?
             GROUP BY 1, 2 ORDER BY {order}"
        ));
        let rows: Vec<ReportRow> = on_pool!(&self.pool, |p| sqlx::query_as(&text)
            .bind(q.from_ms)
            .bind(q.to_ms)
            .fetch_all(p)
            .await)
        .map_err(|e| self.sql(e))?;
        Ok(rows
            .into_iter()
            .map(
                |(group, bucket_ms, n, input, output, picos, baseline, cascaded)| SpendRow {
                    group,
                    bucket_ms,
                    requests: unsigned(n),
                    input_tokens: unsigned(input),
                    output_tokens: unsigned(output),
                    cost: Usd::from_picos(unsigned(picos)),
                    baseline: Usd::from_picos(unsigned(baseline)),
                    cascaded: unsigned(cascaded),
                },
            )
            .collect())
    }

    /// Records that the alert `id` is being sent; `false` when it was already (by this
    /// gateway before a restart, or by another sharing the database).
    pub async fn claim_alert(&self, id: &str, at_ms: i64) -> Result<bool, StoreError> {
        let text = self.dialect(
            "INSERT INTO alerts_sent (alert, at_ms) VALUES (?, ?) ON CONFLICT (alert) DO NOTHING",
        );
        let done = on_pool!(&self.pool, |p| sqlx::query(&text)
            .bind(id)
            .bind(at_ms)
            .execute(p)
            .await
            .map(|r| r.rows_affected()));
        Ok(done.map_err(|e| self.sql(e))? == 1)
    }
}
