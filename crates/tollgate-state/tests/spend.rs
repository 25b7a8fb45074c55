//! Budgets under concurrency, across periods, and through the SQLite store.

use std::sync::Arc;
use tollgate_state::store::{LedgerEntry, Store};
use tollgate_state::{BudgetAsk, Budgets};
use tollgate_types::Usd;

fn dollars(d: f64) -> Usd {
    Usd::from_dollars(d)
}

fn ask(name: &str, limit: f64, period_start: i64) -> BudgetAsk<'_> {
    BudgetAsk {
        name,
        limit: dollars(limit),
        period_start,
        amount: Usd::ZERO,
    }
}

/// `asks`, each reserving `amount`.
fn with<'a>(asks: &[BudgetAsk<'a>], amount: Usd) -> Vec<BudgetAsk<'a>> {
    asks.iter()
        .map(|a| BudgetAsk {
            amount,
            ..a.clone()
        })
        .collect()
}

#[test]
fn concurrent_calls_never_commit_more_than_the_limit() {
    let budgets = Arc::new(Budgets::default());
    let limit = 1.0;
    // 64 threads, each reserving $0.03 and settling a varying actual cost at or below it.
    let handles: Vec<_> = (0..64u64)
        .map(|t| {
            let budgets = budgets.clone();
            std::thread::spawn(move || {
                let mut settled = Usd::ZERO;
                for i in 0..200u64 {
                    let Ok(r) = budgets.reserve(&with(&[ask("team", limit, 0)], dollars(0.03)))
                    else {
                        continue;
                    };
                    let actual = Usd::from_picos(dollars(0.01).picos() + (t * 7 + i) % 1_000_000);
                    settled = settled.saturating_add(actual);
                    let charges = budgets.settle(r, |_| actual);
                    assert_eq!(charges.len(), 1);
                }
                settled
            })
        })
        .collect();
    let total = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .fold(Usd::ZERO, Usd::saturating_add);
    let snap = &budgets.snapshot()[0];
    assert_eq!(snap.reserved, Usd::ZERO);
    // Every settled cent is counted, and the cap held (actual costs never exceeded reserves).
    assert_eq!(snap.spent, total);
    assert!(snap.spent <= dollars(limit), "{} > {limit}", snap.spent);
    // It ran out: what is left is less than one reservation.
    assert!(dollars(limit).saturating_sub(snap.spent) < dollars(0.03));
}

#[test]
fn a_reservation_is_all_or_nothing_across_budgets() {
    let budgets = Budgets::default();
    let r = budgets
        .reserve(&with(
            &[ask("key", 1.0, 0), ask("tenant", 0.5, 0)],
            dollars(0.4),
        ))
        .expect("room in both");
    let refused = budgets
        .reserve(&with(
            &[ask("key", 1.0, 0), ask("tenant", 0.5, 0)],
            dollars(0.2),
        ))
        .expect_err("tenant is full");
    assert_eq!(refused.name, "tenant");
    // The refusal held nothing on `key`.
    let key = budgets
        .snapshot()
        .into_iter()
        .find(|b| b.name == "key")
        .expect("key");
    assert_eq!(key.reserved, dollars(0.4));
    budgets.settle(r, |_| dollars(0.1));
    let snap = budgets.snapshot();
    assert!(
        snap.iter()
            .all(|b| b.spent == dollars(0.1) && b.reserved == Usd::ZERO)
    );
}

#[test]
fn a_new_period_starts_from_zero_and_late_settlements_count_in_it() {
    let budgets = Budgets::default();
    let held = budgets
        .reserve(&with(&[ask("daily", 1.0, 100)], dollars(0.9)))
        .expect("room");
    assert!(
        budgets
            .reserve(&with(&[ask("daily", 1.0, 100)], dollars(0.2)))
            .is_err()
    );
    // The next day: the old reservation is forgotten, so there is room again.
    let next = budgets
        .reserve(&with(&[ask("daily", 1.0, 200)], dollars(0.5)))
        .expect("new period");
    let charges = budgets.settle(held, |_| dollars(0.3));
    assert_eq!(charges[0].period_start, 200);
    budgets.settle(next, |_| dollars(0.5));
    let snap = &budgets.snapshot()[0];
    assert_eq!(
        (snap.period_start, snap.spent, snap.reserved),
        (200, dollars(0.8), Usd::ZERO)
    );
}

