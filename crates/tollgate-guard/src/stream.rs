//! Checking a streamed answer as it arrives. Each chunk's text is checked together with the
//! last [`CARRY`] bytes of the text before it, so a match split across chunks (`jane@exa` |
//! `mple.com`) is caught. A match that reaches the end of what has arrived is undecided until
//! more text (or the end of the stream) shows where it ends: `cat` may be the start of
//! `catalog`, and 13 digits the start of a longer number; the caller holds such a chunk back
//! meanwhile. A match at the start of a trimmed window may be the tail of a longer word, and
//! is not counted. A stream cannot take back what it sent, so anything a guardrail would
//! redact or refuse stops the stream.

use crate::{Denied, Guardrail};

/// What the text so far allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamVerdict {
    /// Send it.
    Clear,
    /// A match may be forming at its end: hold it back until more text arrives.
    Undecided,
    /// Stop the stream.
    Stop(Denied),
}

/// Bytes of earlier text checked again with each chunk: longer than any pattern a guardrail
/// looks for (an e-mail address is at most 254 bytes). While a match is undecided the window
/// is not trimmed, so a long one (a key) is judged whole.
pub const CARRY: usize = 256;

/// An undecided match may hold text back this long at most; past it, the stream stops (a
/// single secret-shaped token this long is no answer).
pub const MAX_UNDECIDED: usize = 64 * 1024;

/// The guardrails of one streamed answer, and the text they carry over.
#[derive(Debug)]
pub struct StreamCheck {
    guards: Vec<Guardrail>,
    window: String,
    /// Whether the window's start was cut from longer text.
    trimmed: bool,
}

impl StreamCheck {
    pub(crate) fn new(guards: Vec<Guardrail>) -> StreamCheck {
        StreamCheck {
            guards,
            window: String::with_capacity(CARRY * 2),
            trimmed: false,
        }
    }

    /// The window's verdict: a match not cut at its start and (unless the stream has ended)
    /// not running into its end stops the stream; one running into its end is undecided.
    fn verdict(&self, ended: bool) -> StreamVerdict {
        let len = self.window.len();
        let mut undecided = false;
        for g in &self.guards {
            for (range, what) in g.spans(&self.window) {
                if self.trimmed && range.start == 0 {
                    continue;
                }
                if ended || range.end < len {
                    return StreamVerdict::Stop(Denied {
                        guardrail: g.name.clone(),
                        reason: format!("the answer contains {what}"),
                    });
                }
                undecided = true;
            }
        }
        if undecided {
            StreamVerdict::Undecided
        } else {
            StreamVerdict::Clear
        }
    }

    /// Checks the next piece of the answer's text.
    pub fn push(&mut self, text: &str) -> StreamVerdict {
        if text.is_empty() {
            return self.verdict(false);
        }
        self.window.push_str(text);
        let verdict = self.verdict(false);
        match verdict {
            StreamVerdict::Stop(_) => return verdict,
            StreamVerdict::Undecided if self.window.len() > MAX_UNDECIDED => {
                let guardrail = self
                    .guards
                    .first()
                    .map_or_else(String::new, |g| g.name.clone());
                return StreamVerdict::Stop(Denied {
                    guardrail,
                    reason: "the answer holds an undecided match too long".to_owned(),
                });
            }
            // Keep the whole undecided match in view.
            StreamVerdict::Undecided => return verdict,
            StreamVerdict::Clear => {}
        }
        // Keep the tail, cut on a character boundary.
        if self.window.len() > CARRY {
            let cut = self.window.ceil_char_boundary(self.window.len() - CARRY);
            self.window.drain(..cut);
            self.trimmed = true;
        }
        verdict
    }

    /// Checks what is left once the stream has ended: a match at the very end counts now.
    pub fn finish(&mut self) -> StreamVerdict {
        self.verdict(true)
    }
}

#[cfg(test)]
mod tests {
    use super::StreamVerdict;
    use crate::tests::pii;
    use crate::{Action, Guardrails};

    #[test]
    fn a_match_split_across_chunks_is_caught() {
        let set = Guardrails::new(vec![pii(Action::Redact)]);
        let mut check = set.stream("m").expect("a response guardrail");
        assert_eq!(
            check.push("Sure! You can write to jane.doe@exa"),
            StreamVerdict::Clear
        );
        let StreamVerdict::Stop(denied) = check.push("mple.com for help.") else {
            panic!("not caught");
        };
        assert_eq!(denied.guardrail, "pii");
        assert!(denied.reason.contains("email"), "{denied}");
    }

    #[test]
    fn a_prefix_of_a_longer_word_or_number_is_not_a_match() {
        let words = crate::Guardrail {
            name: "words".to_owned(),
            check: crate::Check::DenyWords(crate::keywords::WordList::new(&["cat".to_owned()])),
            action: Action::Deny,
            on_request: false,
            on_response: true,
            models: None,
        };
        let set = Guardrails::new(vec![words, pii(Action::Deny)]);
        let mut check = set.stream("m").expect("answer guardrails");
        assert_eq!(
            check.push("see the cat"),
            StreamVerdict::Undecided,
            "cat may go on"
        );
        assert_eq!(
            check.push("alog of 4111 1111 1111 1"),
            StreamVerdict::Clear,
            "catalog; 13 digits that are no card number"
        );
        assert_eq!(
            check.push("11123 parts"),
            StreamVerdict::Clear,
            "an 18-digit number, not a card"
        );
        assert_eq!(check.finish(), StreamVerdict::Clear);
        let mut check = set.stream("m").expect("answer guardrails");
        assert_eq!(check.push("the cat"), StreamVerdict::Undecided);
        assert!(
            matches!(check.finish(), StreamVerdict::Stop(_)),
            "the stream ended on the word"
        );
    }

    #[test]
    fn a_match_longer_than_the_carry_is_judged_whole() {
        let set = Guardrails::new(vec![pii(Action::Deny)]);
        let mut check = set.stream("m").expect("answer guardrails");
        assert_eq!(check.push("here is the key sk-"), StreamVerdict::Clear);
        assert_eq!(
            check.push("abcdefghij"),
            StreamVerdict::Clear,
            "too short for a key"
        );
        // From 20 characters on it is a key that may go on: held, for far past the carry.
        for _ in 0..40 {
            assert_eq!(check.push("abcdefghij"), StreamVerdict::Undecided);
        }
        assert!(matches!(check.push(" and more"), StreamVerdict::Stop(_)));
    }

    #[test]
    fn long_clean_streams_pass_with_a_bounded_window() {
        let set = Guardrails::new(vec![pii(Action::Deny)]);
        let mut check = set.stream("m").expect("a response guardrail");
        for i in 0..1000 {
            assert_eq!(
                check.push(&format!("token {i} é and more words; ")),
                StreamVerdict::Clear
            );
        }
        assert!(check.window.len() <= super::CARRY + 8);
    }
}
