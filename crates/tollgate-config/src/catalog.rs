//! The built-in price catalog: per-token prices and context limits of about 850 hosted models,
//! generated from LiteLLM's MIT-licensed `model_prices_and_context_window.json` by
//! `tools/update_prices.py` (`data/prices.tsv`, notice in `data/LICENSE-litellm`).
//!
//! `[prices."provider/model"]` in the config overrides it; self-hosted kinds (Ollama, vLLM,
//! llama.cpp, `openai_compatible`, the mock) have no catalog prices.

use crate::presets::ProviderKind;
use crate::types::{LongContextConfig, PriceConfig};
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
                // Columns 8..=12: the long-context tier, when the model has one.
                let long_context = int(8).and_then(|above| {
                    Some(LongContextConfig {
                        above_input_tokens: above,
                        input_per_1m: num(9)?,
                        output_per_1m: num(10)?,
                        cached_input_per_1m: num(11),
                        cache_write_per_1m: num(12),
                    })
                });
                let entry = CatalogEntry {
                    price: PriceConfig {
                        input_per_1m: num(2)?,
                        output_per_1m: num(3)?,
                        cached_input_per_1m: num(4),
                        cache_write_per_1m: num(5),
                        long_context,
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
        assert_eq!(gpt.price.long_context, None);
    }

    #[test]
    fn long_context_tiers_come_from_the_catalog() {
        let pro = lookup(ProviderKind::Gemini, "gemini-2.5-pro").expect("gemini-2.5-pro");
        let tier = pro.price.long_context.expect("a tier above 200k");
        assert_eq!(tier.above_input_tokens, 200_000);
        assert_eq!((tier.input_per_1m, tier.output_per_1m), (2.5, 15.0));
        assert_eq!(tier.cached_input_per_1m, Some(0.25));
        let usage = tollgate_types::Usage {
            input_tokens: 300_000,
            output_tokens: 2_000,
            ..tollgate_types::Usage::default()
        };
        // 300,000 × 2.5e-6 + 2,000 × 15e-6 = 0.75 + 0.03
        assert_eq!(pro.price.price().cost(&usage).to_string(), "0.78");
    }
}
