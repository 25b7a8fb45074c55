//! Rate limits on the request path: admit a request under every rule that applies, or refuse
//! it with 429; settle the token buckets with the tokens the provider reported.

use crate::context::RequestCtx;
use crate::spend::{Spend, entity};
use std::sync::atomic::Ordering;
use std::time::Instant;
use tollgate_state::{Rate, Standing};
use tollgate_types::{ApiError, ErrorKind};

/// Idle rate-limit buckets are swept every this many admissions.
const SWEEP_EVERY: u64 = 4096;

/// A token bucket a request took its estimate from, settled with its actual tokens.
#[derive(Debug)]
pub struct TokenCharge {
    bucket: String,
    rate: Rate,
    estimated: u64,
}

impl Spend {
    /// Admits the request under every rate limit that applies, or refuses it with 429 and
    /// `retry-after`. Requests count 1; tokens count an estimate of the prompt (a quarter of
    /// the body's bytes) now, and are settled with the reported tokens when the request ends.
    pub fn admit(&self, ctx: &mut RequestCtx) -> Result<(), ApiError> {
        let state = ctx.state.clone();
        let rules = &state.config.rate_limits;
        let Some(model) = ctx.model.clone() else {
            return Ok(());
        };
        let own = ctx.key_rate_limit.clone();
        if rules.is_empty() && own.is_none() {
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
        let estimated = u64::try_from(ctx.request_bytes / 4 + 1).unwrap_or(u64::MAX);
        let mut taken: Vec<(String, Rate, u64, bool)> = Vec::new();
        let (mut requests, mut tokens): (Option<Standing>, Option<Standing>) = (None, None);
        let caller = ctx.caller();
        let applicable = rules
            .iter()
            .filter(|r| r.applies(caller, &model))
            .chain(own.as_deref());
        for rule in applicable {
            // A per-user rule does not limit requests that name no user, and so on.
            let Some(entity) = rule.per.map_or(Some("*"), |p| entity(p, ctx, &model)) else {
                continue;
            };
            for (is_tokens, per_minute, n) in [(false, rule.rpm, 1), (true, rule.tpm, estimated)] {
                let Some(per_minute) = per_minute else {
                    continue;
                };
                let rate = Rate { per_minute };
                let kind = if is_tokens { "tpm" } else { "rpm" };
                let bucket = format!("{kind}|{}|{entity}", rule.name);
                match self.rates.take(&bucket, rate, n, now) {
                    Ok(standing) => {
                        let tightest = if is_tokens {
                            &mut tokens
                        } else {
                            &mut requests
                        };
                        if tightest.is_none_or(|t| standing.remaining < t.remaining) {
                            *tightest = Some(standing);
                        }
                        taken.push((bucket, rate, n, is_tokens));
                    }
                    Err(limited) => {
                        // All or nothing: give back what this request already took.
                        for (bucket, rate, n, _) in &taken {
                            self.rates.adjust(
                                bucket,
                                *rate,
                                -i64::try_from(*n).unwrap_or(i64::MAX),
                                now,
                            );
                        }
                        if n > per_minute {
                            // Waiting cannot help a request larger than the whole minute.
                            return Err(ApiError::new(
                                ErrorKind::InvalidRequest,
                                format!(
                                    "this request (about {n} tokens) is larger than rate limit \
                                     {:?} allows in a minute ({per_minute})",
                                    rule.name
                                ),
                            )
                            .with_code("request_too_large_for_rate_limit"));
                        }
                        let what = if is_tokens { "tokens" } else { "requests" };
                        let secs = limited.retry_after.as_secs_f64().ceil().max(1.0) as u64;
                        return Err(ApiError::new(
                            ErrorKind::RateLimited,
                            format!(
                                "rate limit {:?} reached: {per_minute} {what} per minute; retry in {secs} s",
                                rule.name
                            ),
                        )
                        .with_code("rate_limit_exceeded")
                        .with_retry_after(Some(secs)));
                    }
                }
            }
        }
        ctx.rate_headers = rate_headers(requests, tokens);
        ctx.token_charges = taken
            .into_iter()
            .filter(|(_, _, _, is_tokens)| *is_tokens)
            .map(|(bucket, rate, estimated, _)| TokenCharge {
                bucket,
                rate,
                estimated,
            })
            .collect();
        Ok(())
    }

    /// Settles the request's token buckets with the tokens it used; without reported usage
    /// the estimate stands.
    pub fn settle_tokens(&self, ctx: &mut RequestCtx) {
        let now = Instant::now();
        for charge in ctx.token_charges.drain(..) {
            let actual = ctx.usage.map_or(charge.estimated, |u| {
                u.input_tokens.saturating_add(u.output_tokens)
            });
            let delta = i64::try_from(actual).unwrap_or(i64::MAX)
                - i64::try_from(charge.estimated).unwrap_or(i64::MAX);
            self.rates.adjust(&charge.bucket, charge.rate, delta, now);
        }
    }
}

/// OpenAI's `x-ratelimit-*` headers for the tightest request and token buckets.
fn rate_headers(
    requests: Option<Standing>,
    tokens: Option<Standing>,
) -> Vec<(&'static str, String)> {
    let mut h = Vec::new();
    let reset = |d: std::time::Duration| format!("{:.3}s", d.as_secs_f64());
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
