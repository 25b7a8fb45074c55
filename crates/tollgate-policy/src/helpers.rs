//! Helper functions for scripts: text search, regexes, code and language detection, `deny`.

use memchr::memmem::Finder;
use rhai::{Array, Engine, EvalAltResult, ImmutableString, Map};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

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

/// Case-insensitive: does `text` contain any of `words`?
///
/// Scripts pass the same few word lists on every call, so each list's SIMD searchers are built
/// once and cached (building one costs more than scanning a prompt with it). The text is
/// lowercased once (ASCII letters only); a list with non-ASCII words lowercases both sides
/// with Unicode's `to_lowercase`, which is not full case folding (`ß` does not match `ss`).
fn contains_any(text: &str, words: Array) -> bool {
    // Rhai strings: collecting them is a reference count each, not a copy.
    let words: Vec<ImmutableString> = words
        .into_iter()
        .filter_map(|w| w.into_immutable_string().ok())
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return false;
    }
    if !words.iter().all(|w| w.is_ascii()) {
        let hay = text.to_lowercase();
        return words.iter().any(|w| hay.contains(&w.to_lowercase()));
    }
    let cached = word_finders()
        .lock()
        .ok()
        .and_then(|cache| cache.get(&words).cloned());
    let finders = cached.unwrap_or_else(|| {
        let built: Finders = words
            .iter()
            .map(|w| Finder::new(w.to_ascii_lowercase().as_bytes()).into_owned())
            .collect();
        if let Ok(mut cache) = word_finders().lock() {
            if cache.len() >= FINDER_CACHE_LIMIT {
                cache.clear(); // scripts use a few fixed lists; a flood of new ones rebuilds
            }
            cache.insert(words, Arc::clone(&built));
        }
        built
    });
    // The lowercased text goes into a buffer this thread reuses: no allocation per call.
    thread_local! {
        static LOWERED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    LOWERED.with(|buf| {
        let mut hay = buf.borrow_mut();
        hay.clear();
        hay.extend(text.bytes().map(|b| b.to_ascii_lowercase()));
        let found = finders.iter().any(|f| f.find(&hay).is_some());
        if hay.capacity() > 1 << 20 {
            *hay = Vec::new(); // one huge prompt should not pin its size on the thread
        }
        found
    })
}

type Finders = Arc<[Finder<'static>]>;

fn word_finders() -> &'static Mutex<HashMap<Vec<ImmutableString>, Finders>> {
    static CACHE: OnceLock<Mutex<HashMap<Vec<ImmutableString>, Finders>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

const FINDER_CACHE_LIMIT: usize = 256;

/// Does `text` look like it contains source code?
pub(crate) fn detect_code(text: &str) -> bool {
    let bytes = text.as_bytes();
    // Markers with punctuation are skipped, one memchr pass per three, when prose lacks it.
    let has = |a, b, c| memchr::memchr3(a, b, c, bytes).is_some();
    let (hash_eq_brace, paren_lt_tick) = (has(b'#', b'=', b'}'), has(b'(', b'<', b'`'));
    if paren_lt_tick && memchr::memmem::find(bytes, b"```").is_some() {
        return true;
    }
    const WORDS: [&str; 10] = [
        "def ",
        "fn ",
        "function ",
        "class ",
        "import ",
        "return ",
        "const ",
        "let ",
        "public static",
        "SELECT ",
    ];
    const PUNCTUATED: [&str; 6] = ["#include", "=>", "};", "print(", "</", "console.log"];
    // SIMD searchers built once: building one costs more than scanning a prompt with it.
    static FINDERS: OnceLock<(Vec<Finder<'static>>, Vec<Finder<'static>>)> = OnceLock::new();
    let (words, punctuated) = FINDERS.get_or_init(|| {
        (
            WORDS.iter().map(Finder::new).collect(),
            PUNCTUATED.iter().map(Finder::new).collect(),
        )
    });
    let worth_scanning = |i: usize| match i {
        0..=2 => hash_eq_brace,
        3 | 4 => paren_lt_tick,
        _ => true,
    };
    let hits = words
        .iter()
        .chain(
            punctuated
                .iter()
                .enumerate()
                .filter(|(i, _)| worth_scanning(*i))
                .map(|(_, f)| f),
        )
        .filter(|f| f.find(bytes).is_some())
        .take(2)
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
        // Two different markers; one marker twice is not two.
        assert!(detect_code("import os\nclass A: pass"));
        assert!(!detect_code("let me know, and let me see the results"));
        // Markers with punctuation count too (they are only skipped when it is absent).
        assert!(detect_code(
            "#include <stdio.h>\nint main(void) { return 0; }"
        ));
        assert!(detect_code("xs.map(x => x * 2);\n};"));
        assert!(detect_code(
            "<div>hi</div> then print(x) and console.log(y)"
        ));
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
        let unicode: Array = vec!["ÉTAPE".into()];
        assert!(contains_any("une étape à la fois", unicode.clone()));
        assert!(!contains_any("une etape", unicode));
        assert!(!contains_any("anything", Array::new()));
    }
}
