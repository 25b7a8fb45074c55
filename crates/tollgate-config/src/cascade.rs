//! `models.ALIAS.cascade`: try a cheap tier first and escalate to the next only when the
//! scorers find its answer unsure. Also parses a cascade that a routing script returns, with
//! the same rules and messages.

use crate::locate::ConfigPath;
use crate::types::Target;
use serde::Deserialize;
use std::path::PathBuf;

/// `[models.ALIAS.cascade]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCascade {
    /// Tiers, cheapest first; the last one's answer is final.
    pub tiers: Vec<RawTier>,
    /// Streaming clients: buffer the earlier tiers and re-emit an accepted answer as SSE
    /// (`true`, the default), or send streams straight to the last tier (`false`).
    pub stream_first_tier: Option<bool>,
}

/// One tier as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTier {
    /// Model aliases or `provider/model` ids, tried in order (the tier's failover).
    pub targets: Vec<String>,
    /// How sure its answer looks. Every tier but the last needs at least one.
    #[serde(default)]
    pub scorers: Vec<RawScorer>,
    /// Answers scoring below this escalate to the next tier (0..=1).
    pub threshold: Option<f64>,
    /// How the scorers' scores combine: `min` (default), `mean` or `weighted` (mean by each
    /// scorer's `weight`).
    pub combine: Option<String>,
    /// Request changes for this tier only.
    #[serde(default)]
    pub overrides: RawOverrides,
}

/// Request changes for one tier.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOverrides {
    /// A lower output cap (a client's lower cap still wins).
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Ask the provider for token log-probabilities (the `logprobs` scorer turns this on).
    pub logprobs: Option<bool>,
}

/// One scorer as written: `kind` says which, the other fields are its settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScorer {
    /// `logprobs`, `json_schema`, `refusal`, `self_report`, `rhai`, `plugin` or `judge`.
    pub kind: String,
    /// Weight with `combine = "weighted"`. Default 1.
    pub weight: Option<f64>,
    /// logprobs: `mean` (default: the geometric-mean token probability), `min` (the least
    /// likely token's probability) or `fraction` (the share of tokens at or above `floor`).
    pub measure: Option<String>,
    /// logprobs with `measure = "fraction"`: the log-probability a confident token reaches.
    pub floor: Option<f64>,
    /// refusal: phrases that mark hedging or refusing (case-insensitive); default a built-in
    /// English list.
    pub phrases: Option<Vec<String>>,
    /// refusal: what each phrase found takes off the score. Default 0.5.
    pub penalty: Option<f64>,
    /// self_report: the instruction added to the tier's prompt.
    pub instruction: Option<String>,
    /// self_report: the score of an answer without a confidence tag. Default 0.
    pub missing: Option<f64>,
    /// rhai: the script whose `on_response(req, resp, ctx)` scores (relative to the config
    /// file); default the model's routing script.
    pub script: Option<String>,
    /// plugin: the plugin whose `score` hook scores; default every scoring plugin of the
    /// model (the lowest score counts).
    pub plugin: Option<String>,
    /// judge: the model alias that grades the answer.
    pub model: Option<String>,
    /// judge: the grading instructions.
    pub rubric: Option<String>,
}

/// A validated cascade.
#[derive(Debug, Clone, PartialEq)]
pub struct Cascade {
    /// Tiers, cheapest first.
    pub tiers: Vec<Tier>,
    /// Whether streaming clients go through the earlier tiers (buffered).
    pub stream_first_tier: bool,
}

/// A validated tier.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    /// What the tier's targets were written as (for logs and the ledger).
    pub name: String,
    /// Its targets, in order.
    pub targets: Vec<Target>,
    /// Its scorers (none on the last tier).
    pub scorers: Vec<Scorer>,
    /// Accept at or above this combined score.
    pub threshold: f64,
    /// How scores combine.
    pub combine: Combine,
    /// Output cap for this tier.
    pub max_tokens: Option<u32>,
    /// Temperature for this tier.
    pub temperature: Option<f64>,
    /// Whether to ask for log-probabilities.
    pub logprobs: bool,
}

/// How a tier's scores combine into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// The lowest.
    Min,
    /// The plain mean.
    Mean,
    /// The mean weighted by each scorer's `weight`.
    Weighted,
}

