//! Answer text that keeps the provider's JSON escaping while it can.
//!
//! Most of the cost of translating a large answer is unescaping its text on the way in and
//! escaping it again on the way out. A JSON string is the same string in every dialect, so
//! when the answer has one text block, its escaped form (borrowed from the provider's body,
//! which the parser has already validated) is written to the client verbatim.

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// The text of a complete answer: still escaped (one block), or plain (joined or rebuilt).
#[derive(Debug, Default)]
pub(crate) enum AnswerText<'a> {
    #[default]
    Empty,
    /// One JSON string literal, quotes included, exactly as the provider sent it.
    Escaped(&'a RawValue),
    Plain(Cow<'a, str>),
}

impl<'a> AnswerText<'a> {
    pub fn is_empty(&self) -> bool {
        match self {
            AnswerText::Empty => true,
            AnswerText::Escaped(raw) => raw.get() == "\"\"",
            AnswerText::Plain(s) => s.is_empty(),
        }
    }

    /// Appends a JSON value that should be a string literal; anything else is not text and
    /// is ignored.
    pub fn push_escaped(&mut self, raw: &'a RawValue) {
        if !raw.get().starts_with('"') {
            return;
        }
        match self {
            AnswerText::Empty => *self = AnswerText::Escaped(raw),
            _ => self.push(unescape(raw)),
        }
    }

    /// Appends plain text.
    pub fn push(&mut self, more: Cow<'a, str>) {
        match std::mem::take(self) {
            AnswerText::Empty => *self = AnswerText::Plain(more),
            AnswerText::Escaped(raw) => {
                let mut joined = unescape(raw).into_owned();
                joined.push_str(&more);
                *self = AnswerText::Plain(Cow::Owned(joined));
            }
            AnswerText::Plain(mut text) => {
                if text.is_empty() {
                    text = more;
                } else {
                    text.to_mut().push_str(&more);
                }
                *self = AnswerText::Plain(text);
            }
        }
    }

    /// The unescaped text.
    #[cfg(test)]
    pub fn to_plain(&self) -> Cow<'a, str> {
        match self {
            AnswerText::Empty => Cow::Borrowed(""),
            AnswerText::Escaped(raw) => unescape(raw),
            AnswerText::Plain(s) => s.clone(),
        }
    }
}

/// The text of a string literal. The parser accepted it, but it may still hold a lone
/// surrogate (`"\ud800"`), which a Rust string cannot: then the literal's content is kept
/// as written rather than dropped.
fn unescape<'a>(raw: &'a RawValue) -> Cow<'a, str> {
    serde_json::from_str::<Cow<'a, str>>(raw.get()).unwrap_or_else(|_| {
        let literal = raw.get();
        Cow::Borrowed(
            literal
                .get(1..literal.len().saturating_sub(1))
                .unwrap_or(""),
        )
    })
}

impl Serialize for AnswerText<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            AnswerText::Empty => serializer.serialize_str(""),
            AnswerText::Escaped(raw) => raw.serialize(serializer),
            AnswerText::Plain(s) => serializer.serialize_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> &RawValue {
        serde_json::from_str(json).expect("raw")
    }

    #[test]
    fn one_block_is_written_back_exactly_as_it_came() {
        let literal = r#""line one\nhe said \"hi\" \u00e9 \ud83d\ude00""#;
        let mut text = AnswerText::default();
        text.push_escaped(raw(literal));
        assert!(matches!(text, AnswerText::Escaped(_)));
        assert_eq!(serde_json::to_string(&text).expect("json"), literal);
        assert_eq!(text.to_plain(), "line one\nhe said \"hi\" é 😀");
    }

    #[test]
    fn blocks_are_joined_unescaped_and_escaped_once_on_the_way_out() {
        let mut text = AnswerText::default();
        text.push_escaped(raw(r#""a\tb""#));
        text.push_escaped(raw(r#""\"c\"""#));
        text.push(Cow::Borrowed(" d"));
        assert_eq!(text.to_plain(), "a\tb\"c\" d");
        assert_eq!(
            serde_json::to_string(&text).expect("json"),
            r#""a\tb\"c\" d""#
        );
    }

    #[test]
    fn a_lone_surrogate_keeps_its_text_as_written() {
        let mut text = AnswerText::default();
        text.push_escaped(raw(r#""before ""#));
        text.push_escaped(raw(r#""\ud800 after""#));
        assert_eq!(text.to_plain(), "before \\ud800 after");
    }

    #[test]
    fn empty_and_non_string_values_are_not_text() {
        let mut text = AnswerText::default();
        text.push_escaped(raw("42"));
        text.push_escaped(raw("null"));
        assert!(text.is_empty());
        text.push_escaped(raw(r#""""#));
        assert!(text.is_empty());
        assert_eq!(serde_json::to_string(&text).expect("json"), r#""""#);
    }
}
