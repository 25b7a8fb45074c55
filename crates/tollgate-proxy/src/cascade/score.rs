//! Scorers: how sure an earlier tier's answer looks, from 0 (escalate) to 1.
//!
//! Each scorer gives a score or abstains (`None`: it has nothing to judge, such as no
//! log-probabilities in the answer); the tier combines the scores it got. A tier whose every
//! scorer abstained scores 0 and escalates: unsure unless shown otherwise.

use super::{Captured, Upstream};
use crate::context::{Prior, RequestCtx};
use pingora::proxy::Session;
use serde_json::Value;
use tollgate_config::cascade::{Combine, LogprobMeasure, ScorerKind, Tier};
use tollgate_guard::schema::OutputSchema;
use tollgate_types::{ChatRequest, Message};

/// The tier being scored, and where.
#[derive(Clone, Copy)]
pub struct TierAt<'a> {
    /// The way upstream (for judges).
    pub up: &'a Upstream<'a>,
    /// The client's request.
    pub req: &'a ChatRequest,
    /// The tier.
    pub tier: &'a Tier,
    /// Its number, 1-based.
    pub number: usize,
}

/// A tier's verdict on an answer.
#[derive(Debug, Clone)]
pub struct Scored {
    /// The combined score.
    pub score: f64,
    /// The scorer with the lowest score (what escalations are counted by).
    pub decisive: &'static str,
    /// Each scorer's own score.
    pub parts: Vec<(&'static str, Option<f64>)>,
}

impl Scored {
    /// The provider refused the request: nothing to score.
    pub fn refused() -> Scored {
        Scored {
            score: 0.0,
            decisive: "status",
            parts: Vec::new(),
        }
    }
}

/// Scores `captured`, removing a self-reported confidence tag from its text. A judge's cost
/// is added to `spent`.
pub async fn score(
    session: &mut Session,
    ctx: &mut RequestCtx,
    at: &TierAt<'_>,
    captured: &mut Captured,
    spent: &mut Prior,
) -> Scored {
    let TierAt { up, req, tier, .. } = *at;
    let mut parts: Vec<(&'static str, Option<f64>, f64)> = Vec::with_capacity(tier.scorers.len());
    // Scripts run last: they see the other scorers' combined score.
    let mut scripted = Vec::new();
    for s in &tier.scorers {
        let value = match &s.kind {
            ScorerKind::Logprobs(_)
            | ScorerKind::JsonSchema
            | ScorerKind::Refusal { .. }
            | ScorerKind::SelfReport { .. } => local(&s.kind, req, &mut captured.json),
            ScorerKind::Plugin { name } => plugin(ctx, captured, name.as_deref()).await,
            ScorerKind::Judge { model, rubric } => {
                judge(session, ctx, up, req, captured, model, rubric, spent).await
            }
            ScorerKind::Rhai { script } => {
                scripted.push((script, s.weight));
                continue;
            }
        };
        parts.push((s.kind.name(), value, s.weight));
    }
    for (script, weight) in scripted {
        let others = combine(tier.combine, &parts).0;
        let value = super::scripted::score(session, ctx, at, captured, script.as_ref(), others);
        parts.push(("rhai", value, weight));
    }
    let (score, decisive) = combine(tier.combine, &parts);
    Scored {
        score: score.unwrap_or(0.0),
        decisive,
        parts: parts.into_iter().map(|(k, v, _)| (k, v)).collect(),
    }
}

/// The scorers that need nothing but the request and the answer (an OpenAI
/// `chat.completion`): `logprobs`, `json_schema`, `refusal`, `self_report` (which removes the
/// confidence tag from `answer`). `None` for the others, and when one abstains.
pub fn local(kind: &ScorerKind, req: &ChatRequest, answer: &mut Value) -> Option<f64> {
    match kind {
        ScorerKind::Logprobs(measure) => logprobs(answer, *measure),
        ScorerKind::JsonSchema => json_schema(req, answer),
        ScorerKind::Refusal { phrases, penalty } => refusal(answer, phrases, *penalty),
        ScorerKind::SelfReport { missing, .. } => Some(self_report(answer).unwrap_or(*missing)),
        ScorerKind::Rhai { .. } | ScorerKind::Plugin { .. } | ScorerKind::Judge { .. } => None,
    }
}

/// The combined score and the lowest-scoring scorer; 0 when every scorer abstained.
fn combine(
    how: Combine,
    parts: &[(&'static str, Option<f64>, f64)],
) -> (Option<f64>, &'static str) {
    let given: Vec<(&'static str, f64, f64)> = parts
        .iter()
        .filter_map(|(k, v, w)| v.map(|v| (*k, v, *w)))
        .collect();
    let Some(lowest) = given.iter().min_by(|a, b| a.1.total_cmp(&b.1)) else {
        return (None, "none");
    };
    let score = match how {
        Combine::Min => lowest.1,
        Combine::Mean => given.iter().map(|g| g.1).sum::<f64>() / given.len() as f64,
        Combine::Weighted => {
            let total: f64 = given.iter().map(|g| g.2).sum();
            given.iter().map(|g| g.1 * g.2).sum::<f64>() / total
        }
    };
    (Some(score.clamp(0.0, 1.0)), lowest.0)
}

/// The first choice's text, if it is text.
pub(super) fn answer_text(json: &Value) -> Option<&str> {
    json.pointer("/choices/0/message/content")?.as_str()
}

/// The first choice's token log-probabilities (empty without them).
pub(super) fn token_logprobs(json: &Value) -> Vec<f64> {
    json.pointer("/choices/0/logprobs/content")
        .and_then(Value::as_array)
        .map(|t| t.iter().filter_map(|x| x["logprob"].as_f64()).collect())
        .unwrap_or_default()
}

/// `exp(mean)` or `exp(min)` of the token log-probabilities, or the share at or above a floor.
fn logprobs(json: &Value, measure: LogprobMeasure) -> Option<f64> {
    let lps = token_logprobs(json);
    if lps.is_empty() {
        return None;
    }
    Some(match measure {
        LogprobMeasure::Mean => (lps.iter().sum::<f64>() / lps.len() as f64).exp(),
        LogprobMeasure::Min => lps.iter().copied().fold(0.0_f64, f64::min).exp(),
        LogprobMeasure::Fraction { floor } => {
            lps.iter().filter(|lp| **lp >= floor).count() as f64 / lps.len() as f64
        }
    })
}

/// 1 when the answer validates against the request's `json_schema` (or parses, for
/// `json_object`), 0 when not; abstains for other requests and for tool calls.
fn json_schema(req: &ChatRequest, json: &Value) -> Option<f64> {
    let text = answer_text(json)?;
    let pass = match OutputSchema::of_request(req) {
        Some(Ok(schema)) => schema.check(text).is_ok(),
        Some(Err(_)) => return None,
        None => {
            let kind = req
                .extra
                .get("response_format")
                .and_then(|f| f.get("type"))
                .and_then(Value::as_str);
            if kind != Some("json_object") {
                return None;
            }
            serde_json::from_str::<Value>(text.trim()).is_ok_and(|v| v.is_object())
        }
    };
    Some(if pass { 1.0 } else { 0.0 })
}

/// 1 less `penalty` for each hedging or refusal phrase found; 0 for the provider's own
/// refusal or a filtered answer.
fn refusal(json: &Value, phrases: &[String], penalty: f64) -> Option<f64> {
    let choice = json.pointer("/choices/0")?;
    if choice
        .pointer("/message/refusal")
        .is_some_and(|r| !r.is_null())
        || choice.get("finish_reason").and_then(Value::as_str) == Some("content_filter")
    {
        return Some(0.0);
    }
    let text = choice.pointer("/message/content")?.as_str()?.to_lowercase();
    let found = phrases.iter().filter(|p| text.contains(p.as_str())).count();
    Some((1.0 - penalty * found as f64).max(0.0))
}

/// The confidence the model reported as `<confidence>0.NN</confidence>` (a percentage is
/// read as one) in the first choice, with the tag removed from every choice.
pub(super) fn self_report(json: &mut Value) -> Option<f64> {
    let choices = json.get_mut("choices")?.as_array_mut()?;
    let mut first = None;
    for (i, choice) in choices.iter_mut().enumerate() {
        let Some(content) = choice.pointer_mut("/message/content") else {
            continue;
        };
        let Some((value, cleaned)) = content.as_str().and_then(strip_confidence) else {
            continue;
        };
        *content = Value::String(cleaned);
        if i == 0 {
            first = value;
        }
    }
    first
}

/// The value of the last confidence tag in `text` (if it parses) and `text` without it.
fn strip_confidence(text: &str) -> Option<(Option<f64>, String)> {
    let start = text.rfind("<confidence>")?;
    let rest = &text[start + "<confidence>".len()..];
    let end = rest.find("</confidence>")?;
    let raw = rest[..end].trim().trim_end_matches('%');
    let value = raw.parse::<f64>().ok().filter(|v| v.is_finite()).map(|v| {
        let v = if v > 1.0 && v <= 100.0 { v / 100.0 } else { v };
        v.clamp(0.0, 1.0)
    });
    let cleaned = format!(
        "{}{}",
        text[..start].trim_end(),
        &rest[end + "</confidence>".len()..]
    );
    Some((value, cleaned.trim_end().to_owned()))
}

/// The `score` hook of one plugin, or the lowest of the model's scoring plugins.
async fn plugin(ctx: &RequestCtx, captured: &Captured, name: Option<&str>) -> Option<f64> {
    let view = ctx.plugin_view.clone()?;
    let usage = captured.usage.unwrap_or_default();
    let resp = tollgate_plugins::types::Response {
        provider: captured.served_by.0.clone(),
        model: captured.served_by.1.clone(),
        text: answer_text(&captured.json).unwrap_or_default().to_owned(),
        finish_reason: captured
            .json
            .pointer("/choices/0/finish_reason")
            .and_then(Value::as_str)
            .map(str::to_owned),
        prompt_tokens: u32::try_from(usage.input_tokens).unwrap_or(u32::MAX),
        completion_tokens: u32::try_from(usage.output_tokens).unwrap_or(u32::MAX),
    };
    match ctx.state.plugins.score(&view, &resp, name).await {
        Ok(s) => s.map(|s| f64::from(s).clamp(0.0, 1.0)),
        // A fail-closed plugin that failed: the answer is not shown to be sure.
        Err(r) => {
            tracing::warn!(request_id = %ctx.request_id, plugin = %r.plugin,
                "A scoring plugin failed; the answer counts as unsure.");
            Some(0.0)
        }
    }
}

/// Asks the judge model to grade the answer; its cost is the request's.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site, each argument distinct"
)]
async fn judge(
    session: &mut Session,
    ctx: &mut RequestCtx,
    up: &Upstream<'_>,
    req: &ChatRequest,
    captured: &Captured,
    alias: &str,
    rubric: &str,
    spent: &mut Prior,
) -> Option<f64> {
    let state = ctx.state.clone();
    let model = state.model(alias)?;
    let mut transcript = String::new();
    for m in &req.messages {
        transcript.push_str(&format!("{}: {}\n", m.role, m.text()));
    }
    let answer = answer_text(&captured.json).unwrap_or_default();
    let ask = |role: &str, text: String| Message {
        role: role.to_owned(),
        content: text.into(),
        extra: serde_json::Map::new(),
    };
    let judge_req = ChatRequest {
        model: alias.to_owned(),
        messages: vec![
            ask("system", rubric.to_owned()),
            ask(
                "user",
                format!("Conversation:\n{transcript}\nAnswer to grade:\n{answer}"),
            ),
        ],
        stream: None,
        stream_options: None,
        max_tokens: Some(16),
        max_completion_tokens: None,
        user: None,
        extra: serde_json::Map::new(),
    };
    let plan = crate::failover::Plan {
        targets: state.attempt_order(model, up.health),
        retries: up.retries,
        deadline: up.deadline,
    };
    let graded = up.ask(session, ctx, judge_req, plan).await;
    let graded = match graded {
        Ok(g) => g,
        Err(why) => {
            tracing::warn!(request_id = %ctx.request_id, judge = alias, error = %why,
                "The judge did not answer; the answer counts as unsure.");
            return Some(0.0);
        }
    };
    spent.add(graded.usage, graded.cost);
    let reply = answer_text(&graded.json).unwrap_or_default();
    Some(first_grade(reply).unwrap_or(0.0))
}

/// The first number in a judge's reply, as a grade in 0..=1 (`7/10` and `85%` are read too).
pub(super) fn first_grade(reply: &str) -> Option<f64> {
    let start = reply.find(|c: char| c.is_ascii_digit())?;
    let rest = &reply[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let value: f64 = rest[..end].trim_end_matches('.').parse().ok()?;
    let after = rest[end..].trim_start();
    let value = if after.starts_with('%') {
        value / 100.0
    } else if let Some(scale) = after
        .strip_prefix('/')
        .and_then(|d| d.trim().split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|d| d.parse::<f64>().ok())
        .filter(|d| *d > 0.0)
    {
        value / scale
    } else if value > 1.0 && value <= 10.0 {
        value / 10.0
    } else if value > 10.0 && value <= 100.0 {
        value / 100.0
    } else {
        value
    };
    Some(value.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(text: &str) -> Value {
        json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
            "finish_reason": "stop"}]})
    }

    #[test]
    fn logprob_measures() {
        let json = json!({"choices": [{"logprobs": {"content": [
            {"token": "a", "logprob": -0.1}, {"token": "b", "logprob": -0.3},
            {"token": "c", "logprob": -2.0}]}}]});
        let mean = logprobs(&json, LogprobMeasure::Mean).expect("mean");
        assert!((mean - (-0.8_f64).exp()).abs() < 1e-9, "{mean}");
        let min = logprobs(&json, LogprobMeasure::Min).expect("min");
        assert!((min - (-2.0_f64).exp()).abs() < 1e-9, "{min}");
        let frac = logprobs(&json, LogprobMeasure::Fraction { floor: -0.5 }).expect("fraction");
        assert!((frac - 2.0 / 3.0).abs() < 1e-9, "{frac}");
        assert_eq!(logprobs(&answer("x"), LogprobMeasure::Mean), None);
    }

    #[test]
    fn self_report_is_read_and_removed() {
        let mut json = answer("Paris is the capital.\n<confidence>0.85</confidence>");
        assert_eq!(self_report(&mut json), Some(0.85));
        assert_eq!(answer_text(&json), Some("Paris is the capital."));
        let mut pct = answer("Yes. <confidence>90%</confidence>");
        assert_eq!(self_report(&mut pct), Some(0.9));
        let mut none = answer("No tag here.");
        assert_eq!(self_report(&mut none), None);
        let mut two = json!({"choices": [
            {"message": {"content": "A <confidence>0.4</confidence>"}},
            {"message": {"content": "B <confidence>0.9</confidence>"}}]});
        assert_eq!(self_report(&mut two), Some(0.4));
        assert_eq!(two["choices"][1]["message"]["content"], "B");
        assert_eq!(answer_text(&none), Some("No tag here."));
    }

    #[test]
    fn refusal_phrases_lower_the_score() {
        let phrases: Vec<String> = tollgate_config::cascade::REFUSAL_PHRASES
            .iter()
            .map(|p| (*p).to_owned())
            .collect();
        assert_eq!(refusal(&answer("Paris."), &phrases, 0.5), Some(1.0));
        assert_eq!(
            refusal(&answer("I'm not sure, but I think Lyon."), &phrases, 0.5),
            Some(0.5)
        );
        assert_eq!(
            refusal(
                &answer("I'm sorry, I cannot help. I'm not sure."),
                &phrases,
                0.5
            ),
            Some(0.0)
        );
    }

    #[test]
    fn grades_are_read_on_any_scale() {
        assert_eq!(first_grade("0.8"), Some(0.8));
        assert_eq!(first_grade("Score: 7/10"), Some(0.7));
        assert_eq!(first_grade("85%"), Some(0.85));
        assert_eq!(first_grade("9"), Some(0.9));
        assert_eq!(first_grade("no idea"), None);
    }

    #[test]
    fn combining_scores() {
        let parts = [
            ("a", Some(0.9), 1.0),
            ("b", Some(0.3), 3.0),
            ("c", None, 1.0),
        ];
        assert_eq!(combine(Combine::Min, &parts), (Some(0.3), "b"));
        let (mean, _) = combine(Combine::Mean, &parts);
        assert!((mean.expect("mean") - 0.6).abs() < 1e-9);
        let (weighted, _) = combine(Combine::Weighted, &parts);
        assert!((weighted.expect("weighted") - 0.45).abs() < 1e-9);
        assert_eq!(combine(Combine::Min, &[("a", None, 1.0)]), (None, "none"));
    }
}