/// One validated scorer.
#[derive(Debug, Clone, PartialEq)]
pub struct Scorer {
    /// What it measures.
    pub kind: ScorerKind,
    /// Its weight.
    pub weight: f64,
}

/// Which log-probability statistic the `logprobs` scorer reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LogprobMeasure {
    /// exp(mean log-probability).
    Mean,
    /// exp(least log-probability).
    Min,
    /// The share of tokens with a log-probability of at least `floor`.
    Fraction {
        /// The floor.
        floor: f64,
    },
}

/// The default self-report instruction. The confidence tag it asks for is parsed and removed.
pub const SELF_REPORT_INSTRUCTION: &str = "After your answer, on a line of its own, rate how \
     confident you are that the answer is correct, from 0 to 1, as <confidence>0.NN</confidence>.";

/// The default judge rubric.
pub const JUDGE_RUBRIC: &str = "You grade answers. Given a conversation and an answer to its \
     last message, reply with only a number from 0 to 1: how likely the answer is correct, \
     complete and helpful.";

/// Phrases of an unsure or refusing answer, matched case-insensitively.
pub const REFUSAL_PHRASES: [&str; 14] = [
    "i'm not sure",
    "i am not sure",
    "not certain",
    "i don't know",
    "i do not know",
    "i can't",
    "i cannot",
    "i'm unable",
    "i am unable",
    "as an ai",
    "i apologize",
    "i'm sorry",
    "it's unclear",
    "hard to say",
];

/// What a scorer measures.
#[derive(Debug, Clone, PartialEq)]
pub enum ScorerKind {
    /// Token log-probabilities.
    Logprobs(LogprobMeasure),
    /// Whether the answer validates against the request's `response_format` schema.
    JsonSchema,
    /// Hedging and refusal phrases.
    Refusal {
        /// Lower-cased phrases.
        phrases: Vec<String>,
        /// Taken off per phrase found.
        penalty: f64,
    },
    /// The model's own confidence tag.
    SelfReport {
        /// Added to the tier's prompt.
        instruction: String,
        /// The score without a tag.
        missing: f64,
    },
    /// A Rhai script's `on_response`.
    Rhai {
        /// The script (`None`: the model's routing script).
        script: Option<PathBuf>,
    },
    /// Plugins' `score` hook.
    Plugin {
        /// One plugin, or every scoring plugin of the model.
        name: Option<String>,
    },
    /// A grading call to another model.
    Judge {
        /// The judge's model alias.
        model: String,
        /// Its instructions.
        rubric: String,
    },
}

impl ScorerKind {
    /// The kind's name, as in the config and the metrics.
    pub fn name(&self) -> &'static str {
        match self {
            ScorerKind::Logprobs(_) => "logprobs",
            ScorerKind::JsonSchema => "json_schema",
            ScorerKind::Refusal { .. } => "refusal",
            ScorerKind::SelfReport { .. } => "self_report",
            ScorerKind::Rhai { .. } => "rhai",
            ScorerKind::Plugin { .. } => "plugin",
            ScorerKind::Judge { .. } => "judge",
        }
    }
}

impl Cascade {
    /// Every target of every tier, once each (what prices and budgets must cover).
    pub fn all_targets(&self) -> Vec<Target> {
        let mut all: Vec<Target> = Vec::new();
        for t in self.tiers.iter().flat_map(|t| &t.targets) {
            if !all.contains(t) {
                all.push(t.clone());
            }
        }
        all
    }

    /// The judges' model aliases.
    pub fn judges(&self) -> impl Iterator<Item = &str> {
        self.tiers
            .iter()
            .flat_map(|t| &t.scorers)
            .filter_map(|s| match &s.kind {
                ScorerKind::Judge { model, .. } => Some(model.as_str()),
                _ => None,
            })
    }

    /// The scripts its `rhai` scorers name.
    pub fn scripts(&self) -> impl Iterator<Item = &PathBuf> {
        self.tiers
            .iter()
            .flat_map(|t| &t.scorers)
            .filter_map(|s| match &s.kind {
                ScorerKind::Rhai { script } => script.as_ref(),
                _ => None,
            })
    }
}

