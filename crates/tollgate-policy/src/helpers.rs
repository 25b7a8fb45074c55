//! Helper functions for scripts: text search, regexes, code and language detection, `deny`.

use rhai::{Array, Engine, EvalAltResult, Map};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Compiled regexes by pattern, so a script's patterns compile once, not per call.
fn regex_cache() -> &'static Mutex<HashMap<String, regex::Regex>> {
    static CACHE: OnceLock<Mutex<HashMap<String, regex::Regex>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

const REGEX_CACHE_LIMIT: usize = 1024;

fn regex_match(text: &str, pattern: &str) -> Result<bool, Box<EvalAltResult>> {
    // Clone the (reference-counted) regex out, so matching never holds the lock.
    let cached = regex_cache()
        .lock()
        .map_err(|_| "regex cache poisoned")?
        .get(pattern)
        .cloned();
    let re = match cached {
        Some(re) => re,
        None => {
            let re = regex::Regex::new(pattern)
                .map_err(|e| format!("invalid regex `{pattern}`: {e}"))?;
            let mut cache = regex_cache().lock().map_err(|_| "regex cache poisoned")?;
            if cache.len() >= REGEX_CACHE_LIMIT {
                cache.clear(); // scripts use a few fixed patterns; a flood of new ones recompiles
            }
            cache.insert(pattern.to_owned(), re.clone());
            re
        }
    };
    Ok(re.is_match(text))
}

/// Case-insensitive: does `text` contain any of `words`? Lowercases the text once; the words
/// are short, so a plain substring search beats building a SIMD searcher per word.
fn contains_any(text: &str, words: Array) -> bool {
    let hay = text.to_lowercase();
    words
        .into_iter()
        .filter_map(|w| w.into_string().ok())
        .any(|w| !w.is_empty() && hay.contains(&w.to_lowercase()))
}

/// Does `text` look like it contains source code?
pub(crate) fn detect_code(text: &str) -> bool {
    if text.contains("```") {
        return true;
    }
    const MARKERS: [&str; 16] = [
        "def ",
        "fn ",
        "function ",
        "class ",
        "import ",
        "#include",
        "=>",
        "};",
        "return ",
        "const ",
        "let ",
        "public static",
        "SELECT ",
        "print(",
        "console.log",
        "</",
    ];
    // SIMD searchers built once: building one costs more than scanning a prompt with it.
    static FINDERS: OnceLock<Vec<memchr::memmem::Finder<'static>>> = OnceLock::new();
    let finders = FINDERS.get_or_init(|| {
        MARKERS
            .iter()
            .map(|m| memchr::memmem::Finder::new(m.as_bytes()))
            .collect()
    });
    let hits = finders
        .iter()
        .filter(|f| f.find(text.as_bytes()).is_some())
        .count();
    if hits != 1 {
        return hits >= 2;
    }
    // One marker alone is weak evidence: also require code-like punctuation density.
    let symbols = text
        .bytes()
        .filter(|c| matches!(c, b'{' | b'}' | b';' | b'(' | b')'))
        .count();
    symbols * 20 > text.len().max(1)
}

/// A cheap language guess: the dominant script, refined to a language for Latin text by
/// stop-word counts. Returns `en`, `fr`, `de`, `es`, `it`, `pt`, `latin`, `cyrillic`, `greek`,
/// `arabic`, `hebrew`, `devanagari`, `cjk`, `hangul`, or `unknown`.
pub(crate) fn detect_language(text: &str) -> &'static str {
    let mut counts = [0usize; 9];
    for c in text.chars().filter(|c| c.is_alphabetic()) {
        let i = match c as u32 {
            0x0041..=0x024F => 0,
            0x0400..=0x04FF => 1,
            0x0370..=0x03FF => 2,
            0x0600..=0x06FF => 3,
            0x0590..=0x05FF => 4,
            0x0900..=0x097F => 5,
            0x3040..=0x30FF | 0x4E00..=0x9FFF => 6,
            0xAC00..=0xD7AF => 7,
            _ => 8,
        };
        counts[i] += 1;
    }
    let Some((best, n)) = counts.iter().enumerate().max_by_key(|(_, n)| **n) else {
        return "unknown";
    };
    if *n == 0 {
        return "unknown";
    }
    match best {
        0 => latin_language(text),
        1 => "cyrillic",
        2 => "greek",
        3 => "arabic",
        4 => "hebrew",
        5 => "devanagari",
        6 => "cjk",
        7 => "hangul",
        _ => "unknown",
    }
}

fn latin_language(text: &str) -> &'static str {
    const STOP: [(&str, &[&str]); 6] = [
        (
            "en",
            &["the", "and", "is", "of", "to", "what", "how", "you"],
        ),
        (
            "fr",
            &["le", "la", "les", "et", "est", "des", "une", "vous"],
        ),
        (
            "de",
            &["der", "die", "und", "ist", "das", "nicht", "ein", "sie"],
        ),
        ("es", &["el", "los", "las", "y", "es", "una", "por", "qué"]),
        ("it", &["il", "che", "e", "di", "una", "sono", "per", "non"]),
        ("pt", &["o", "os", "e", "é", "uma", "não", "para", "você"]),
    ];
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
        .collect();
    STOP.iter()
        .map(|(lang, stop)| (*lang, words.iter().filter(|w| stop.contains(w)).count()))
        .filter(|(_, n)| *n > 0)
        .max_by_key(|(_, n)| *n)
        .map_or("latin", |(lang, _)| lang)
}

/// `deny(status, message)`: the value `on_request` returns to refuse a request.
fn deny(status: i64, message: &str) -> Map {
    let mut m = Map::new();
    m.insert("action".into(), "deny".into());
    m.insert("status".into(), status.into());
    m.insert("message".into(), message.into());
    m
}

pub(crate) fn register(engine: &mut Engine) {
    engine
        .register_fn("contains_any", contains_any)
        .register_fn("regex_match", regex_match)
        .register_fn("detect_code", detect_code)
        .register_fn("detect_language", detect_language)
        .register_fn("deny", deny)
        .register_fn("deny", |message: &str| deny(403, message));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_detection() {
        assert!(detect_code("here:\n```rust\nfn main() {}\n```"));
        assert!(detect_code("def f(x):\n    return x + 1"));
        assert!(!detect_code("What is the capital of France?"));
    }

    #[test]
    fn language_detection() {
        assert_eq!(
            detect_language("What is the weather like and how are you?"),
            "en"
        );
        assert_eq!(
            detect_language("Quelle est la météo et comment allez-vous ?"),
            "fr"
        );
        assert_eq!(
            detect_language("Wie ist das Wetter und ist es nicht kalt?"),
            "de"
        );
        assert_eq!(detect_language("Привет, как дела?"), "cyrillic");
        assert_eq!(detect_language("今日の天気はどうですか"), "cjk");
        assert_eq!(detect_language("1234 !!"), "unknown");
    }

    #[test]
    fn contains_any_ignores_case() {
        let words: Array = vec!["PROVE".into(), "theorem".into()];
        assert!(contains_any("Please prove this Theorem", words.clone()));
        assert!(!contains_any("hello", words));
    }
}
