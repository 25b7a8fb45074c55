//! Money and prices, in integer picodollars, so costs, budgets and the ledger add up exactly.

use crate::Usage;
use std::fmt;

/// An amount of US dollars, held as whole picodollars (1e-12 USD).
///
/// Integer, so a budget counter and the sum of the ledger entries it settled are equal to the
/// last digit, whatever order requests finish in. `u64` holds up to about $18 million; every
/// operation saturates rather than wraps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(u64);

const PICOS_PER_DOLLAR: f64 = 1e12;

impl Usd {
    /// Nothing.
    pub const ZERO: Usd = Usd(0);
    /// The largest amount: "no limit".
    pub const MAX: Usd = Usd(u64::MAX);

    /// An amount in picodollars.
    pub const fn from_picos(picos: u64) -> Usd {
        Usd(picos)
    }

    /// An amount in dollars, rounded to the picodollar. Negative or NaN is zero; too large
    /// saturates.
    pub fn from_dollars(dollars: f64) -> Usd {
        // `as` saturates float-to-int casts and maps NaN to 0, which is what we want here.
        Usd((dollars * PICOS_PER_DOLLAR).round() as u64)
    }

    /// The amount in picodollars.
    pub const fn picos(self) -> u64 {
        self.0
    }

    /// The amount in dollars (for display and metrics; sums stay in picodollars).
    pub fn dollars(self) -> f64 {
        self.0 as f64 / PICOS_PER_DOLLAR
    }

    /// `self + other`, saturating.
    #[must_use]
    pub const fn saturating_add(self, other: Usd) -> Usd {
        Usd(self.0.saturating_add(other.0))
    }

    /// `self - other`, or zero.
    #[must_use]
    pub const fn saturating_sub(self, other: Usd) -> Usd {
        Usd(self.0.saturating_sub(other.0))
    }

    /// `self × n`, saturating: the price of `n` tokens.
    #[must_use]
    pub const fn times(self, n: u64) -> Usd {
        Usd(self.0.saturating_mul(n))
    }
}

/// Dollars with every significant digit and no float noise: `0.000125`, `1.5`, `0`.
impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, frac) = (self.0 / 1_000_000_000_000, self.0 % 1_000_000_000_000);
        if frac == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{frac:012}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

/// What one token of each kind costs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Price {
    /// A prompt token that was neither read from nor written to the provider's cache.
    pub input: Usd,
    /// A generated token (reasoning included).
    pub output: Usd,
    /// A prompt token read from the provider's cache.
    pub cached_input: Usd,
    /// A prompt token written to the provider's cache.
    pub cache_write: Usd,
    /// Higher prices for the whole request when its prompt is long (Gemini's and Claude's
    /// long-context tiers, GPT's above 272k).
    pub long_context: Option<LongContextPrice>,
}

/// A long-context tier: a request whose prompt is over `above_input_tokens` pays these
/// prices for every token, not only for those past the threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LongContextPrice {
    /// Prompts longer than this many tokens (cached ones included) are priced here.
    pub above_input_tokens: u64,
    /// A fresh prompt token.
    pub input: Usd,
    /// A generated token.
    pub output: Usd,
    /// A prompt token read from the cache.
    pub cached_input: Usd,
    /// A prompt token written to the cache.
    pub cache_write: Usd,
}

impl LongContextPrice {
    /// A tier from USD per million tokens; cache prices left out are the tier's input price.
    pub fn per_million(
        above_input_tokens: u64,
        input: f64,
        output: f64,
        cached_input: Option<f64>,
        cache_write: Option<f64>,
    ) -> LongContextPrice {
        let base = Price::per_million(input, output, cached_input, cache_write);
        LongContextPrice {
            above_input_tokens,
            input: base.input,
            output: base.output,
            cached_input: base.cached_input,
            cache_write: base.cache_write,
        }
    }
}

impl Price {
    /// A price from USD per million tokens, the unit price lists use. A cache price left out
    /// is the input price: a gateway that does not know a discount must not invent one, so
    /// costs err on the side of the bill, never below it.
    pub fn per_million(
        input: f64,
        output: f64,
        cached_input: Option<f64>,
        cache_write: Option<f64>,
    ) -> Price {
        let per_token = |per_1m: f64| Usd::from_dollars(per_1m / 1e6);
        Price {
            input: per_token(input),
            output: per_token(output),
            cached_input: per_token(cached_input.unwrap_or(input)),
            cache_write: per_token(cache_write.unwrap_or(input)),
            long_context: None,
        }
    }

    /// This price with a long-context tier.
    #[must_use]
    pub fn with_long_context(mut self, tier: LongContextPrice) -> Price {
        self.long_context = Some(tier);
        self
    }

