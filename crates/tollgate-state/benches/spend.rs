//! The budget cost a request pays on the hot path: one reserve and one settle.
//!
//! `cargo bench -p tollgate-state`

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tollgate_state::{BudgetAsk, Budgets};
use tollgate_types::Usd;

fn benches(c: &mut Criterion) {
    let budgets = Budgets::default();
    let asks = [
        BudgetAsk {
            name: "key:team-a/daily",
            limit: Usd::MAX,
            period_start: 0,
            amount: Usd::from_picos(150_000_000),
        },
        BudgetAsk {
            name: "tenant:acme/monthly",
            limit: Usd::MAX,
            period_start: 0,
            amount: Usd::from_picos(150_000_000),
        },
    ];
    c.bench_function("budget_reserve_settle/2_budgets", |b| {
        b.iter(|| {
            let r = budgets.reserve(black_box(&asks)).expect("room");
            budgets.settle(r, |_| Usd::from_picos(42_000_000))
        })
    });
}

criterion_group!(spend_benches, benches);
criterion_main!(spend_benches);