/// What validating a cascade needs from around it.
pub struct Context<'a> {
    /// Resolves a tier target (an alias or `provider/model`) to targets, or says why not.
    pub resolve: &'a dyn Fn(&str) -> Result<Vec<Target>, String>,
    /// Whether a model alias exists (for judges).
    pub has_model: &'a dyn Fn(&str) -> bool,
    /// Resolves a script path written in the cascade (`None`: scripts are not allowed here).
    pub script_path: Option<&'a dyn Fn(&str) -> PathBuf>,
}

/// Checks `raw`, reporting each problem with its path under `path`.
pub fn check(
    raw: &RawCascade,
    path: &ConfigPath,
    cx: &Context<'_>,
    error: &mut dyn FnMut(&ConfigPath, String),
) -> Cascade {
    if raw.tiers.len() < 2 {
        error(
            &path.key("tiers"),
            "a cascade needs at least two tiers (the last one's answer is final)".to_owned(),
        );
    }
    let last = raw.tiers.len().saturating_sub(1);
    let tiers = raw
        .tiers
        .iter()
        .enumerate()
        .map(|(i, t)| check_tier(t, i == last, &path.key("tiers").index(i), cx, error))
        .collect();
    Cascade {
        tiers,
        stream_first_tier: raw.stream_first_tier.unwrap_or(true),
    }
}

fn check_tier(
    t: &RawTier,
    is_last: bool,
    path: &ConfigPath,
    cx: &Context<'_>,
    error: &mut dyn FnMut(&ConfigPath, String),
) -> Tier {
    let mut targets: Vec<Target> = Vec::new();
    if t.targets.is_empty() {
        error(
            &path.key("targets"),
            "a tier needs at least one target".to_owned(),
        );
    }
    for (i, name) in t.targets.iter().enumerate() {
        match (cx.resolve)(name) {
            Ok(resolved) => {
                for r in resolved {
                    if !targets.contains(&r) {
                        targets.push(r);
                    }
                }
            }
            Err(why) => error(&path.key("targets").index(i), why),
        }
    }
    if is_last && !t.scorers.is_empty() {
        error(
            &path.key("scorers"),
            "the last tier's answer is final: it takes no scorers".to_owned(),
        );
    }
    if !is_last && t.scorers.is_empty() {
        error(
            &path.key("scorers"),
            "every tier but the last needs a scorer to decide when to escalate".to_owned(),
        );
    }
    let threshold = match t.threshold {
        Some(x) if x <= 0.0 && !is_last => {
            error(
                &path.key("threshold"),
                "must be above 0 (a tier that keeps every answer is a plain model)".to_owned(),
            );
            0.5
        }
        Some(x) if (0.0..=1.0).contains(&x) => x,
        Some(x) => {
            error(
                &path.key("threshold"),
                format!("must be within 0..=1, not {x}"),
            );
            0.5
        }
        None if !is_last => {
            error(
                &path.key("threshold"),
                "set the score (0..=1) below which answers escalate".to_owned(),
            );
            0.5
        }
        None => 0.0,
    };
    let combine = match t.combine.as_deref() {
        None | Some("min") => Combine::Min,
        Some("mean") => Combine::Mean,
        Some("weighted") => Combine::Weighted,
        Some(other) => {
            error(
                &path.key("combine"),
                format!("expected \"min\", \"mean\" or \"weighted\", not {other:?}"),
            );
            Combine::Min
        }
    };
    let scorers: Vec<Scorer> = t
        .scorers
        .iter()
        .enumerate()
        .filter_map(|(i, s)| check_scorer(s, &path.key("scorers").index(i), cx, error))
        .collect();
    if let Some(x) = t.overrides.temperature
        && !(0.0..=2.0).contains(&x)
    {
        error(
            &path.key("overrides").key("temperature"),
            format!("must be within 0..=2, not {x}"),
        );
    }
    if is_last && t.overrides.logprobs == Some(true) {
        error(
            &path.key("overrides").key("logprobs"),
            "the last tier's answer goes to the client as it comes: ask for logprobs in the \
             request instead"
                .to_owned(),
        );
    }
    if t.overrides.max_tokens == Some(0) {
        error(
            &path.key("overrides").key("max_tokens"),
            "must be at least 1".to_owned(),
        );
    }
    let needs_logprobs = scorers
        .iter()
        .any(|s| matches!(s.kind, ScorerKind::Logprobs(_)));
    Tier {
        name: t.targets.join(","),
        targets,
        threshold,
        combine,
        max_tokens: t.overrides.max_tokens,
        temperature: t.overrides.temperature,
        logprobs: t.overrides.logprobs.unwrap_or(false) || needs_logprobs,
        scorers,
    }
}

