//! Rate limits on the request path: the buckets a request takes from under every rule that
//! applies (the config's and its key's own), taken in this process or, with `[shared]
//! redis_url`, in Redis together with the budgets ([`Spend::admit`]); refused with 429 and
//! `retry-after`; token buckets settled with the tokens the provider reported.

use crate::context::RequestCtx;
use crate::spend::{Spend, entity};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tollgate_state::redis_budgets::{RateAdjustment, SharedRate};
use tollgate_state::{Rate, Standing};
use tollgate_types::{ApiError, ErrorKind};

/// Idle rate-limit buckets are swept every this many admissions.
const SWEEP_EVERY: u64 = 4096;

/// A bucket a request takes from: requests (1 unit) or tokens (an estimate of the prompt).
#[derive(Debug, Clone)]
pub(crate) struct RateAsk {
    /// `rpm|rule|entity` or `tpm|rule|entity`.
    bucket: String,
    rate: Rate,
    units: u64,
    is_tokens: bool,
    rule: String,
}

impl RateAsk {
    pub(crate) fn shared(&self) -> SharedRate<'_> {
        SharedRate {
            bucket: &self.bucket,
            rate: self.rate,
            units: self.units,
        }
    }
}

/// A token bucket a request took its estimate from, settled with its actual tokens.
#[derive(Debug)]
pub struct TokenCharge {
    bucket: String,
    rate: Rate,
    estimated: u64,
    /// Counted in Redis, not in this process.
    shared: bool,
}

/// The 429 for a full bucket.
pub(crate) fn rate_limited(ask: &RateAsk, retry_after: Duration) -> ApiError {
    let what = if ask.is_tokens { "tokens" } else { "requests" };
    let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    ApiError::new(
        ErrorKind::RateLimited,
        format!(
            "rate limit {:?} reached: {} {what} per minute; retry in {secs} s",
            ask.rule, ask.rate.per_minute
        ),
    )
    .with_code("rate_limit_exceeded")
    .with_retry_after(Some(secs))
}

impl Spend {
    /// The buckets the request takes from, or a 400 for a request larger than a whole
    /// minute of some token limit (waiting cannot help it). Requests count 1; tokens count an
    /// estimate of the prompt (a quarter of the body's bytes), settled when the request ends.
    pub(crate) fn rate_asks(&self, ctx: &RequestCtx) -> Result<Vec<RateAsk>, ApiError> {
        let Some(model) = ctx.model.as_deref() else {
            return Ok(Vec::new());
        };
        let caller = ctx.caller();
        let rules = ctx
            .state
            .config
            .rate_limits
            .iter()
            .filter(|r| r.applies(caller, model))
            .chain(ctx.key_rate_limit.as_deref());
        let estimated = u64::try_from(ctx.request_bytes / 4 + 1).unwrap_or(u64::MAX);
        let mut asks = Vec::new();
        for rule in rules {
            // A per-user rule does not limit requests that name no user, and so on.
            let Some(entity) = rule.per.map_or(Some("*"), |p| entity(p, ctx, model)) else {
                continue;
            };
            for (is_tokens, per_minute, units) in
                [(false, rule.rpm, 1), (true, rule.tpm, estimated)]
            {
                let Some(per_minute) = per_minute else {
                    continue;
                };
                if units > per_minute {
                    return Err(ApiError::new(
                        ErrorKind::InvalidRequest,
                        format!(
                            "this request (about {units} tokens) is larger than rate limit \
                             {:?} allows in a minute ({per_minute})",
                            rule.name
                        ),
                    )
                    .with_code("request_too_large_for_rate_limit"));
                }
                let kind = if is_tokens { "tpm" } else { "rpm" };
                asks.push(RateAsk {
                    bucket: format!("{kind}|{}|{entity}", rule.name),
                    rate: Rate { per_minute },
                    units,
                    is_tokens,
                    rule: rule.name.clone(),
                });
            }
        }
        Ok(asks)
    }

