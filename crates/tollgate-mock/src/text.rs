//! Deterministic answers and token counts derived from the prompt.

const WORDS: [&str; 48] = [
    "the",
    "gateway",
    "routes",
    "each",
    "request",
    "to",
    "a",
    "model",
    "that",
    "answers",
    "with",
    "care",
    "and",
    "cost",
    "stays",
    "low",
    "while",
    "quality",
    "holds",
    "steady",
    "across",
    "every",
    "provider",
    "in",
    "the",
    "pool",
    "so",
    "teams",
    "ship",
    "faster",
    "without",
    "surprises",
    "tokens",
    "flow",
    "through",
    "streams",
    "as",
    "chunks",
    "arrive",
    "in",
    "order",
    "budgets",
    "remain",
    "exact",
    "caches",
    "warm",
    "up",
    "quickly",
];

/// FNV-1a, for a stable seed from the prompt.
pub fn seed(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A deterministic answer to `prompt`, as a list of tokens (words with their leading space).
pub fn answer_tokens(prompt: &str, max_tokens: Option<u32>) -> (Vec<String>, bool) {
    let s = seed(prompt);
    let mut tokens: Vec<String> = vec!["Mock".into(), " answer".into(), ":".into()];
    let n = 12 + (s % 20) as usize;
    let mut x = s;
    for _ in 0..n {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        tokens.push(format!(" {}", WORDS[(x >> 33) as usize % WORDS.len()]));
    }
    tokens.push(".".into());
    match max_tokens {
        Some(cap) if (cap as usize) < tokens.len() => {
            tokens.truncate(cap as usize);
            (tokens, true)
        }
        _ => (tokens, false),
    }
}

/// A rough token count: about four characters a token, as BPE tokenizers average on English.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_prompt_same_answer() {
        assert_eq!(answer_tokens("hello", None), answer_tokens("hello", None));
        assert_ne!(answer_tokens("hello", None), answer_tokens("goodbye", None));
    }

    #[test]
    fn max_tokens_truncates() {
        let (t, truncated) = answer_tokens("hello", Some(4));
        assert_eq!(t.len(), 4);
        assert!(truncated);
    }
}
