//! The store's keys, spend reports, alert claims and schema upgrades, on SQLite and on
//! PostgreSQL.

use tollgate_state::store::keys::{KeyLimits, StoredKey};
use tollgate_state::store::reports::{Bucket, GroupBy, ReportQuery};
use tollgate_state::store::{LedgerEntry, Location, Store, StoreError};
use tollgate_types::Usd;

fn unique() -> String {
    format!(
        "t{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    )
}

/// A well-formed `sha256:` hash, different for each `(u, n)`: other tests' gateways that
/// share the PostgreSQL test database load these keys too.
fn hash(u: &str, n: u8) -> String {
    let seed = u.bytes().fold(0u128, |h, b| {
        h.wrapping_mul(131).wrapping_add(u128::from(b))
    });
    format!("sha256:{seed:032x}{:032x}", u128::from(n))
}

fn key(name: &str, hash: &str) -> StoredKey {
    StoredKey {
        name: name.to_owned(),
        hash: hash.to_owned(),
        display: "sk-tg-abcd…".to_owned(),
        tenant: "acme".to_owned(),
        team: Some("search".to_owned()),
        created_ms: 1,
        limits: KeyLimits {
            expires_at: None,
            budget: Some((Usd::from_dollars(2.5), "daily".to_owned())),
            rpm: Some(60),
            tpm: None,
        },
        revoked_ms: None,
    }
}

/// Keys: made, listed, refused twice, changed, rotated, revoked; each change moves the
/// revision that other gateways poll.
async fn keys_round_trip(store: &Store, u: &str) {
    let name = format!("{u}-a");
    let before = store.keys_revision().await.expect("revision");
    store
        .insert_key(&key(&name, &hash(u, 1)))
        .await
        .expect("insert");
    let r1 = store.keys_revision().await.expect("revision");
    assert!(r1 > before);
    let again = store.insert_key(&key(&name, &hash(u, 2))).await;
    assert!(matches!(again, Err(StoreError::KeyExists(n)) if n == name));
    let listed = store.keys().await.expect("list");
    let got = listed.iter().find(|k| k.name == name).expect("listed");
    assert_eq!(got, &key(&name, &hash(u, 1)));

    let limits = KeyLimits {
        expires_at: Some(1_900_000_000),
        budget: None,
        rpm: None,
        tpm: Some(1000),
    };
    assert!(store.set_key_limits(&name, &limits).await.expect("set"));
    assert!(!store.set_key_limits("nobody", &limits).await.expect("set"));
    assert!(
        store
            .rotate_key(&name, &hash(u, 3), "sk-tg-wxyz…")
            .await
            .expect("rotate")
    );
    let r2 = store.keys_revision().await.expect("revision");
    assert!(r2 > r1);
    assert!(store.revoke_key(&name, 77).await.expect("revoke"));
    assert!(store.revoke_key(&name, 99).await.expect("revoke twice"));
    assert!(!store.revoke_key("nobody", 1).await.expect("revoke"));
    assert!(
        !store
            .rotate_key(&name, &hash(u, 4), "x")
            .await
            .expect("rotate revoked"),
        "a revoked key cannot be brought back by rotating it"
    );
    let listed = store.keys().await.expect("list");
    let got = listed.iter().find(|k| k.name == name).expect("listed");
    assert_eq!(got.hash, hash(u, 3));
    assert_eq!(got.limits, limits);
    assert_eq!(
        got.revoked_ms,
        Some(77),
        "the first revocation time is kept"
    );
    assert!(store.keys_revision().await.expect("revision") > r2);
}

/// Spend grouped by team and by key per hour, over a range, adds up to the entries.
async fn reports_add_up(store: &Store, u: &str) {
    let hour = 3_600_000;
    let base = 480_000 * hour; // an hour boundary
    let entry = |i: u64, team: &str, at_ms: i64, dollars: f64| LedgerEntry {
        request_id: format!("{u}-{i}"),
        at_ms,
        key: Some(format!("{u}-key-{team}")),
        team: Some(format!("{u}-{team}")),
        model: "m".to_owned(),
        input_tokens: 10,
        output_tokens: 5,
        cost: Usd::from_dollars(dollars),
        status: 200,
        ..LedgerEntry::default()
    };
    let batch = [
        entry(1, "red", base + 10, 0.25),
        entry(2, "red", base + hour + 10, 0.5),
        entry(3, "blue", base + 20, 1.125),
        entry(4, "blue", base - 1, 100.0), // before the range
    ];
    store.write(&batch).await.expect("write");
    let range = |by, bucket| ReportQuery {
        by: Some(by),
        bucket,
        from_ms: base,
        to_ms: base + 2 * hour,
    };
    let mine = |rows: Vec<tollgate_state::store::reports::SpendRow>| -> Vec<_> {
        rows.into_iter()
            .filter(|r| r.group.as_deref().is_some_and(|g| g.starts_with(u)))
            .map(|r| (r.group.unwrap_or_default(), r.bucket_ms, r.requests, r.cost))
            .collect()
    };
    let by_team = mine(
        store
            .spend_report(range(GroupBy::Team, None))
            .await
            .expect("report"),
    );
    assert_eq!(
        by_team,
        vec![
            (format!("{u}-blue"), None, 1, Usd::from_dollars(1.125)),
            (format!("{u}-red"), None, 2, Usd::from_dollars(0.75)),
        ]
    );
    let hourly = mine(
        store
            .spend_report(range(GroupBy::Key, Some(Bucket::Hour)))
            .await
            .expect("report"),
    );
    assert_eq!(
        hourly,
        vec![
            (
                format!("{u}-key-blue"),
                Some(base),
                1,
                Usd::from_dollars(1.125)
            ),
            (
                format!("{u}-key-red"),
                Some(base),
                1,
                Usd::from_dollars(0.25)
            ),
            (
                format!("{u}-key-red"),
                Some(base + hour),
                1,
                Usd::from_dollars(0.5)
            ),
        ]
    );
}

async fn alerts_are_claimed_once(store: &Store, u: &str) {
    let id = format!("budget|{u}|0|0.8");
    assert!(store.claim_alert(&id, 1).await.expect("claim"));
    assert!(!store.claim_alert(&id, 2).await.expect("claim again"));
}

#[tokio::test]
async fn sqlite_keeps_keys_reports_and_alerts() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path()).await.expect("open");
    let u = unique();
    keys_round_trip(&store, &u).await;
    reports_add_up(&store, &u).await;
    alerts_are_claimed_once(&store, &u).await;
    store.close().await;
    // Reopening applies no migration twice.
    let store = Store::open(dir.path()).await.expect("reopen");
    assert_eq!(store.keys().await.expect("keys").len(), 1);
    store.close().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: tests/run.sh runs it when TOLLGATE_TEST_DATABASE_URL is set"]
