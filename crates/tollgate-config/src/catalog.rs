//! The built-in price catalog: per-token prices and context limits of about 850 hosted models,
//! generated from LiteLLM's MIT-licensed `model_prices_and_context_window.json` by
//! `tools/update_prices.py` (`data/prices.tsv`, notice in `data/LICENSE-litellm`).
//!
//! `[prices."provider/model"]` in the config overrides it; self-hosted kinds (Ollama, vLLM,
//! llama.cpp, `openai_compatible`, the mock) have no catalog prices.

use crate::presets::ProviderKind;
use crate::types::PriceConfig;
use std::collections::HashMap;
use std::sync::OnceLock;

const DATA: &str = include_str!("../data/prices.tsv");

/// A model's catalog entry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CatalogEntry {
    /// Its prices.
    pub price: PriceConfig,
    /// Largest prompt, in tokens, when published.
    pub max_input_tokens: Option<u64>,
    /// Largest answer, in tokens, when published.
    pub max_output_tokens: Option<u64>,
}

fn catalog() -> &'static HashMap<(&'static str, &'static str), CatalogEntry> {
    static CATALOG: OnceLock<HashMap<(&'static str, &'static str), CatalogEntry>> = OnceLock::new();
    CATALOG.get_or_init(|| {
        DATA.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|line| {
                let f: Vec<&str> = line.split('\t').collect();
                let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
                let int = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
                let entry = CatalogEntry {
                    price: PriceConfig {
                        input_per_1m: num(2)?,
                        output_per_1m: num(3)?,
                        cached_input_per_1m: num(4),
                        cache_write_per_1m: num(5),
                    },
                    max_input_tokens: int(6),
                    max_output_tokens: int(7),
                };
                Some(((*f.first()?, *f.get(1)?), entry))
            })
            .collect()
    })
}

/// The catalog's entry for `model` on a provider of `kind`, if it has one.
pub fn lookup(kind: ProviderKind, model: &str) -> Option<CatalogEntry> {
    catalog().get(&(kind.name(), model)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_models_are_priced_and_self_hosted_ones_are_not() {
        let gpt = lookup(ProviderKind::OpenAi, "gpt-4o").expect("gpt-4o");
        assert_eq!(gpt.price.input_per_1m, 2.5);
        assert_eq!(gpt.price.output_per_1m, 10.0);
        assert_eq!(gpt.price.cached_input_per_1m, Some(1.25));
        assert_eq!(gpt.max_output_tokens, Some(16_384));
        let claude = lookup(ProviderKind::Anthropic, "claude-sonnet-4-5").expect("claude");
        assert_eq!(claude.price.cache_write_per_1m, Some(3.75));
        assert!(lookup(ProviderKind::Gemini, "gemini-2.5-flash").is_some());
        assert!(lookup(ProviderKind::Vllm, "gpt-4o").is_none());
        assert!(lookup(ProviderKind::OpenAi, "no-such-model").is_none());
        assert!(catalog().len() > 500, "{}", catalog().len());
    }
}
