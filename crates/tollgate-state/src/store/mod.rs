//! The durable store: what each budget spent per period, and the ledger of every request.
//! Embedded, it is one SQLite file (`spend.db`, WAL) under the config's `data_dir`; shared
//! by several gateways, it is a PostgreSQL database (`[shared] database_url`). The same
//! tables and statements serve both.
//!
//! Written in batches off the request path ([`Store::write`]); read at start
//! ([`Store::load_spend`]) so spend survives a restart. Money is stored as integer
//! picodollars, so the ledger and the budget rows add up exactly. It also keeps the virtual
//! keys made through the admin API ([`keys`]), answers spend reports and remembers which
//! alerts were sent ([`reports`]).
//!
//! The schema is versioned: `migrations/NNNN_*.sql`, applied in order at open and recorded
//! in `_sqlx_migrations`. The same files serve SQLite and PostgreSQL.

use crate::spend::Charge;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tollgate_types::Usd;

/// Errors of the embedded store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The schema could not be brought up to date.
    #[error("spend store {path}: migrating the schema: {source}")]
    Migrate {
        /// The database file, or `postgres`.
        path: PathBuf,
        /// Why.
        source: sqlx::migrate::MigrateError,
    },
    /// A key with this name or hash exists already.
    #[error("a key named {0:?} exists already")]
    KeyExists(String),
    /// The database could not be opened, read or written.
    #[error("spend store {path}: {source}")]
    Sql {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: sqlx::Error,
    },
}

/// One request, as the ledger keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Our request id.
    pub request_id: String,
    /// When it finished, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The virtual key's name.
    pub key: Option<String>,
    /// Its tenant.
    pub tenant: Option<String>,
    /// The model alias asked for.
    pub model: String,
    /// The provider that answered.
    pub provider: Option<String>,
    /// The upstream model that answered.
    pub upstream_model: Option<String>,
    /// Prompt tokens, cached included.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
    /// Prompt tokens read from the provider's cache.
    pub cached_input_tokens: u64,
    /// Prompt tokens written to the provider's cache.
    pub cache_write_tokens: u64,
    /// What the request cost.
    pub cost: Usd,
    /// The status sent to the client.
    pub status: u16,
    /// Whole-request latency, ms.
    pub latency_ms: u64,
    /// Time to first token, ms, for streams.
    pub ttft_ms: Option<u64>,
    /// The tokens are the gateway's estimate: the provider reported none.
    pub estimated: bool,
    /// The key's team.
    pub team: Option<String>,
    /// The end user the request was made for.
    pub user: Option<String>,
    /// The session it belongs to.
    pub session: Option<String>,
    /// Its tags, comma-separated.
    pub tags: Option<String>,
    /// Every upstream attempt, as JSON (`[{"provider", "model", "outcome", "ms"}]`).
    pub attempts: Option<String>,
    /// The budgets it was charged to.
    pub charges: Vec<Charge>,
    /// A cascade's tiers, as JSON (`[{"tier", "provider", "model", "cost_usd", "score",
    /// "decision"}]`).
    pub cascade: Option<String>,
    /// A cascade's baseline: what the request would have cost on its last tier alone.
    pub baseline: Option<Usd>,
}

/// Where the store lives.
#[derive(Clone)]
pub enum Location {
    /// `spend.db` in this directory.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (a secret: it may hold a password).
    Postgres(String),
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(dir) => f.debug_tuple("Sqlite").field(dir).finish(),
            Location::Postgres(_) => f.write_str("Postgres([redacted])"),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The store.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: Pool,
    /// For messages: the SQLite file, or `postgres`.
    path: PathBuf,
}

/// Runs one statement with its bindings on whichever pool (or transaction) `$conn` is.
macro_rules! on_pool {
    ($pool:expr, |$conn:ident| $body:expr) => {
        match $pool {
            Pool::Sqlite($conn) => $body,
            Pool::Postgres($conn) => $body,
        }
    };
}

// After the macro, so these modules can use it.
pub mod keys;
mod migrations;
pub mod reports;