    /// Takes every bucket in this process, or none (refused with 429).
    pub(crate) fn take_local(
        &self,
        ctx: &mut RequestCtx,
        asks: &[RateAsk],
    ) -> Result<(), ApiError> {
        if asks.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        if self
            .admissions
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY)
        {
            self.rates.sweep(now);
        }
        let mut standings = Vec::with_capacity(asks.len());
        for (i, ask) in asks.iter().enumerate() {
            match self.rates.take(&ask.bucket, ask.rate, ask.units, now) {
                Ok(standing) => standings.push(standing),
                Err(limited) => {
                    self.give_back_local(&asks[..i]);
                    return Err(rate_limited(ask, limited.retry_after));
                }
            }
        }
        admitted(ctx, asks, &standings, false);
        Ok(())
    }

    /// Returns what `asks` took from this process's buckets (a later check refused).
    pub(crate) fn give_back_local(&self, asks: &[RateAsk]) {
        let now = Instant::now();
        for ask in asks {
            let units = i64::try_from(ask.units).unwrap_or(i64::MAX);
            self.rates.adjust(&ask.bucket, ask.rate, -units, now);
        }
    }

    /// Settles the request's token buckets with the tokens it used (without reported usage
    /// the estimate stands): this process's at once; Redis's returned, to go with the
    /// budgets' settlement.
    pub(crate) fn settle_tokens(&self, ctx: &mut RequestCtx) -> Vec<RateAdjustment> {
        let now = Instant::now();
        let mut shared = Vec::new();
        for charge in ctx.token_charges.drain(..) {
            let actual = ctx.usage.map_or(charge.estimated, |u| {
                u.input_tokens.saturating_add(u.output_tokens)
            });
            let delta = i64::try_from(actual).unwrap_or(i64::MAX)
                - i64::try_from(charge.estimated).unwrap_or(i64::MAX);
            if charge.shared {
                shared.push(RateAdjustment {
                    bucket: charge.bucket,
                    rate: charge.rate,
                    delta,
                });
            } else {
                self.rates.adjust(&charge.bucket, charge.rate, delta, now);
            }
        }
        shared
    }
}

/// Records an admission: the `x-ratelimit-*` headers of the tightest buckets, and the token
/// buckets to settle.
pub(crate) fn admitted(
    ctx: &mut RequestCtx,
    asks: &[RateAsk],
    standings: &[Standing],
    shared: bool,
) {
    let (mut requests, mut tokens): (Option<Standing>, Option<Standing>) = (None, None);
    for (ask, standing) in asks.iter().zip(standings) {
        let tightest = if ask.is_tokens {
            &mut tokens
        } else {
            &mut requests
        };
        if tightest.is_none_or(|t| standing.remaining < t.remaining) {
            *tightest = Some(*standing);
        }
    }
    ctx.rate_headers = rate_headers(requests, tokens);
    ctx.token_charges = asks
        .iter()
        .filter(|a| a.is_tokens)
        .map(|a| TokenCharge {
            bucket: a.bucket.clone(),
            rate: a.rate,
            estimated: a.units,
            shared,
        })
        .collect();
}

/// OpenAI's `x-ratelimit-*` headers for the tightest request and token buckets.
fn rate_headers(
    requests: Option<Standing>,
    tokens: Option<Standing>,
) -> Vec<(&'static str, String)> {
    let mut h = Vec::new();
    let reset = |d: Duration| format!("{:.3}s", d.as_secs_f64());
    if let Some(s) = requests {
        h.push(("x-ratelimit-limit-requests", s.limit.to_string()));
        h.push(("x-ratelimit-remaining-requests", s.remaining.to_string()));
        h.push(("x-ratelimit-reset-requests", reset(s.reset)));
    }
    if let Some(s) = tokens {
        h.push(("x-ratelimit-limit-tokens", s.limit.to_string()));
        h.push(("x-ratelimit-remaining-tokens", s.remaining.to_string()));
        h.push(("x-ratelimit-reset-tokens", reset(s.reset)));
    }
    h
}