#[tokio::test]
async fn spend_and_ledger_survive_a_restart_and_add_up() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path()).await.expect("open");
    let budgets = Budgets::default();
    let mut batch = Vec::new();
    for i in 0..10u64 {
        let r = budgets
            .reserve(&with(&[ask("k", 1.0, 0)], dollars(0.05)))
            .expect("room");
        let cost = Usd::from_picos(12_345_678 * (i + 1));
        batch.push(LedgerEntry {
            request_id: format!("r{i}"),
            key: Some("k".into()),
            model: "m".into(),
            cost,
            status: 200,
            charges: budgets.settle(r, |_| cost),
            ..LedgerEntry::default()
        });
    }
    store.write(&batch[..4]).await.expect("write");
    store.write(&batch[4..]).await.expect("write");
    store.close().await;
    // A new process: the counters come back from the store, equal to the ledger's sum.
    let store = Store::open(dir.path()).await.expect("reopen");
    let restored = Budgets::default();
    for (name, period_start, spent) in store.load_spend().await.expect("load") {
        restored.restore(&name, period_start, spent);
    }
    let spent = restored.snapshot()[0].spent;
    assert_eq!(spent, budgets.snapshot()[0].spent);
    assert_eq!(store.ledger_total("k", 0).await.expect("sum"), spent);
}

/// Shared `asks`, each reserving `amount`.
fn shared_with<'a>(
    asks: &[tollgate_state::redis_budgets::SharedAsk<'a>],
    amount: Usd,
) -> Vec<tollgate_state::redis_budgets::SharedAsk<'a>> {
    asks.iter()
        .map(|a| tollgate_state::redis_budgets::SharedAsk {
            ask: BudgetAsk {
                amount,
                ..a.ask.clone()
            },
            ttl_secs: a.ttl_secs,
        })
        .collect()
}

/// How long test reservations are held before they are taken back.
const HOLD: std::time::Duration = std::time::Duration::from_secs(60);

/// Two gateways' connections to one Redis, 32 callers each, against one $1.00 budget.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Redis: tests/run.sh runs it when TOLLGATE_TEST_REDIS_URL is set"]
async fn shared_counters_hold_across_gateways() {
    use tollgate_state::redis_budgets::{RedisBudgets, SharedAsk};
    let url = std::env::var("TOLLGATE_TEST_REDIS_URL")
        .expect("TOLLGATE_TEST_REDIS_URL (redis://127.0.0.1:6379)");
    let prefix = format!("tollgate-test-{}", std::process::id());
    let gateways = [
        RedisBudgets::connect(&url, &prefix).await.expect("redis"),
        RedisBudgets::connect(&url, &prefix).await.expect("redis"),
    ];
    let mut tasks = Vec::new();
    for g in 0..64usize {
        let budgets = gateways[g % 2].clone();
        tasks.push(tokio::spawn(async move {
            let mut settled = Usd::ZERO;
            for i in 0..20u64 {
                // Test keys expire; a real `total` budget's never do.
                let asks = [SharedAsk {
                    ask: ask("shared", 1.0, 0),
                    ttl_secs: 600,
                }];
                let Ok(admitted) = budgets
                    .admit(&[], &shared_with(&asks, dollars(0.03)), HOLD)
                    .await
                    .expect("redis")
                else {
                    continue;
                };
                let actual = Usd::from_picos(dollars(0.01).picos() + (g as u64 * 13 + i) % 999_983);
                budgets
                    .settle(Some(admitted.reservation), |_| actual, &[])
                    .await
                    .expect("settle");
                settled = settled.saturating_add(actual);
            }
            settled
        }));
    }
    let mut total = Usd::ZERO;
    for t in tasks {
        total = total.saturating_add(t.await.expect("task"));
    }
    let (spent, held) = gateways[0].usage("shared", 0).await.expect("usage");
    assert_eq!(held, Usd::ZERO);
    assert_eq!(spent, total);
    assert!(spent <= dollars(1.0), "{spent}");
    assert!(
        dollars(1.0).saturating_sub(spent) < dollars(0.03),
        "it ran out: {spent}"
    );
    // A refusal names the budget and what it holds.
    let refused = gateways[1]
        .admit(
            &[],
            &shared_with(
                &[SharedAsk {
                    ask: ask("shared", 1.0, 0),
                    ttl_secs: 600,
                }],
                dollars(0.5),
            ),
            HOLD,
        )
        .await
        .expect("redis")
        .expect_err("no room");
    let tollgate_state::redis_budgets::Refusal::Budget(full) = refused else {
        panic!("a budget refused, not {refused:?}");
    };
    assert_eq!((full.name.as_str(), full.spent), ("shared", spent));
}

