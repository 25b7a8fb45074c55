//! The schema's versions, embedded in the binary and applied in order at open.

use super::StoreError;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use std::borrow::Cow;
use std::path::Path;

/// Every migration, oldest first. An applied migration is checksummed: never edit one, add
/// the next.
const MIGRATIONS: [(i64, &str, &str); 7] = [
    (
        1,
        "spend and ledger",
        include_str!("../../migrations/0001_spend_and_ledger.sql"),
    ),
    (
        2,
        "keys, teams and alerts",
        include_str!("../../migrations/0002_keys_teams_alerts.sql"),
    ),
    (
        3,
        "key revision counter",
        include_str!("../../migrations/0003_key_revision_counter.sql"),
    ),
    (
        4,
        "ledger attempts",
        include_str!("../../migrations/0004_ledger_attempts.sql"),
    ),
    (
        5,
        "ledger request index",
        include_str!("../../migrations/0005_ledger_request_index.sql"),
    ),
    (
        6,
        "drop unused ledger indexes",
        include_str!("../../migrations/0006_drop_unused_ledger_indexes.sql"),
    ),
    (
        7,
        "ledger cascade",
        include_str!("../../migrations/0007_ledger_cascade.sql"),
    ),
];

/// Brings the database behind `pool` up to the newest schema.
pub(super) async fn run<'a, A>(pool: A, path: &Path) -> Result<(), StoreError>
where
    A: sqlx::Acquire<'a>,
    <A::Connection as std::ops::Deref>::Target: sqlx::migrate::Migrate,
{
    let migrations = MIGRATIONS
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                Cow::Borrowed(*sql),
                false,
            )
        })
        .collect::<Vec<_>>();
    let migrator = Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    };
    migrator
        .run(pool)
        .await
        .map_err(|source| StoreError::Migrate {
            path: path.to_owned(),
            source,
        })
}
