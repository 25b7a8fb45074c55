//! Tollgate's configuration: TOML in, a validated [`Config`] out.
//!
//! Loading runs in two stages, as the rest of the code base expects:
//! 1. [`raw`]: the file's schema with `deny_unknown_fields`; syntax and type errors carry the
//!    file, line and column from the TOML parser.
//! 2. [`validate`]: `${VAR}` / `${VAR:-default}` interpolation of every string, then checks that
//!    quote the config path (`models.gpt-4o.targets[1].provider: unknown provider "opnai"`) and
//!    are located back to a line and column by [`locate`].
//!
//! The validated types ([`Config`], [`ProviderConfig`], [`ModelConfig`], [`VirtualKey`]) are
//! what the proxy builds its live state from. Provider API keys are [`secrecy::SecretString`]s and
//! never appear in `Debug` output or errors.

pub mod cascade;
pub mod catalog;
mod error;
pub mod guardrails;
mod interpolate;
mod locate;
pub mod plugins;
mod presets;
pub mod raw;
mod resilience;
mod spend;
mod types;
mod validate;

pub use error::{ConfigError, Diagnostic};
pub use presets::{AuthStyle, ProviderKind, WireFormat};
pub use resilience::{BreakerSettings, Resilience, Strategy};
pub use spend::{
    AlertSettings, BudgetConfig, BudgetUnit, Caller, Per, Period, RateLimitConfig, Selector,
    SpendSettings, Webhook, parse_timestamp,
};
pub use types::{
    Config, KeyHash, Limits, LongContextConfig, MockSettings, ModelConfig, OnPolicyError,
    PolicyConfig, PriceConfig, ProviderConfig, ServerConfig, SharedSettings, Target, Timeouts,
    UpstreamUrl, VirtualKey, hash_key,
};
pub use validate::parse_key_hash;

use std::path::Path;

/// Reads, interpolates and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.display().to_string(),
        source,
    })?;
    load_str(&text, path, &|name| std::env::var(name).ok())
}

/// Parses and validates config `text`; `path` is used in messages and to resolve relative paths.
/// `env` looks up environment variables (injectable for tests).
pub fn load_str(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    // Stage one, on the text as written, so syntax, type and unknown-field errors keep the
    // parser's exact position.
    let _: raw::RawConfig = toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map_or((1, 1), |s| locate::line_col(text, s.start));
        ConfigError::Invalid(vec![Diagnostic {
            file: file.clone(),
            line,
            col,
            message: e.message().trim().to_owned(),
        }])
    })?;
    validate::validate(text, &file, env)
}