async fn postgres_keeps_keys_reports_and_alerts() {
    let url = std::env::var("TOLLGATE_TEST_DATABASE_URL")
        .expect("TOLLGATE_TEST_DATABASE_URL (postgres://postgres@127.0.0.1:5432/test)");
    let store = Store::open_at(&Location::Postgres(url))
        .await
        .expect("open");
    let u = unique();
    keys_round_trip(&store, &u).await;
    reports_add_up(&store, &u).await;
    alerts_are_claimed_once(&store, &u).await;
    store.close().await;
}

/// A `spend.db` written before the schema was versioned (its tables made directly, no
/// `_sqlx_migrations`) is upgraded in place: its spend and ledger are kept.
#[tokio::test]
async fn a_database_from_before_migrations_is_upgraded_in_place() {
    use sqlx::sqlite::SqliteConnectOptions;
    let dir = tempfile::tempdir().expect("dir");
    let old = sqlx::SqlitePool::connect_with(
        SqliteConnectOptions::new()
            .filename(dir.path().join("spend.db"))
            .create_if_missing(true),
    )
    .await
    .expect("old db");
    sqlx::raw_sql(include_str!("../migrations/0001_spend_and_ledger.sql"))
        .execute(&old)
        .await
        .expect("old schema");
    sqlx::raw_sql(
        "INSERT INTO budget_spend VALUES ('b', 0, 5000);
         INSERT INTO ledger (request_id, at_ms, key, model, input_tokens, output_tokens,
            cached_input_tokens, cache_write_tokens, cost_picos, status, latency_ms)
         VALUES ('old', 1000, 'k', 'm', 1, 1, 0, 0, 5000, 200, 3);",
    )
    .execute(&old)
    .await
    .expect("old rows");
    old.close().await;

    let store = Store::open(dir.path()).await.expect("upgrade");
    assert_eq!(
        store.load_spend().await.expect("spend"),
        vec![("b".to_owned(), 0, Usd::from_picos(5000))]
    );
    let rows = store
        .spend_report(ReportQuery {
            by: Some(GroupBy::Team),
            bucket: None,
            from_ms: 0,
            to_ms: 2000,
        })
        .await
        .expect("report");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].group.as_deref(), rows[0].cost),
        (None, Usd::from_picos(5000))
    );
    assert!(store.keys().await.expect("keys table").is_empty());
    store.close().await;
}
