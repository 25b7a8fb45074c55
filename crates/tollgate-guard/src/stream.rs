//! Checking a streamed answer as it arrives. Each chunk's text is checked together with the
//! last [`CARRY`] bytes of the text before it, so a match split across chunks (`jane@exa` |
//! `mple.com`) is caught; a match wholly inside the carried text was already checked with its
//! own chunk. A stream cannot take back what it sent, so anything a guardrail would redact or
//! refuse stops the stream.

use crate::{Denied, Guardrail, Guardrails};

/// Bytes of earlier text checked again with each chunk: longer than any pattern a guardrail
/// looks for (an e-mail address is at most 254 bytes).
pub const CARRY: usize = 256;

/// The guardrails of one streamed answer, and the text they carry over.
#[derive(Debug)]
pub struct StreamCheck {
    guards: Vec<Guardrail>,
    window: String,
}

impl StreamCheck {
    pub(crate) fn new(guards: Vec<Guardrail>) -> StreamCheck {
        StreamCheck {
            guards,
            window: String::with_capacity(CARRY * 2),
        }
    }

    /// Checks the next piece of the answer's text; `Err` stops the stream.
    pub fn push(&mut self, text: &str) -> Result<(), Denied> {
        if text.is_empty() {
            return Ok(());
        }
        self.window.push_str(text);
        if let Some(denied) = Guardrails::first_denial(&self.guards, &self.window) {
            return Err(denied);
        }
        // Keep the tail, cut on a character boundary.
        if self.window.len() > CARRY {
            let mut cut = self.window.len() - CARRY;
            while !self.window.is_char_boundary(cut) {
                cut += 1;
            }
            self.window.drain(..cut);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::pii;
    use crate::{Action, Guardrails};

    #[test]
    fn a_match_split_across_chunks_is_caught() {
        let set = Guardrails::new(vec![pii(Action::Redact)]);
        let mut check = set.stream("m").expect("a response guardrail");
        assert!(check.push("Sure! You can write to jane.doe@exa").is_ok());
        let denied = check.push("mple.com for help.").expect_err("caught");
        assert_eq!(denied.guardrail, "pii");
        assert!(denied.reason.contains("email"), "{denied}");
    }

    #[test]
    fn long_clean_streams_pass_with_a_bounded_window() {
        let set = Guardrails::new(vec![pii(Action::Deny)]);
        let mut check = set.stream("m").expect("a response guardrail");
        for i in 0..1000 {
            check
                .push(&format!("token {i} é and more words; "))
                .expect("clean");
        }
        assert!(check.window.len() <= super::CARRY + 8);
    }
}
