//! `[[guardrails]]`: built-in guardrails, validated. `tollgate-guard` compiles them.

use crate::locate::ConfigPath;
use crate::raw::RawConfig;
use crate::validate::Checker;
use std::collections::HashSet;

/// The PII kinds a `pii` guardrail can look for.
pub const PII_KINDS: [&str; 6] = ["email", "phone", "credit_card", "iban", "ssn", "api_key"];

/// What a guardrail looks for.
#[derive(Debug, Clone, PartialEq)]
pub enum GuardKind {
    /// These PII kinds (all when empty).
    Pii(Vec<String>),
    /// Words that may not appear.
    Keywords(Vec<String>),
    /// Topics a request must touch on.
    Topics(Vec<String>),
    /// Prompt injection from this score.
    Injection(f32),
    /// A cap on prompt tokens.
    MaxPromptTokens(u64),
    /// Answers must match the request's JSON schema; `true`: one repair retry.
    JsonSchema(bool),
}

/// One validated `[[guardrails]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardrailConfig {
    /// Its name.
    pub name: String,
    /// What it looks for.
    pub kind: GuardKind,
    /// `true`: redact; `false`: deny.
    pub redact: bool,
    /// Looks at requests.
    pub on_request: bool,
    /// Looks at answers.
    pub on_response: bool,
    /// Model aliases; `None`: all.
    pub models: Option<Vec<String>>,
}

pub(crate) fn check_guardrails(
    raw: &RawConfig,
    path: &ConfigPath,
    ck: &mut Checker<'_>,
) -> Vec<GuardrailConfig> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, g) in raw.guardrails.iter().enumerate() {
        let gp = path.index(i);
        if !names.insert(g.name.clone()) {
            ck.error(
                &gp.key("name"),
                format!("two guardrails are named {:?}", g.name),
            );
        }
        let mut words = || {
            let words = g.words.clone().unwrap_or_default();
            if words.iter().all(|w| w.trim().is_empty()) {
                ck.error(&gp.key("words"), "list at least one word or phrase");
            }
            words
        };
        let kind = match g.kind.as_str() {
            "pii" => {
                let detect = g.detect.clone().unwrap_or_default();
                for d in &detect {
                    if !PII_KINDS.contains(&d.as_str()) {
                        ck.error(
                            &gp.key("detect"),
                            format!(
                                "unknown kind {d:?}: expected one of {}",
                                PII_KINDS.join(", ")
                            ),
                        );
                    }
                }
                GuardKind::Pii(detect)
            }
            "keywords" => GuardKind::Keywords(words()),
            "topics" => GuardKind::Topics(words()),
            "injection" => {
                let t = g.threshold.unwrap_or(0.5);
                if !(t > 0.0 && t <= 1.0) {
                    ck.error(&gp.key("threshold"), "must be above 0 and at most 1");
                }
                GuardKind::Injection(t)
            }
            "max_prompt_tokens" => match g.max_tokens {
                Some(n) if n > 0 => GuardKind::MaxPromptTokens(n),
                _ => {
                    ck.error(&gp, "set `max_tokens` to a whole number above 0");
                    GuardKind::MaxPromptTokens(1)
                }
            },
            "json_schema" => GuardKind::JsonSchema(g.repair.unwrap_or(false)),
            other => {
                ck.error(
                    &gp.key("kind"),
                    format!(
                        "unknown kind {other:?}: expected pii, keywords, topics, injection, max_prompt_tokens or json_schema"
                    ),
                );
                continue;
            }
        };
        if g.repair.is_some() && !matches!(kind, GuardKind::JsonSchema(_)) {
            ck.error(&gp.key("repair"), "only json_schema guardrails repair");
        }
        let is_schema = matches!(kind, GuardKind::JsonSchema(_));
        if is_schema && (g.apply_to.is_some() || g.action.is_some()) {
            ck.error(
                &gp,
                "a json_schema guardrail checks complete answers and refuses (or repairs): drop `apply_to` and `action`",
            );
        }
        let can_redact = matches!(kind, GuardKind::Pii(_) | GuardKind::Keywords(_));
        let redact = match g.action.as_deref() {
            None => matches!(kind, GuardKind::Pii(_)),
            Some("deny") => false,
            Some("redact") if can_redact => true,
            Some("redact") => {
                ck.error(
                    &gp.key("action"),
                    "only pii and keywords guardrails can redact",
                );
                false
            }
            Some(_) => {
                ck.error(&gp.key("action"), "expected `deny` or `redact`");
                false
            }
        };
        let (mut on_request, mut on_response) = (true, can_redact);
        if let Some(apply_to) = &g.apply_to {
            on_request = apply_to.iter().any(|a| a == "request");
            on_response = apply_to.iter().any(|a| a == "response");
            if apply_to.iter().any(|a| a != "request" && a != "response") || apply_to.is_empty() {
                ck.error(
                    &gp.key("apply_to"),
                    "expected `request`, `response` or both",
                );
            } else if on_response && !can_redact {
                ck.error(
                    &gp.key("apply_to"),
                    "topics, injection and max_prompt_tokens look at requests only",
                );
            }
        }
        if let Some(models) = &g.models {
            for m in models {
                if !raw.models.contains_key(m) {
                    ck.error(&gp.key("models"), format!("unknown model {m:?}"));
                }
            }
        }
        if is_schema {
            // Checked by the proxy on complete answers, apart from the text checks.
            (on_request, on_response) = (false, false);
        }
        out.push(GuardrailConfig {
            name: g.name.clone(),
            kind,
            redact,
            on_request,
            on_response,
            models: g.models.clone(),
        });
    }
    out
}