fn check_scorer(
    s: &RawScorer,
    path: &ConfigPath,
    cx: &Context<'_>,
    error: &mut dyn FnMut(&ConfigPath, String),
) -> Option<Scorer> {
    // Settings that belong to another kind are mistakes, not silently ignored.
    let settings: [(&str, bool, &[&str]); 9] = [
        ("measure", s.measure.is_some(), &["logprobs"]),
        ("floor", s.floor.is_some(), &["logprobs"]),
        ("phrases", s.phrases.is_some(), &["refusal"]),
        ("penalty", s.penalty.is_some(), &["refusal"]),
        ("instruction", s.instruction.is_some(), &["self_report"]),
        ("missing", s.missing.is_some(), &["self_report"]),
        ("script", s.script.is_some(), &["rhai"]),
        ("plugin", s.plugin.is_some(), &["plugin"]),
        ("rubric", s.rubric.is_some(), &["judge"]),
    ];
    for (field, set, kinds) in settings {
        if set && !kinds.contains(&s.kind.as_str()) {
            error(
                &path.key(field),
                format!(
                    "`{field}` is a setting of the {} scorer, not of {:?}",
                    kinds[0], s.kind
                ),
            );
        }
    }
    if s.model.is_some() && s.kind != "judge" {
        error(
            &path.key("model"),
            format!(
                "`model` is a setting of the judge scorer, not of {:?}",
                s.kind
            ),
        );
    }
    let unit =
        |field: &str, v: Option<f64>, default: f64, error: &mut dyn FnMut(&ConfigPath, String)| {
            match v {
                Some(x) if (0.0..=1.0).contains(&x) => x,
                Some(x) => {
                    error(&path.key(field), format!("must be within 0..=1, not {x}"));
                    default
                }
                None => default,
            }
        };
    let kind = match s.kind.as_str() {
        "logprobs" => {
            let measure = match s.measure.as_deref() {
                None | Some("mean") => LogprobMeasure::Mean,
                Some("min") => LogprobMeasure::Min,
                Some("fraction") => LogprobMeasure::Fraction {
                    floor: match s.floor {
                        Some(f) if f <= 0.0 => f,
                        Some(f) => {
                            error(
                                &path.key("floor"),
                                format!("a log-probability is at most 0, not {f}"),
                            );
                            -1.0
                        }
                        None => -1.0,
                    },
                },
                Some(other) => {
                    error(
                        &path.key("measure"),
                        format!("expected \"mean\", \"min\" or \"fraction\", not {other:?}"),
                    );
                    LogprobMeasure::Mean
                }
            };
            if s.floor.is_some() && !matches!(measure, LogprobMeasure::Fraction { .. }) {
                error(
                    &path.key("floor"),
                    "`floor` goes with measure = \"fraction\"".to_owned(),
                );
            }
            ScorerKind::Logprobs(measure)
        }
        "json_schema" => ScorerKind::JsonSchema,
        "refusal" => ScorerKind::Refusal {
            phrases: s.phrases.as_ref().map_or_else(
                || REFUSAL_PHRASES.iter().map(|p| (*p).to_owned()).collect(),
                |p| p.iter().map(|x| x.to_lowercase()).collect(),
            ),
            penalty: unit("penalty", s.penalty, 0.5, error),
        },
        "self_report" => ScorerKind::SelfReport {
            instruction: s
                .instruction
                .clone()
                .unwrap_or_else(|| SELF_REPORT_INSTRUCTION.to_owned()),
            missing: unit("missing", s.missing, 0.0, error),
        },
        "rhai" => ScorerKind::Rhai {
            script: match (&s.script, cx.script_path) {
                (Some(p), Some(resolve)) => Some(resolve(p)),
                (Some(_), None) => {
                    error(
                        &path.key("script"),
                        "a script's own cascade scores with that script: name no other".to_owned(),
                    );
                    None
                }
                (None, _) => None,
            },
        },
        "plugin" => ScorerKind::Plugin {
            name: s.plugin.clone(),
        },
        "judge" => {
            let model = s.model.clone().unwrap_or_default();
            if model.is_empty() {
                error(
                    &path.key("model"),
                    "name the model alias that judges".to_owned(),
                );
            } else if !(cx.has_model)(&model) {
                error(&path.key("model"), format!("unknown model alias {model:?}"));
            }
            ScorerKind::Judge {
                model,
                rubric: s.rubric.clone().unwrap_or_else(|| JUDGE_RUBRIC.to_owned()),
            }
        }
        other => {
            error(
                &path.key("kind"),
                format!(
                    "unknown scorer {other:?} (expected logprobs, json_schema, refusal, \
                     self_report, rhai, plugin or judge)"
                ),
            );
            return None;
        }
    };
    let weight = match s.weight {
        Some(w) if w > 0.0 && w.is_finite() => w,
        Some(w) => {
            error(&path.key("weight"), format!("must be above 0, not {w}"));
            1.0
        }
        None => 1.0,
    };
    Some(Scorer { kind, weight })
}