/// Rate limits in Redis hold across gateways, and are taken together with budgets or not at
/// all; token buckets are settled with the reported tokens.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Redis: tests/run.sh runs it when TOLLGATE_TEST_REDIS_URL is set"]
async fn shared_rate_limits_hold_across_gateways_and_with_budgets() {
    use tollgate_state::Rate;
    use tollgate_state::redis_budgets::{
        RateAdjustment, RedisBudgets, Refusal, SharedAsk, SharedRate,
    };
    let url = std::env::var("TOLLGATE_TEST_REDIS_URL")
        .expect("TOLLGATE_TEST_REDIS_URL (redis://127.0.0.1:6379)");
    let prefix = format!("tollgate-test-rl-{}", std::process::id());
    let gateways = [
        RedisBudgets::connect(&url, &prefix).await.expect("redis"),
        RedisBudgets::connect(&url, &prefix).await.expect("redis"),
    ];
    let rpm = SharedRate {
        bucket: "rpm|r|k",
        rate: Rate { per_minute: 10 },
        units: 1,
    };
    for i in 0..10 {
        let admitted = gateways[i % 2]
            .admit(&[rpm], &shared_with(&[], Usd::ZERO), HOLD)
            .await
            .expect("redis")
            .expect("within the limit");
        assert_eq!(admitted.standings[0].remaining, 9 - i as u64);
    }
    let refused = gateways[0]
        .admit(&[rpm], &shared_with(&[], Usd::ZERO), HOLD)
        .await
        .expect("redis");
    let Err(Refusal::Rate {
        index,
        retry_after,
        standing,
    }) = refused
    else {
        panic!("expected a rate refusal, got {refused:?}");
    };
    assert_eq!((index, standing.remaining), (0, 0));
    assert!(
        retry_after > std::time::Duration::from_secs(4)
            && retry_after <= std::time::Duration::from_secs(6),
        "{retry_after:?}"
    );

    // A budget without room: the token bucket is not touched either.
    let tpm = SharedRate {
        bucket: "tpm|r|k",
        rate: Rate { per_minute: 1000 },
        units: 400,
    };
    let tiny = [SharedAsk {
        ask: ask("rl-tiny", 0.01, 0),
        ttl_secs: 600,
    }];
    let refused = gateways[1]
        .admit(&[tpm], &shared_with(&tiny, dollars(0.02)), HOLD)
        .await
        .expect("redis");
    assert!(matches!(refused, Err(Refusal::Budget(_))), "{refused:?}");
    let admitted = gateways[1]
        .admit(&[tpm], &shared_with(&tiny, dollars(0.005)), HOLD)
        .await
        .expect("redis")
        .expect("room in both");
    assert_eq!(
        admitted.standings[0].remaining, 600,
        "only this request's 400 were taken"
    );
    // The provider reported 500 more tokens than estimated: a debt, shared by every gateway.
    gateways[1]
        .settle(
            Some(admitted.reservation),
            |_| dollars(0.004),
            &[RateAdjustment {
                bucket: "tpm|r|k".into(),
                rate: Rate { per_minute: 1000 },
                delta: 500,
            }],
        )
        .await
        .expect("settle");
    let small = SharedRate { units: 100, ..tpm };
    let after = gateways[0]
        .admit(&[small], &shared_with(&[], Usd::ZERO), HOLD)
        .await
        .expect("redis")
        .expect("100 of the last 100");
    assert_eq!(after.standings[0].remaining, 0);
    assert!(
        gateways[0]
            .admit(&[small], &shared_with(&[], Usd::ZERO), HOLD)
            .await
            .expect("redis")
            .is_err()
    );
    assert_eq!(
        gateways[0].usage("rl-tiny", 0).await.expect("usage"),
        (dollars(0.004), Usd::ZERO)
    );
}