/// SQLite integers are signed 64-bit: amounts and counts above that are clamped.
pub(crate) fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    /// Opens (creating tables if needed) the store at `location`.
    pub async fn open_at(location: &Location) -> Result<Store, StoreError> {
        match location {
            Location::Sqlite(dir) => Self::open(dir).await,
            Location::Postgres(url) => {
                let path = PathBuf::from("postgres");
                let sql = |source| StoreError::Sql {
                    path: path.clone(),
                    source,
                };
                let pool = PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(std::time::Duration::from_secs(5))
                    .connect(url)
                    .await
                    .map_err(sql)?;
                // Gateways starting together migrate one at a time: the migrator holds an
                // advisory lock.
                migrations::run(&pool, &path).await?;
                Ok(Store {
                    pool: Pool::Postgres(pool),
                    path,
                })
            }
        }
    }

    /// Opens (creating if needed) `spend.db` in `dir`.
    pub async fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join("spend.db");
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL with NORMAL is durable across a process crash; only a power loss can drop
            // the last batch.
            .synchronous(SqliteSynchronous::Normal);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(sql)?;
        migrations::run(&pool, &path).await?;
        Ok(Store {
            pool: Pool::Sqlite(pool),
            path,
        })
    }

    pub(crate) fn sql(&self, source: sqlx::Error) -> StoreError {
        StoreError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    /// `text` with `?` placeholders, as this backend writes them (`$1`, `$2`, ... for
    /// PostgreSQL).
    pub(crate) fn dialect(&self, text: &str) -> String {
        match self.pool {
            Pool::Sqlite(_) => text.to_owned(),
            Pool::Postgres(_) => {
                let mut out = String::with_capacity(text.len() + 16);
                let mut n = 0;
                for c in text.chars() {
                    if c == '?' {
                        n += 1;
                        out.push_str(&format!("${n}"));
                    } else {
                        out.push(c);
                    }
                }
                out
            }
        }
    }

    /// Each budget's latest period and what it spent in it.
    pub async fn load_spend(&self) -> Result<Vec<(String, i64, Usd)>, StoreError> {
        let text = "SELECT budget, period_start, spent_picos FROM budget_spend AS s
             WHERE period_start = (SELECT MAX(period_start) FROM budget_spend
                                   WHERE budget = s.budget)";
        let rows: Vec<(String, i64, i64)> =
            on_pool!(&self.pool, |p| sqlx::query_as(text).fetch_all(p).await)
                .map_err(|e| self.sql(e))?;
        Ok(rows
            .into_iter()
            .map(|(name, period_start, picos)| {
                (
                    name,
                    period_start,
                    Usd::from_picos(u64::try_from(picos).unwrap_or(0)),
                )
            })
            .collect())
    }

    /// Writes `batch` in one transaction of two statements: its ledger rows, and its charges,
    /// summed per budget and period, added to the budgets' spend. (A statement per row costs
    /// a round trip to SQLite's worker thread each: most of the gateway's CPU per request.)
    pub async fn write(&self, batch: &[LedgerEntry]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut charged: HashMap<(&str, i64), u64> = HashMap::new();
        for c in batch.iter().flat_map(|e| &e.charges) {
            let sum = charged.entry((&*c.name, c.period_start)).or_default();
            *sum = sum.saturating_add(c.amount.picos());
        }
        on_pool!(&self.pool, |p| {
            let mut tx = p.begin().await.map_err(|e| self.sql(e))?;
            let mut rows = sqlx::QueryBuilder::new(
                "INSERT INTO ledger (request_id, at_ms, key, tenant, model, provider,
                    upstream_model, input_tokens, output_tokens, cached_input_tokens,
                    cache_write_tokens, cost_picos, status, latency_ms, ttft_ms, estimated,
                    team, end_user, session_id, tags, attempts, cascade, baseline_picos) ",
            );
            rows.push_values(batch, |mut row, e| {
                row.push_bind(e.request_id.clone())
                    .push_bind(e.at_ms)
                    .push_bind(e.key.clone())
                    .push_bind(e.tenant.clone())
                    .push_bind(e.model.clone())
                    .push_bind(e.provider.clone())
                    .push_bind(e.upstream_model.clone())
                    .push_bind(int(e.input_tokens))
                    .push_bind(int(e.output_tokens))
                    .push_bind(int(e.cached_input_tokens))
                    .push_bind(int(e.cache_write_tokens))
                    .push_bind(int(e.cost.picos()))
                    .push_bind(i64::from(e.status))
                    .push_bind(int(e.latency_ms))
                    .push_bind(e.ttft_ms.map(int))
                    .push_bind(i64::from(e.estimated))
                    .push_bind(e.team.clone())
                    .push_bind(e.user.clone())
                    .push_bind(e.session.clone())
                    .push_bind(e.tags.clone())
                    .push_bind(e.attempts.clone())
                    .push_bind(e.cascade.clone())
                    .push_bind(e.baseline.map(|b| int(b.picos())));
            });
            rows.build()
                .execute(&mut *tx)
                .await
                .map_err(|e| self.sql(e))?;
            if !charged.is_empty() {
                let mut spend = sqlx::QueryBuilder::new(
                    "INSERT INTO budget_spend (budget, period_start, spent_picos) ",
                );
                spend.push_values(&charged, |mut row, ((name, period_start), picos)| {
                    row.push_bind(name.to_string())
                        .push_bind(*period_start)
                        .push_bind(int(*picos));
                });
                spend.push(
                    " ON CONFLICT (budget, period_start)
                      DO UPDATE SET spent_picos = budget_spend.spent_picos + excluded.spent_picos",
                );
                spend
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.sql(e))?;
            }
            tx.commit().await.map_err(|e| self.sql(e))
        })
    }

    /// The sum of the ledger's costs for requests made with `key` since `since_ms` (Unix
    /// milliseconds), for reconciliation.
    pub async fn ledger_total(&self, key: &str, since_ms: i64) -> Result<Usd, StoreError> {
        let text = self.dialect(
            "SELECT CAST(COALESCE(SUM(cost_picos), 0) AS BIGINT) FROM ledger
             WHERE key = ? AND at_ms >= ?",
        );
        let total: i64 = on_pool!(&self.pool, |p| sqlx::query_scalar(&text)
            .bind(key)
            .bind(since_ms)
            .fetch_one(p)
            .await)
        .map_err(|e| self.sql(e))?;
        Ok(Usd::from_picos(u64::try_from(total).unwrap_or(0)))
    }

    /// Closes the pool, flushing SQLite's WAL.
    pub async fn close(self) {
        on_pool!(self.pool, |p| p.close().await);
    }
}
