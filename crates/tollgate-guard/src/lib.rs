//! Built-in guardrails, native Rust, applied to requests before they are routed and to
//! answers before the client sees them:
//!
//! - [`pii`]: personal data and secrets (e-mail, phone, payment card with Luhn, IBAN, SSN,
//!   API keys), denied or redacted;
//! - [`keywords`]: a deny list of words and phrases, or an allow list of topics;
//! - [`injection`]: a scored prompt-injection heuristic;
//! - a cap on prompt tokens;
//! - [`schema`]: answers to `json_schema` requests must match the schema.
//!
//! A [`Guardrails`] set is compiled once per config version (regexes and automata built
//! once) and shared by every request on it. Streams are checked incrementally by
//! [`StreamCheck`], with a carry-over window so a match split across chunks is still caught.
//!
//! Which messages are looked at: every role but `system` and `developer` (those are the
//! operator's own words, not the user's). Text parts of multi-part contents are checked and
//! redacted each on their own.

pub mod injection;
pub mod keywords;
pub mod pii;
pub mod schema;
mod stream;

pub use stream::{StreamCheck, StreamVerdict};

use serde_json::Value;
use tollgate_types::ChatRequest;

/// What a guardrail does when it finds something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Refuse the request (or the answer).
    Deny,
    /// Replace what was found (`[EMAIL]`, `[REDACTED]`) and go on.
    Redact,
}

/// What a guardrail looks for.
#[derive(Debug, Clone)]
pub enum Check {
    /// Personal data and secrets.
    Pii(pii::PiiDetector),
    /// Words that may not appear.
    DenyWords(keywords::WordList),
    /// Topics a request must touch on (at least one).
    AllowTopics(keywords::WordList),
    /// Prompt injection, refused from this score (0 to 1).
    Injection(injection::InjectionDetector, f32),
    /// At most this many prompt tokens (estimated: a quarter of the text's bytes).
    MaxPromptTokens(u64),
    /// Answers to requests with a `json_schema` response format must match it; with
    /// `repair`, a failing answer is sent back to the model once to be fixed. Checked by the
    /// caller on complete answers ([`Guardrails::output_schema`]), not by the text checks.
    JsonSchema {
        /// Ask the model once to repair a failing answer.
        repair: bool,
    },
}

/// One configured guardrail.
#[derive(Debug, Clone)]
pub struct Guardrail {
    /// Its name, in errors, logs and metrics.
    pub name: String,
    /// What it looks for.
    pub check: Check,
    /// What it does then (checks that cannot redact always deny).
    pub action: Action,
    /// Whether it looks at requests.
    pub on_request: bool,
    /// Whether it looks at answers (complete and streamed).
    pub on_response: bool,
    /// The model aliases it applies to; `None`: all.
    pub models: Option<Vec<String>>,
}

/// A refusal: which guardrail, and what it found (a category, never the matched text, which
/// may be the very data being protected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// The guardrail's name.
    pub guardrail: String,
    /// What it found.
    pub reason: String,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "blocked by guardrail {:?}: {}",
            self.guardrail, self.reason
        )
    }
}

/// What a guardrail made of a text.
enum Outcome {
    Clean,
    Redacted(String, String),
    Denied(String),
}

impl Guardrail {
    fn applies(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|m| m.iter().any(|a| a == model))
    }

    /// Checks (and redacts) one text.
    fn text(&self, text: &str) -> Outcome {
        match &self.check {
            Check::Pii(d) => match self.action {
                Action::Redact => match d.redact(text) {
                    Some((out, kinds)) => Outcome::Redacted(out, kind_names(&kinds)),
                    None => Outcome::Clean,
                },
                Action::Deny => d.first(text).map_or(Outcome::Clean, |k| {
                    Outcome::Denied(format!("the text contains personal data ({})", k.name()))
                }),
            },
            Check::DenyWords(words) => match self.action {
                Action::Redact => words.redact(text).map_or(Outcome::Clean, |out| {
                    Outcome::Redacted(out, "keyword".to_owned())
                }),
                Action::Deny => words.first(text).map_or(Outcome::Clean, |_| {
                    Outcome::Denied("the text contains a denied word".to_owned())
                }),
            },
            Check::Injection(d, threshold) => {
                let (score, why) = d.score(text);
                if score >= *threshold {
                    Outcome::Denied(format!(
                        "possible prompt injection (score {score:.2}: {})",
                        why.join("; ")
                    ))
                } else {
                    Outcome::Clean
                }
            }
            // Whole-request checks.
            Check::AllowTopics(_) | Check::MaxPromptTokens(_) | Check::JsonSchema { .. } => {
                Outcome::Clean
            }
        }
    }
}

