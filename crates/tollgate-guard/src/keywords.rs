//! Words and phrases a request or answer may not contain (a deny list), or must touch on (an
//! allow list of topics), matched whole-word and without regard to ASCII case, all in one
//! Aho-Corasick pass.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// A compiled word list.
#[derive(Debug, Clone)]
pub struct WordList {
    words: Vec<String>,
    matcher: Option<AhoCorasick>,
}

/// Whether `c` continues a word (letters and digits of any script, and `_`): curly quotes,
/// dashes and CJK punctuation do not.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl WordList {
    /// A list of `words` (empty entries are dropped).
    pub fn new(words: &[String]) -> WordList {
        let words: Vec<String> = words
            .iter()
            .map(|w| w.trim().to_owned())
            .filter(|w| !w.is_empty())
            .collect();
        let matcher = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(&words)
            .ok()
            .filter(|_| !words.is_empty());
        WordList { words, matcher }
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Every whole-word match in `text`: its range, and which word.
    pub fn find<'a>(
        &'a self,
        text: &'a str,
    ) -> impl Iterator<Item = (std::ops::Range<usize>, &'a str)> + 'a {
        self.matcher
            .iter()
            .flat_map(move |m| m.find_iter(text))
            .filter(move |m| {
                let before = text[..m.start()].chars().next_back();
                let after = text[m.end()..].chars().next();
                !before.is_some_and(is_word_char) && !after.is_some_and(is_word_char)
            })
            .map(|m| (m.range(), self.words[m.pattern().as_usize()].as_str()))
    }

    /// The first listed word in `text`, if any.
    pub fn first<'a>(&'a self, text: &'a str) -> Option<&'a str> {
        self.find(text).next().map(|(_, w)| w)
    }

    /// `text` with each listed word replaced by `[REDACTED]`; `None` when none was there.
    pub fn redact(&self, text: &str) -> Option<String> {
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (range, _) in self.find(text) {
            out.push_str(&text[at..range.start]);
            out.push_str("[REDACTED]");
            at = range.end;
        }
        if at == 0 && out.is_empty() {
            return None;
        }
        out.push_str(&text[at..]);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(words: &[&str]) -> WordList {
        WordList::new(&words.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn whole_words_match_in_any_case() {
        let l = list(&["falcon", "project x"]);
        assert_eq!(l.first("Tell me about PROJECT X today"), Some("project x"));
        assert_eq!(l.first("the Falcon has landed"), Some("falcon"));
        assert_eq!(l.first("falconry is old"), None, "not a whole word");
        assert_eq!(
            l.first("the \u{201c}falcon\u{201d}\u{2014}again"),
            Some("falcon")
        );
        assert_eq!(l.first("\u{3001}falcon\u{3002}"), Some("falcon"));
        assert_eq!(
            l.first("éfalcon"),
            None,
            "a letter of any script continues the word"
        );
        assert_eq!(
            l.redact("falcon, and falcon.").as_deref(),
            Some("[REDACTED], and [REDACTED].")
        );
        assert_eq!(l.redact("nothing"), None);
        assert!(list(&[" ", ""]).is_empty());
        assert_eq!(list(&[]).first("anything"), None);
    }
}
