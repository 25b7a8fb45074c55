//! What a cascade did, tier by tier: the `x-tollgate-cascade` header, the ledger's `cascade`
//! column, and the baseline the savings figure is measured against.

use super::Captured;
use super::score::Scored;
use crate::context::RequestCtx;
use serde::Serialize;
use tollgate_types::Usd;

/// One tier's attempt.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// 1-based.
    pub tier: usize,
    /// Who answered (none when every target failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Their model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// What the attempt cost, in USD.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<String>,
    /// The combined score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Each scorer's score (`null`: it had nothing to say).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scores: Vec<(&'static str, Option<f64>)>,
    /// What judging this tier's answer cost, in USD.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge_cost_usd: Option<String>,
    /// `accept`, `escalate`, `failed` or `final`.
    pub decision: &'static str,
}

impl Step {
    /// A tier whose every target failed.
    pub fn failed(tier: usize) -> Step {
        Step {
            tier,
            provider: None,
            model: None,
            cost_usd: None,
            score: None,
            scores: Vec::new(),
            judge_cost_usd: None,
            decision: "failed",
        }
    }

    /// A tier that answered and was scored.
    pub fn scored(
        tier: usize,
        c: &Captured,
        s: &Scored,
        accept: bool,
        judges: Option<Usd>,
    ) -> Step {
        Step {
            tier,
            provider: Some(c.served_by.0.clone()),
            model: Some(c.served_by.1.clone()),
            cost_usd: c.cost.map(|x| x.to_string()),
            score: Some(round(s.score)),
            scores: s.parts.iter().map(|(k, v)| (*k, v.map(round))).collect(),
            judge_cost_usd: judges.filter(|j| *j > Usd::ZERO).map(|j| j.to_string()),
            decision: if accept { "accept" } else { "escalate" },
        }
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The cascade of one request.
#[derive(Debug, Clone)]
pub struct Record {
    tiers: usize,
    /// The last tier's first target: what "always the strongest" would have called.
    strongest: Option<(String, String)>,
    steps: Vec<Step>,
    /// The tier whose answer the client got (1-based).
    answered: usize,
    /// The last score computed.
    score: Option<f64>,
    /// A tier below the last answered: what the last tier would have cost for its usage.
    baseline: Option<Usd>,
    /// The last tier answered: what the request paid before it (its cost is the rest).
    before_last: Option<Option<Usd>>,
    /// The last tier failed and an earlier tier's unsure answer was served.
    fallback: bool,
}

impl Record {
    /// A cascade of `tiers` tiers; `strongest` prices the baseline.
    pub fn new(tiers: usize, strongest: Option<(String, String)>) -> Record {
        Record {
            tiers,
            strongest,
            steps: Vec::new(),
            answered: 0,
            score: None,
            baseline: None,
            before_last: None,
            fallback: false,
        }
    }

    /// Notes one tier's attempt.
    pub fn push(&mut self, step: Step) {
        if step.score.is_some() {
            self.score = step.score;
        }
        self.steps.push(step);
    }

    /// An earlier tier's answer was accepted: the baseline prices its usage at the last tier.
    pub fn accept(&mut self, tier: usize, score: f64, ctx: &RequestCtx, c: &Captured) {
        self.answered = tier;
        self.score = Some(round(score));
        self.baseline = match (&self.strongest, c.usage) {
            (Some((p, m)), Some(u)) => ctx.state.cost(p, m, &u),
            _ => None,
        };
    }

    /// The last tier is about to answer; `before` is what the earlier tiers and judges cost.
    pub fn finish(&mut self, before: Option<Usd>) {
        self.answered = self.tiers;
        self.before_last = Some(before);
    }

    /// Every target of the last tier failed: the answer of `tier`, scored `score`, is served.
    pub fn fall_back(&mut self, tier: usize, score: f64, ctx: &RequestCtx, c: &Captured) {
        self.steps.push(Step::failed(self.tiers));
        self.before_last = None;
        self.fallback = true;
        self.accept(tier, score, ctx, c);
    }

    /// `tier=1/2 score=0.83 escalated=false` (and ` fallback=true` when the last tier failed
    /// and an earlier tier's answer was served).
    pub fn header(&self) -> String {
        let score = self
            .score
            .map_or_else(|| "-".to_owned(), |s| format!("{s:.2}"));
        // A stream sent straight to the last tier (`stream_first_tier = false`) tried no
        // earlier tier: it did not escalate.
        let escalated = self.answered > 1 && !self.steps.is_empty();
        let fallback = if self.fallback { " fallback=true" } else { "" };
        format!(
            "tier={}/{} score={score} escalated={escalated}{fallback}",
            self.answered, self.tiers
        )
    }

    /// What the request would have cost on the last tier alone: its own cost when it
    /// answered (the earlier tiers are what the cascade added), else the accepted answer's
    /// usage at the last tier's price.
    pub fn baseline(&self, total: Option<Usd>) -> Option<Usd> {
        match self.before_last {
            Some(before) => total.map(|t| t.saturating_sub(before.unwrap_or(Usd::ZERO))),
            None => self.baseline,
        }
    }

    /// The tiers as the ledger keeps them, the last one's cost filled in once known.
    pub fn ledger_json(&self, total: Option<Usd>, served_by: Option<&(String, String)>) -> String {
        let mut steps = self.steps.clone();
        if self.before_last.is_some() {
            steps.push(Step {
                tier: self.tiers,
                provider: served_by.map(|s| s.0.clone()),
                model: served_by.map(|s| s.1.clone()),
                cost_usd: self.baseline(total).map(|c| c.to_string()),
                score: None,
                scores: Vec::new(),
                judge_cost_usd: None,
                decision: "final",
            });
        }
        serde_json::to_string(&steps).unwrap_or_default()
    }
}