    /// The cost of `usage`. Cache reads and writes are subsets of the input tokens (see
    /// [`Usage`]), so each prompt token is priced exactly once.
    pub fn cost(&self, usage: &Usage) -> Usd {
        let (input, output, cached_input, cache_write) = match self.long_context {
            Some(t) if usage.input_tokens > t.above_input_tokens => {
                (t.input, t.output, t.cached_input, t.cache_write)
            }
            _ => (self.input, self.output, self.cached_input, self.cache_write),
        };
        let fresh = usage
            .input_tokens
            .saturating_sub(usage.cached_input_tokens)
            .saturating_sub(usage.cache_write_tokens);
        input
            .times(fresh)
            .saturating_add(cached_input.times(usage.cached_input_tokens))
            .saturating_add(cache_write.times(usage.cache_write_tokens))
            .saturating_add(output.times(usage.output_tokens))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dollars(s: &str) -> Usd {
        Usd::from_dollars(s.parse().expect("number"))
    }

    #[test]
    fn amounts_print_exactly() {
        assert_eq!(Usd::ZERO.to_string(), "0");
        assert_eq!(Usd::from_picos(1).to_string(), "0.000000000001");
        assert_eq!(dollars("1.5").to_string(), "1.5");
        assert_eq!(dollars("0.000125").to_string(), "0.000125");
        assert_eq!(Usd::from_dollars(-3.0), Usd::ZERO);
        assert_eq!(Usd::from_dollars(f64::NAN), Usd::ZERO);
        assert_eq!(Usd::MAX.saturating_add(dollars("1")), Usd::MAX);
    }

    // The fixtures below are worked by hand from each provider's documented usage shape and
    // published per-million prices; the comment shows the arithmetic.

    #[test]
    fn openai_usage_with_cached_and_reasoning_tokens() {
        // gpt-4o: $2.50 input, $1.25 cached input, $10.00 output per 1M tokens.
        let usage = Usage::from_openai(&json!({
            "prompt_tokens": 2000, "completion_tokens": 500, "total_tokens": 2500,
            "prompt_tokens_details": {"cached_tokens": 1500},
            "completion_tokens_details": {"reasoning_tokens": 100}
        }))
        .expect("usage");
        let price = Price::per_million(2.5, 10.0, Some(1.25), None);
        // 500 fresh × 2.5e-6 + 1500 cached × 1.25e-6 + 500 out × 10e-6
        // = 0.00125 + 0.001875 + 0.005
        assert_eq!(price.cost(&usage).to_string(), "0.008125");
    }

    #[test]
    fn anthropic_usage_counts_cache_reads_and_writes_once() {
        // Claude Sonnet 4: $3 input, $0.30 cache read, $3.75 cache write, $15 output per 1M.
        let usage = Usage::from_anthropic(&json!({
            "input_tokens": 100, "cache_read_input_tokens": 2000,
            "cache_creation_input_tokens": 500, "output_tokens": 300
        }));
        let price = Price::per_million(3.0, 15.0, Some(0.3), Some(3.75));
        // 100 × 3e-6 + 2000 × 0.3e-6 + 500 × 3.75e-6 + 300 × 15e-6
        // = 0.0003 + 0.0006 + 0.001875 + 0.0045
        assert_eq!(price.cost(&usage).to_string(), "0.007275");
    }

    #[test]
    fn gemini_usage_bills_thinking_as_output() {
        // Gemini 2.5 Flash: $0.30 input, $0.075 cached, $2.50 output (thinking included).
        let usage = Usage::from_gemini(&json!({
            "promptTokenCount": 3000, "cachedContentTokenCount": 1000,
            "candidatesTokenCount": 200, "thoughtsTokenCount": 300, "totalTokenCount": 3500
        }));
        let price = Price::per_million(0.3, 2.5, Some(0.075), None);
        // 2000 fresh × 0.3e-6 + 1000 × 0.075e-6 + (200 + 300) × 2.5e-6
        // = 0.0006 + 0.000075 + 0.00125
        assert_eq!(price.cost(&usage).to_string(), "0.001925");
    }

    #[test]
    fn a_long_prompt_pays_the_long_context_tier_on_every_token() {
        // Gemini 2.5 Pro: $1.25 / $10 per 1M up to 200k prompt tokens, $2.50 / $15 above,
        // cached $0.125 / $0.25.
        let price = Price::per_million(1.25, 10.0, Some(0.125), None).with_long_context(
            LongContextPrice::per_million(200_000, 2.5, 15.0, Some(0.25), None),
        );
        let usage = |input_tokens, cached_input_tokens| Usage {
            input_tokens,
            cached_input_tokens,
            output_tokens: 1000,
            ..Usage::default()
        };
        // 200,000 × 1.25e-6 + 1000 × 10e-6 = 0.25 + 0.01: at the threshold, the base tier.
        assert_eq!(price.cost(&usage(200_000, 0)).to_string(), "0.26");
        // 150,000 fresh × 2.5e-6 + 100,000 cached × 0.25e-6 + 1000 × 15e-6
        // = 0.375 + 0.025 + 0.015
        assert_eq!(price.cost(&usage(250_000, 100_000)).to_string(), "0.415");
    }

    #[test]
    fn an_unknown_cache_discount_is_not_invented() {
        let usage = Usage {
            input_tokens: 1000,
            cached_input_tokens: 400,
            cache_write_tokens: 100,
            ..Usage::default()
        };
        let price = Price::per_million(1.0, 2.0, None, None);
        assert_eq!(price.cost(&usage), dollars("0.001"));
    }
}