/// A reservation whose gateway died before settling is taken back once its request's
/// deadline has passed; a settlement that arrives after that still adds what was spent, and
/// releases nothing twice.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Redis: tests/run.sh runs it when TOLLGATE_TEST_REDIS_URL is set"]
async fn reservations_of_a_dead_gateway_expire_with_their_deadline() {
    use std::time::Duration;
    use tollgate_state::redis_budgets::{RedisBudgets, SharedAsk};
    let url = std::env::var("TOLLGATE_TEST_REDIS_URL")
        .expect("TOLLGATE_TEST_REDIS_URL (redis://127.0.0.1:6379)");
    let prefix = format!("tollgate-test-holds-{}", std::process::id());
    let redis = RedisBudgets::connect(&url, &prefix).await.expect("redis");
    let asks = [SharedAsk {
        ask: ask("held", 1.0, 0),
        ttl_secs: 600,
    }];
    let short = Duration::from_millis(100);
    let crashed = redis
        .admit(&[], &shared_with(&asks, dollars(0.7)), short)
        .await
        .expect("redis")
        .expect("room");
    assert!(
        redis
            .admit(&[], &shared_with(&asks, dollars(0.5)), HOLD)
            .await
            .expect("redis")
            .is_err(),
        "0.7 is held"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let next = redis
        .admit(&[], &shared_with(&asks, dollars(0.5)), HOLD)
        .await
        .expect("redis")
        .expect("the dead request's hold was taken back");
    assert_eq!(
        redis.usage("held", 0).await.expect("usage"),
        (Usd::ZERO, dollars(0.5))
    );
    // The "dead" request settles after all: its spend counts, its hold is not released twice.
    redis
        .settle(Some(crashed.reservation), |_| dollars(0.2), &[])
        .await
        .expect("settle");
    assert_eq!(
        redis.usage("held", 0).await.expect("usage"),
        (dollars(0.2), dollars(0.5))
    );
    redis
        .settle(Some(next.reservation), |_| dollars(0.1), &[])
        .await
        .expect("settle");
    assert_eq!(
        redis.usage("held", 0).await.expect("usage"),
        (dollars(0.3), Usd::ZERO)
    );
}

/// The same store in PostgreSQL: ledger rows and budget spend add up exactly.
#[tokio::test]
#[ignore = "needs PostgreSQL: tests/run.sh runs it when TOLLGATE_TEST_DATABASE_URL is set"]
async fn the_postgres_store_adds_up_like_sqlite() {
    use tollgate_state::store::Location;
    let url = std::env::var("TOLLGATE_TEST_DATABASE_URL")
        .expect("TOLLGATE_TEST_DATABASE_URL (postgres://postgres@127.0.0.1:5432/test)");
    let unique = format!(
        "pg-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    );
    let store = Store::open_at(&Location::Postgres(url.clone()))
        .await
        .expect("open");
    let budgets = Budgets::default();
    let mut batch = Vec::new();
    for i in 0..10u64 {
        let r = budgets
            .reserve(&with(&[ask(&unique, 1.0, 0)], dollars(0.05)))
            .expect("room");
        let cost = Usd::from_picos(987_654_321 * (i + 1));
        batch.push(LedgerEntry {
            request_id: format!("{unique}-{i}"),
            key: Some(unique.clone()),
            model: "m".into(),
            cost,
            status: 200,
            charges: budgets.settle(r, |_| cost),
            ..LedgerEntry::default()
        });
    }
    store.write(&batch).await.expect("write");
    store.close().await;
    let store = Store::open_at(&Location::Postgres(url))
        .await
        .expect("reopen");
    let spent = budgets.snapshot()[0].spent;
    assert_eq!(store.ledger_total(&unique, 0).await.expect("sum"), spent);
    let loaded = store.load_spend().await.expect("load");
    assert!(loaded.contains(&(unique.clone(), 0, spent)), "{loaded:?}");
    store.close().await;
}

#[test]
fn a_request_from_an_older_period_releases_what_it_reserved() {
    // Another request (or a reload to a longer period) moved the counter on first: this one's
    // reservation lands in the counter's period, and settling it must release it there.
    let budgets = Budgets::default();
    let newer = budgets
        .reserve(&with(&[ask("b", 1.0, 200)], dollars(0.1)))
        .expect("room");
    budgets.settle(newer, |_| dollars(0.1));
    let older = budgets
        .reserve(&with(&[ask("b", 1.0, 100)], dollars(0.5)))
        .expect("room");
    let charges = budgets.settle(older, |_| dollars(0.2));
    assert_eq!(charges[0].period_start, 200);
    let snap = &budgets.snapshot()[0];
    assert_eq!((snap.spent, snap.reserved), (dollars(0.3), Usd::ZERO));
}
