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
}

type ReportRow = (Option<String>, Option<i64>, i64, i64, i64, i64);

fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Store {
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
                CAST(COALESCE(SUM(cost_picos), 0) AS BIGINT)
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
            .map(|(group, bucket_ms, n, input, output, picos)| SpendRow {
                group,
                bucket_ms,
                requests: unsigned(n),
                input_tokens: unsigned(input),
                output_tokens: unsigned(output),
                cost: Usd::from_picos(unsigned(picos)),
            })
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
