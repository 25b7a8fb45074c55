//! Virtual keys made through the admin API. Only a key's SHA-256 is stored, with a short
//! display prefix (`sk-tg-AbC…`) so people can tell keys apart; the key itself is shown
//! once, when it is made or rotated.

use super::{Pool, Store, StoreError, int};
use tollgate_types::Usd;

/// A key as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Unique name, used by budgets, limits and the ledger.
    pub name: String,
    /// `sha256:<hex>` of the key.
    pub hash: String,
    /// The first characters of the key, for people to recognise it.
    pub display: String,
    /// Its tenant.
    pub tenant: String,
    /// Its team within the tenant.
    pub team: Option<String>,
    /// When it was made, ms since the Unix epoch.
    pub created_ms: i64,
    /// Its settings.
    pub limits: KeyLimits,
    /// When it was revoked, ms since the Unix epoch.
    pub revoked_ms: Option<i64>,
}

/// What a stored key may spend and how fast, and until when it works.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyLimits {
    /// When it stops working, Unix seconds.
    pub expires_at: Option<i64>,
    /// Its own budget: a cap and its period's name (`total`, `daily`, ...).
    pub budget: Option<(Usd, String)>,
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
}

type KeyRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

fn from_row(r: KeyRow) -> StoredKey {
    let positive = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok());
    StoredKey {
        name: r.0,
        hash: r.1,
        display: r.2,
        tenant: r.3,
        team: r.4,
        created_ms: r.5,
        limits: KeyLimits {
            expires_at: r.6,
            budget: positive(r.8)
                .zip(r.9)
                .map(|(picos, period)| (Usd::from_picos(picos), period)),
            rpm: positive(r.10),
            tpm: positive(r.11),
        },
        revoked_ms: r.7,
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Moves the key revision on; run in the same transaction as the change it announces, so
/// concurrent changes take turns on the counter's row and each gets its own number.
const BUMP_REVISION: &str = "UPDATE key_revision SET revision = revision + 1 WHERE id = 1";
/// The revision the change just took.
const THIS_REVISION: &str = "(SELECT revision FROM key_revision WHERE id = 1)";

/// Runs one change to `api_keys` (`$text` with its bindings) in a transaction that first moves
/// the key revision on; evaluates to the rows it touched.
macro_rules! key_change {
    ($store:expr, $text:expr, $($bind:expr),+ $(,)?) => {
        on_pool!(&$store.pool, |p| async {
            let mut tx = p.begin().await?;
            sqlx::query(BUMP_REVISION).execute(&mut *tx).await?;
            let n = sqlx::query($text)
                $(.bind($bind))+
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok::<u64, sqlx::Error>(n)
        }
        .await)
    };
}

impl Store {
    /// Every stored key, revoked ones included.
    pub async fn keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let text = "SELECT name, hash, display, tenant, team, created_ms, expires_at, revoked_ms,
                    budget_picos, budget_period, rpm, tpm FROM api_keys ORDER BY name";
        let rows: Vec<KeyRow> = on_pool!(&self.pool, |p| sqlx::query_as(text).fetch_all(p).await)
            .map_err(|e| self.sql(e))?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// A number that changes whenever a key is added or changed, to poll cheaply.
    pub async fn keys_revision(&self) -> Result<i64, StoreError> {
        let text = "SELECT CAST(COALESCE(MAX(revision), 0) AS BIGINT) FROM key_revision";
        on_pool!(&self.pool, |p| sqlx::query_scalar(text).fetch_one(p).await)
            .map_err(|e| self.sql(e))
    }

    /// Adds a key; [`StoreError::KeyExists`] when its name (or hash) is taken.
    pub async fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        let text = self.dialect(&format!(
            "INSERT INTO api_keys (name, hash, display, tenant, team, created_ms, revision,
                expires_at, revoked_ms, budget_picos, budget_period, rpm, tpm)
             VALUES (?, ?, ?, ?, ?, ?, {THIS_REVISION}, ?, ?, ?, ?, ?, ?)"
        ));
        let l = &key.limits;
        let done = key_change!(
            self,
            &text,
            &key.name,
            &key.hash,
            &key.display,
            &key.tenant,
            &key.team,
            key.created_ms,
            l.expires_at,
            key.revoked_ms,
            l.budget.as_ref().map(|(usd, _)| int(usd.picos())),
            l.budget.as_ref().map(|(_, period)| period.clone()),
            l.rpm.map(int),
            l.tpm.map(int),
        );
        done.map(|_| ()).map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::KeyExists(key.name.clone())
            } else {
                self.sql(e)
            }
        })
    }

    /// Revokes the key `name` at `at_ms`; `false` when there is no such key. Revoking twice
    /// keeps the first time.
    pub async fn revoke_key(&self, name: &str, at_ms: i64) -> Result<bool, StoreError> {
        let text = self.dialect(&format!(
            "UPDATE api_keys SET revoked_ms = COALESCE(revoked_ms, ?), revision = {THIS_REVISION}
             WHERE name = ?"
        ));
        let done = key_change!(self, &text, at_ms, name);
        Ok(done.map_err(|e| self.sql(e))? == 1)
    }

    /// Gives the live key `name` a new hash and display prefix: the old key stops working.
    /// `false` when there is no such key, or it is revoked.
    pub async fn rotate_key(
        &self,
        name: &str,
        hash: &str,
        display: &str,
    ) -> Result<bool, StoreError> {
        let text = self.dialect(&format!(
            "UPDATE api_keys SET hash = ?, display = ?, revision = {THIS_REVISION}
             WHERE name = ? AND revoked_ms IS NULL"
        ));
        let done = key_change!(self, &text, hash, display, name);
        Ok(done.map_err(|e| self.sql(e))? == 1)
    }

    /// Replaces the settings of the key `name`; `false` when there is no such key.
    pub async fn set_key_limits(&self, name: &str, l: &KeyLimits) -> Result<bool, StoreError> {
        let text = self.dialect(&format!(
            "UPDATE api_keys SET expires_at = ?, budget_picos = ?, budget_period = ?, rpm = ?,
                tpm = ?, revision = {THIS_REVISION}
             WHERE name = ?"
        ));
        let done = key_change!(
            self,
            &text,
            l.expires_at,
            l.budget.as_ref().map(|(usd, _)| int(usd.picos())),
            l.budget.as_ref().map(|(_, period)| period.clone()),
            l.rpm.map(int),
            l.tpm.map(int),
            name
        );
        Ok(done.map_err(|e| self.sql(e))? == 1)
    }
}