/// Parses a cascade a routing script returned (as JSON), with the config's rules; the error
/// names the field (`cascade.tiers[0].threshold: ...`).
pub fn from_decision(value: serde_json::Value, cx: &Context<'_>) -> Result<Cascade, String> {
    let raw: RawCascade = match value {
        // `cascade: [tier, tier]` is short for `cascade: #{ tiers: [tier, tier] }`.
        serde_json::Value::Array(tiers) => RawCascade {
            tiers: serde_json::from_value(serde_json::Value::Array(tiers))
                .map_err(|e| format!("cascade: {e}"))?,
            stream_first_tier: None,
        },
        other => serde_json::from_value(other).map_err(|e| format!("cascade: {e}"))?,
    };
    let mut errors = Vec::new();
    let cascade = check(
        &raw,
        &ConfigPath::default().key("cascade"),
        cx,
        &mut |p, m| errors.push(format!("{p}: {m}")),
    );
    if errors.is_empty() {
        Ok(cascade)
    } else {
        Err(errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx_check(v: serde_json::Value) -> Result<Cascade, String> {
        let resolve = |name: &str| -> Result<Vec<Target>, String> {
            match name {
                "cheap" | "strong" => Ok(vec![Target {
                    provider: "p".into(),
                    model: name.into(),
                    weight: None,
                }]),
                other => Err(format!("unknown target {other:?}")),
            }
        };
        let cx = Context {
            resolve: &resolve,
            has_model: &|m| m == "judge",
            script_path: None,
        };
        from_decision(v, &cx)
    }

    #[test]
    fn a_two_tier_cascade_parses_with_defaults() {
        let c = cx_check(serde_json::json!([
            {"targets": ["cheap"], "threshold": 0.6, "scorers": [{"kind": "logprobs"}]},
            {"targets": ["strong"]}
        ]))
        .expect("valid");
        assert_eq!(c.tiers.len(), 2);
        assert!(c.tiers[0].logprobs, "the logprobs scorer asks for logprobs");
        assert!(!c.tiers[1].logprobs);
        assert_eq!(c.tiers[0].combine, Combine::Min);
        assert!(c.stream_first_tier);
    }

    #[test]
    fn mistakes_name_their_field() {
        let e = cx_check(serde_json::json!([
            {"targets": ["cheap"], "scorers": [{"kind": "logprobs", "penalty": 0.2}]},
            {"targets": ["nope"], "scorers": [{"kind": "refusal"}]}
        ]))
        .expect_err("invalid");
        assert!(e.contains("cascade.tiers[0].threshold"), "{e}");
        assert!(e.contains("cascade.tiers[0].scorers[0].penalty"), "{e}");
        assert!(
            e.contains("cascade.tiers[1].targets[0]: unknown target"),
            "{e}"
        );
        assert!(e.contains("cascade.tiers[1].scorers: the last tier"), "{e}");
    }

    #[test]
    fn judges_must_exist() {
        let e = cx_check(serde_json::json!([
            {"targets": ["cheap"], "threshold": 0.5, "scorers": [{"kind": "judge", "model": "x"}]},
            {"targets": ["strong"]}
        ]))
        .expect_err("invalid");
        assert!(e.contains("unknown model alias \"x\""), "{e}");
    }
}