impl Guardrail {
    /// Where an answer guardrail finds something in `text`, and what: for streams, which must
    /// know whether a match touches the edge of what has arrived so far.
    fn spans(&self, text: &str) -> Vec<(std::ops::Range<usize>, String)> {
        match &self.check {
            Check::Pii(d) => d
                .find(text)
                .into_iter()
                .map(|m| (m.range, format!("personal data ({})", m.kind.name())))
                .collect(),
            Check::DenyWords(words) => words
                .find(text)
                .map(|(range, _)| (range, "a denied word".to_owned()))
                .collect(),
            // Request-only checks (config allows no other on answers).
            Check::AllowTopics(_)
            | Check::Injection(..)
            | Check::MaxPromptTokens(_)
            | Check::JsonSchema { .. } => Vec::new(),
        }
    }
}

fn kind_names(kinds: &[pii::PiiKind]) -> String {
    kinds
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The texts of a message's content, for checking and rewriting in place.
fn texts_mut(content: &mut Value) -> Vec<&mut String> {
    match content {
        Value::String(s) => vec![s],
        Value::Array(parts) => parts
            .iter_mut()
            .filter_map(|p| match p.get_mut("text") {
                Some(Value::String(s)) => Some(s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn checked_role(role: &str) -> bool {
    !matches!(role, "system" | "developer")
}

/// What the request-side guardrails did to a request that may go on.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RequestReport {
    /// `(guardrail, what)` for each guardrail that redacted something.
    pub redacted: Vec<(String, String)>,
}

/// Every guardrail of a config version, in order.
#[derive(Debug, Clone, Default)]
pub struct Guardrails {
    list: Vec<Guardrail>,
}

impl Guardrails {
    /// The set, in the order given (the order they run in).
    pub fn new(list: Vec<Guardrail>) -> Guardrails {
        Guardrails { list }
    }

    /// Whether there are no guardrails at all (the request path then skips them).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether any guardrail looks at answers for `model`.
    pub fn on_response(&self, model: &str) -> bool {
        self.list.iter().any(|g| g.on_response && g.applies(model))
    }

    /// Runs the request-side guardrails for `model` in order: redacts in place, or refuses.
    pub fn check_request(
        &self,
        model: &str,
        req: &mut ChatRequest,
    ) -> Result<RequestReport, Denied> {
        let mut report = RequestReport::default();
        for g in self
            .list
            .iter()
            .filter(|g| g.on_request && g.applies(model))
        {
            let denied = |reason: String| Denied {
                guardrail: g.name.clone(),
                reason,
            };
            match &g.check {
                Check::MaxPromptTokens(max) => {
                    let bytes: usize = req
                        .messages
                        .iter_mut()
                        .flat_map(|m| texts_mut(&mut m.content))
                        .map(|t| t.len())
                        .sum();
                    let tokens = (bytes as u64).div_ceil(4);
                    if tokens > *max {
                        return Err(denied(format!(
                            "the prompt is about {tokens} tokens, over the limit of {max}"
                        )));
                    }
                }
                Check::AllowTopics(topics) => {
                    let on_topic = req
                        .messages
                        .iter_mut()
                        .filter(|m| checked_role(&m.role))
                        .flat_map(|m| texts_mut(&mut m.content))
                        .any(|t| topics.first(t).is_some());
                    if !on_topic {
                        return Err(denied("the request is off the allowed topics".to_owned()));
                    }
                }
                _ => {
                    let mut what: Vec<String> = Vec::new();
                    for m in req.messages.iter_mut().filter(|m| checked_role(&m.role)) {
                        for t in texts_mut(&mut m.content) {
                            match g.text(t) {
                                Outcome::Clean => {}
                                Outcome::Denied(reason) => return Err(denied(reason)),
                                Outcome::Redacted(out, kinds) => {
                                    *t = out;
                                    for k in kinds.split(", ") {
                                        if !what.iter().any(|w| w == k) {
                                            what.push(k.to_owned());
                                        }
                                    }
                                }
                            }
                        }
                    }
                    if !what.is_empty() {
                        report.redacted.push((g.name.clone(), what.join(", ")));
                    }
                }
            }
        }
        Ok(report)
    }

    /// Runs the answer-side guardrails for `model` on a complete answer's text: `Ok(None)`
    /// when it may go as it is, `Ok(Some((text, guardrails)))` redacted by those guardrails,
    /// or refused.
    pub fn check_answer(
        &self,
        model: &str,
        text: &str,
    ) -> Result<Option<(String, Vec<String>)>, Denied> {
        let mut current: Option<String> = None;
        let mut by = Vec::new();
        for g in self
            .list
            .iter()
            .filter(|g| g.on_response && g.applies(model))
        {
            let t = current.as_deref().unwrap_or(text);
            match g.text(t) {
                Outcome::Clean => {}
                Outcome::Denied(reason) => {
                    return Err(Denied {
                        guardrail: g.name.clone(),
                        reason,
                    });
                }
                Outcome::Redacted(out, _) => {
                    current = Some(out);
                    by.push(g.name.clone());
                }
            }
        }
        Ok(current.map(|text| (text, by)))
    }

    /// The structured-output guardrail for `model`, if one applies: its name, and whether it
    /// may ask the model once to repair a failing answer.
    pub fn output_schema(&self, model: &str) -> Option<(&str, bool)> {
        self.list
            .iter()
            .filter(|g| g.applies(model))
            .find_map(|g| match g.check {
                Check::JsonSchema { repair } => Some((g.name.as_str(), repair)),
                _ => None,
            })
    }

    /// A checker for one streamed answer for `model`, if any guardrail looks at answers.
    pub fn stream(&self, model: &str) -> Option<StreamCheck> {
        let guards: Vec<Guardrail> = self
            .list
            .iter()
            .filter(|g| g.on_response && g.applies(model))
            .cloned()
            .collect();
        (!guards.is_empty()).then(|| StreamCheck::new(guards))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn pii(action: Action) -> Guardrail {
        Guardrail {
            name: "pii".to_owned(),
            check: Check::Pii(pii::PiiDetector::new(&[])),
            action,
            on_request: true,
            on_response: true,
            models: None,
        }
    }

    fn request(body: Value) -> ChatRequest {
        serde_json::from_value(body).expect("request")
    }

    #[test]
    fn a_request_is_redacted_in_place_part_by_part_but_not_the_system_prompt() {
        let set = Guardrails::new(vec![pii(Action::Redact)]);
        let mut req = request(json!({"model": "m", "messages": [
            {"role": "system", "content": "Support mail: help@corp.example"},
            {"role": "user", "content": [
                {"type": "text", "text": "I am jane@example.com"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                {"type": "text", "text": "card 4111-1111-1111-1111"}]}
        ]}));
        let report = set.check_request("m", &mut req).expect("allowed");
        assert_eq!(
            report.redacted,
            [("pii".to_owned(), "email, credit_card".to_owned())]
        );
        let v = serde_json::to_value(&req).expect("json");
        assert_eq!(
            v["messages"][0]["content"],
            "Support mail: help@corp.example"
        );
        assert_eq!(v["messages"][1]["content"][0]["text"], "I am [EMAIL]");
        assert_eq!(v["messages"][1]["content"][2]["text"], "card [CREDIT_CARD]");
    }

    #[test]
    fn denials_name_the_guardrail_and_never_the_data() {
        let set = Guardrails::new(vec![pii(Action::Deny)]);
        let mut req = request(json!({"model": "m", "messages": [
            {"role": "user", "content": "my ssn is 123-45-6789"}]}));
        let denied = set.check_request("m", &mut req).expect_err("denied");
        assert_eq!(denied.guardrail, "pii");
        assert!(!denied.to_string().contains("6789"), "{denied}");
    }

    #[test]
    fn whole_request_checks_and_model_scoping() {
        let topics = Guardrail {
            name: "topics".to_owned(),
            check: Check::AllowTopics(keywords::WordList::new(&["billing".to_owned()])),
            action: Action::Deny,
            on_request: true,
            on_response: false,
            models: Some(vec!["support".to_owned()]),
        };
        let cap = Guardrail {
            name: "cap".to_owned(),
            check: Check::MaxPromptTokens(5),
            action: Action::Deny,
            on_request: true,
            on_response: false,
            models: None,
        };
        let set = Guardrails::new(vec![topics, cap]);
        let mut short =
            request(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
        assert!(
            set.check_request("other", &mut short).is_ok(),
            "topics apply to support only"
        );
        assert_eq!(
            set.check_request("support", &mut short)
                .expect_err("off topic")
                .guardrail,
            "topics"
        );
        let mut long = request(json!({"model": "m", "messages": [
            {"role": "user", "content": "a question about billing, long enough"}]}));
        assert_eq!(
            set.check_request("support", &mut long)
                .expect_err("long")
                .guardrail,
            "cap"
        );
    }

    #[test]
    fn answers_are_redacted_or_refused() {
        let set = Guardrails::new(vec![pii(Action::Redact)]);
        assert_eq!(set.check_answer("m", "nothing here"), Ok(None));
        assert_eq!(
            set.check_answer("m", "write to bob@example.org")
                .expect("ok"),
            Some(("write to [EMAIL]".to_owned(), vec!["pii".to_owned()]))
        );
        let deny = Guardrails::new(vec![pii(Action::Deny)]);
        assert!(deny.check_answer("m", "write to bob@example.org").is_err());
    }
}
