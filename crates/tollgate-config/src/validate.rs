//! Stage two: interpolate, check, apply defaults. Every error quotes its config path.

use crate::error::{ConfigError, Diagnostic};
use crate::interpolate::{InterpolateError, interpolate};
use crate::locate::{ConfigPath, locate};
use crate::presets::{ProviderKind, WireFormat};
use crate::raw::{RawConfig, RawMock, RawProvider};
use crate::resilience::{check_resilience, check_strategy};
use crate::types::{
    Config, KeyHash, Limits, MockSettings, ModelConfig, OnPolicyError, PolicyConfig, PriceConfig,
    ProviderConfig, ServerConfig, SharedSettings, Target, Timeouts, UpstreamUrl, VirtualKey,
};
use secrecy::SecretString;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEFAULT_MAX_REQUEST_BYTES: u64 = 32 * 1024 * 1024;

/// Collects diagnostics, each located from its config path.
pub(crate) struct Checker<'a> {
    text: &'a str,
    file: &'a str,
    diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    pub(crate) fn error(&mut self, path: &ConfigPath, message: impl std::fmt::Display) {
        let (line, col) = locate(self.text, path);
        self.diags.push(Diagnostic {
            file: self.file.to_owned(),
            line,
            col,
            message: format!("{path}: {message}"),
        });
    }
}

/// Interpolates every string in `text`'s TOML tree, then checks the result.
pub(crate) fn validate(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut ck = Checker {
        text,
        file,
        diags: Vec::new(),
    };
    // Stage one already parsed this text and located its errors, so these two cannot fail on
    // their own; the mapping is only a guard.
    let unlocated = |e: toml::de::Error| {
        ConfigError::Invalid(vec![Diagnostic {
            file: file.to_owned(),
            line: 1,
            col: 1,
            message: e.message().to_owned(),
        }])
    };
    let mut tree: toml::Table = toml::from_str(text).map_err(unlocated)?;
    for (k, v) in tree.iter_mut() {
        interpolate_value(v, &ConfigPath::default().key(k), env, &mut ck);
    }
    if !ck.diags.is_empty() {
        return Err(ConfigError::Invalid(ck.diags));
    }
    let raw = RawConfig::deserialize(tree).map_err(unlocated)?;
    let config = check(raw, env, &mut ck, file);
    if ck.diags.is_empty() {
        Ok(config)
    } else {
        ck.diags.sort_by_key(|d| (d.line, d.col));
        Err(ConfigError::Invalid(ck.diags))
    }
}

fn interpolate_value(
    v: &mut toml::Value,
    path: &ConfigPath,
    env: &dyn Fn(&str) -> Option<String>,
    ck: &mut Checker<'_>,
) {
    match v {
        toml::Value::String(s) => match interpolate(s, env) {
            Ok(out) => *s = out,
            Err(InterpolateError::Unset(name)) => ck.error(
                path,
                format_args!("environment variable `{name}` is not set and has no default (write `${{{name}:-default}}`)"),
            ),
            Err(InterpolateError::Malformed) => {
                ck.error(path, "malformed `${...}`: expected `${VAR}` or `${VAR:-default}`")
            }
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_value(item, &path.index(i), env, ck);
            }
        }
        toml::Value::Table(t) => {
            for (k, item) in t.iter_mut() {
                interpolate_value(item, &path.key(k), env, ck);
            }
        }
        _ => {}
    }
}

fn check(
    raw: RawConfig,
    env: &dyn Fn(&str) -> Option<String>,
    ck: &mut Checker<'_>,
    file: &str,
) -> Config {
    let root = ConfigPath::default();
    let server = check_server(&raw, &root.key("server"), ck);
    let max_request_bytes = raw
        .limits
        .max_request_bytes
        .unwrap_or(DEFAULT_MAX_REQUEST_BYTES);
    if max_request_bytes == 0 {
        ck.error(
            &root.key("limits").key("max_request_bytes"),
            "must be greater than 0",
        );
    }
    let providers: BTreeMap<String, ProviderConfig> = raw
        .providers
        .iter()
        .filter_map(|(name, p)| {
            check_provider(name, p, &root.key("providers").key(name), env, ck)
                .map(|p| (name.clone(), p))
        })
        .collect();
    let resilience = check_resilience(&raw.resilience, &root.key("resilience"), ck);
    let mut models = BTreeMap::new();
    for (alias, m) in &raw.models {
        let path = root.key("models").key(alias);
        if m.targets.is_empty() && m.cascade.is_none() {
            ck.error(&path.key("targets"), "a model needs at least one target");
        }
        let mut targets = Vec::with_capacity(m.targets.len());
        for (i, t) in m.targets.iter().enumerate() {
            let tp = path.key("targets").index(i);
            if !raw.providers.contains_key(&t.provider) {
                let known: Vec<&str> = raw.providers.keys().map(String::as_str).collect();
                ck.error(
                    &tp.key("provider"),
                    format_args!(
                        "unknown provider \"{}\" (known: {})",
                        t.provider,
                        known.join(", ")
                    ),
                );
            }
            if t.model.is_empty() {
                ck.error(&tp.key("model"), "must not be empty");
            }
            if t.weight == Some(0) {
                ck.error(
                    &tp.key("weight"),
                    "must be at least 1 (remove the target to disable it)",
                );
            }
            targets.push(Target {
                provider: t.provider.clone(),
                model: t.model.clone(),
                weight: t.weight,
            });
        }
        models.insert(
            alias.clone(),
            ModelConfig {
                name: alias.clone(),
                targets,
                policy: m.policy.as_deref().map(|p| resolve_path(file, p)),
                strategy: check_strategy(m, &path, ck),
                retries: m.retries.unwrap_or(resilience.retries),
                timeout: m
                    .timeout_ms
                    .map_or(resilience.request_timeout, Duration::from_millis),
                cascade: None,
            },
        );
    }
    check_cascades(&raw, file, &mut models, ck);
    let mut seen = HashSet::new();
    let mut keys = Vec::with_capacity(raw.keys.len());
    for (i, k) in raw.keys.iter().enumerate() {
        let kp = root.key("keys").index(i);
        match parse_key_hash(&k.hash) {
            Some(hash) => {
                if !seen.insert(hash) {
                    ck.error(&kp.key("hash"), "duplicate key hash");
                }
                let expires_at = k.expires.as_ref().and_then(|d| {
                    let at = match d {
                        crate::raw::RawDateTime::Toml(d) => crate::spend::unix_seconds(d),
                        crate::raw::RawDateTime::Text(t) => {
                            t.parse().ok().and_then(|d| crate::spend::unix_seconds(&d))
                        }
                    };
                    if at.is_none() {
                        ck.error(
                            &kp.key("expires"),
                            "expected a date-time with an offset, like 2026-12-31T23:59:59Z",
                        );
                    }
                    at
                });
                keys.push(VirtualKey {
                    name: k.name.clone(),
                    hash,
                    tenant: k.tenant.clone(),
                    team: k.team.clone(),
                    expires_at,
                    revoked: k.revoked,
                    budget: None,
                    rate_limit: None,
                });
            }
            None => ck.error(
                &kp.key("hash"),
                "expected `sha256:` followed by 64 hex digits (run `tollgate hash-key KEY`)",
            ),
        }
    }
    let mut prices = check_prices(&raw, &root.key("prices"), ck);
    let spend = crate::spend::check_spend(&raw, &root.key("spend"), ck);
    price_targets(
        &providers,
        &models,
        &mut prices,
        spend.unpriced_is_error,
        ck,
    );
    Config {
        source: file.to_owned(),
        server,
        limits: Limits {
            max_request_bytes: usize::try_from(max_request_bytes).unwrap_or(usize::MAX),
        },
        providers,
        models,
        keys,
        policy: check_policy(&raw, file, &root.key("policy"), ck),
        prices,
        resilience,
        shared: check_shared(&raw, &root.key("shared"), ck),
        spend,
        budgets: crate::spend::check_budgets(&raw, &root.key("budgets"), ck),
        rate_limits: crate::spend::check_rate_limits(&raw, &root.key("rate_limits"), ck),
        alerts: crate::spend::check_alerts(&raw, &root.key("alerts"), ck),
        guardrails: crate::guardrails::check_guardrails(&raw, &root.key("guardrails"), ck),
        plugins: crate::plugins::check_plugins(&raw, file, &root.key("plugins"), ck),
    }
}

/// Resolves and checks each model's cascade once every alias is known; a cascade model's
/// targets become every tier's, so prices and scripts' `ctx.targets` cover them.
fn check_cascades(
    raw: &RawConfig,
    file: &str,
    models: &mut BTreeMap<String, ModelConfig>,
    ck: &mut Checker<'_>,
) {
    let known = models.clone();
    let resolve = |name: &str| -> Result<Vec<Target>, String> {
        if let Some(m) = known.get(name) {
            if raw.models.get(name).is_some_and(|r| r.cascade.is_some()) {
                return Err(format!(
                    "{name:?} is itself a cascade: name plain models in tiers"
                ));
            }
            return Ok(m.targets.clone());
        }
        match name.split_once('/') {
            Some((provider, model))
                if raw.providers.contains_key(provider) && !model.is_empty() =>
            {
                Ok(vec![Target {
                    provider: provider.to_owned(),
                    model: model.to_owned(),
                    weight: None,
                }])
            }
            _ => Err(format!(
                "unknown target {name:?} (expected a model alias or provider/model)"
            )),
        }
    };
    let has_model = |name: &str| {
        known.contains_key(name) && raw.models.get(name).is_some_and(|r| r.cascade.is_none())
    };
    let script_path = |p: &str| resolve_path(file, p);
    let cx = crate::cascade::Context {
        resolve: &resolve,
        has_model: &has_model,
        script_path: Some(&script_path),
    };
    for (alias, m) in &raw.models {
        let Some(rc) = &m.cascade else { continue };
        let path = ConfigPath::default()
            .key("models")
            .key(alias)
            .key("cascade");
        let cascade = crate::cascade::check(rc, &path, &cx, &mut |p, msg| ck.error(p, msg));
        if !m.targets.is_empty() {
            ck.error(
                &ConfigPath::default()
                    .key("models")
                    .key(alias)
                    .key("targets"),
                "a cascade model's targets are its tiers': remove `targets`",
            );
        }
        if let Some(model) = models.get_mut(alias) {
            model.targets = cascade.all_targets();
            model.cascade = Some(std::sync::Arc::new(cascade));
        }
    }
}

/// Gives every target without a `[prices]` entry its catalog price, if the catalog has one;
/// with `[spend] unpriced = "error"`, a target left without a price is a config error.
fn price_targets(
    providers: &BTreeMap<String, ProviderConfig>,
    models: &BTreeMap<String, ModelConfig>,
    prices: &mut BTreeMap<String, PriceConfig>,
    unpriced_is_error: bool,
    ck: &mut Checker<'_>,
) {
    for (alias, m) in models {
        for (i, t) in m.targets.iter().enumerate() {
            let id = t.id();
            if prices.contains_key(&id) {
                continue;
            }
            let kind = providers.get(&t.provider).map(|p| p.kind);
            match kind.and_then(|k| crate::catalog::lookup(k, &t.model)) {
                Some(entry) => {
                    prices.insert(id, entry.price);
                }
                None if unpriced_is_error => ck.error(
                    &ConfigPath::default()
                        .key("models")
                        .key(alias)
                        .key("targets")
                        .index(i),
                    format!("no price for `{id}`: add [prices.\"{id}\"] (the catalog has none)"),
                ),
                None => {}
            }
        }
    }
}

fn check_shared(raw: &RawConfig, path: &ConfigPath, ck: &mut Checker<'_>) -> SharedSettings {
    let url = raw.shared.redis_url.as_deref().filter(|u| !u.is_empty());
    if let Some(u) = url
        && !(u.starts_with("redis://") || u.starts_with("rediss://") || u.starts_with("unix://"))
    {
        // The value is not quoted: it may hold a password.
        ck.error(
            &path.key("redis_url"),
            "must start with redis://, rediss:// or unix://",
        );
    }
    let database = raw.shared.database_url.as_deref().filter(|u| !u.is_empty());
    if let Some(u) = database
        && !(u.starts_with("postgres://") || u.starts_with("postgresql://"))
    {
        ck.error(
            &path.key("database_url"),
            "must start with postgres:// or postgresql://",
        );
    }
    SharedSettings {
        redis_url: url.map(|u| SecretString::from(u.to_owned())),
        database_url: database.map(|u| SecretString::from(u.to_owned())),
        prefix: raw
            .shared
            .prefix
            .clone()
            .unwrap_or_else(|| "tollgate".to_owned()),
    }
}

/// Resolves a path in the config relative to the config file's directory.
fn resolve_path(file: &str, p: &str) -> PathBuf {
    Path::new(file).parent().unwrap_or(Path::new(".")).join(p)
}

fn check_policy(
    raw: &RawConfig,
    file: &str,
    path: &ConfigPath,
    ck: &mut Checker<'_>,
) -> PolicyConfig {
    let p = &raw.policy;
    let on_error = match p.on_error.as_deref() {
        None | Some("fallback") => OnPolicyError::Fallback,
        Some("deny") => OnPolicyError::Deny,
        Some(other) => {
            ck.error(
                &path.key("on_error"),
                format_args!("`{other}`: expected \"fallback\" or \"deny\""),
            );
            OnPolicyError::Fallback
        }
    };
    if p.timeout_ms == Some(0) {
        ck.error(&path.key("timeout_ms"), "must be at least 1");
    }
    PolicyConfig {
        default: p.default.as_deref().map(|d| resolve_path(file, d)),
        on_error,
        max_operations: p.max_operations.unwrap_or(200_000),
        timeout: Duration::from_millis(p.timeout_ms.unwrap_or(10)),
        header_allowlist: p
            .header_allowlist
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
    }
}

fn check_prices(
    raw: &RawConfig,
    path: &ConfigPath,
    ck: &mut Checker<'_>,
) -> BTreeMap<String, PriceConfig> {
    let mut prices = BTreeMap::new();
    for (id, p) in &raw.prices {
        if !id.contains('/') {
            ck.error(
                &path.key(id),
                "a price key is a target id: `provider/model`",
            );
        }
        let lc = p.long_context.as_ref();
        let amounts = [
            Some(p.input_per_1m),
            Some(p.output_per_1m),
            p.cached_input_per_1m,
            p.cache_write_per_1m,
            lc.map(|t| t.input_per_1m),
            lc.map(|t| t.output_per_1m),
            lc.and_then(|t| t.cached_input_per_1m),
            lc.and_then(|t| t.cache_write_per_1m),
        ];
        if !amounts.iter().flatten().all(|v| v.is_finite() && *v >= 0.0) {
            ck.error(&path.key(id), "prices must be non-negative numbers");
        }
        prices.insert(
            id.clone(),
            PriceConfig {
                input_per_1m: p.input_per_1m,
                output_per_1m: p.output_per_1m,
                cached_input_per_1m: p.cached_input_per_1m,
                cache_write_per_1m: p.cache_write_per_1m,
                long_context: lc.map(|t| crate::types::LongContextConfig {
                    above_input_tokens: t.above_input_tokens,
                    input_per_1m: t.input_per_1m,
                    output_per_1m: t.output_per_1m,
                    cached_input_per_1m: t.cached_input_per_1m,
                    cache_write_per_1m: t.cache_write_per_1m,
                }),
            },
        );
    }
    prices
}

fn check_server(raw: &RawConfig, path: &ConfigPath, ck: &mut Checker<'_>) -> ServerConfig {
    let s = &raw.server;
    let listen = s
        .listen
        .clone()
        .unwrap_or_else(|| "127.0.0.1:4000".to_owned());
    if listen.parse::<SocketAddr>().is_err() {
        ck.error(
            &path.key("listen"),
            format_args!("`{listen}` is not an IP:port address"),
        );
    }
    if let Some(admin) = &s.admin_listen {
        if admin.parse::<SocketAddr>().is_err() {
            ck.error(
                &path.key("admin_listen"),
                format_args!("`{admin}` is not an IP:port address"),
            );
        } else if *admin == listen {
            ck.error(
                &path.key("admin_listen"),
                "must differ from `server.listen`",
            );
        }
    }
    let threads = s.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    if threads == 0 {
        ck.error(&path.key("threads"), "must be at least 1");
    }
    let admin_key = s.admin_key.as_deref().and_then(|k| {
        if k.starts_with("sha256:") {
            let hash = parse_key_hash(k);
            if hash.is_none() {
                ck.error(
                    &path.key("admin_key"),
                    "expected `sha256:` followed by 64 hex digits (run `tollgate hash-key KEY`)",
                );
            }
            hash
        } else if k.len() < 16 {
            // The key itself is not echoed: it is a secret.
            ck.error(
                &path.key("admin_key"),
                "must be at least 16 characters long",
            );
            None
        } else {
            Some(crate::types::hash_key(k))
        }
    });
    if admin_key.is_some() && s.admin_listen.is_none() {
        ck.error(
            &path.key("admin_key"),
            "has no effect without `server.admin_listen`",
        );
    }
    ServerConfig {
        listen,
        admin_listen: s.admin_listen.clone(),
        admin_key,
        threads,
        pid_file: s
            .pid_file
            .clone()
            .unwrap_or_else(|| "/tmp/tollgate.pid".to_owned()),
        upgrade_sock: s
            .upgrade_sock
            .clone()
            .unwrap_or_else(|| "/tmp/tollgate_upgrade.sock".to_owned()),
        grace_period_secs: s.grace_period_secs.unwrap_or(5),
        graceful_shutdown_timeout_secs: s.graceful_shutdown_timeout_secs.unwrap_or(30),
    }
}

fn check_provider(
    name: &str,
    p: &RawProvider,
    path: &ConfigPath,
    env: &dyn Fn(&str) -> Option<String>,
    ck: &mut Checker<'_>,
) -> Option<ProviderConfig> {
    let Some(kind) = ProviderKind::from_name(&p.kind) else {
        let kinds: Vec<&str> = ProviderKind::ALL.iter().map(|(n, _)| *n).collect();
        ck.error(
            &path.key("kind"),
            format_args!(
                "unknown provider kind \"{}\" (expected one of: {})",
                p.kind,
                kinds.join(", ")
            ),
        );
        return None;
    };
    let preset = kind.preset();
    let base_url = match (p.base_url.as_deref(), preset.base_url) {
        (Some(url), _) | (None, Some(url)) => match parse_url(url) {
            Ok(u) => u,
            Err(why) => {
                // The value is not quoted: after `${VAR}` substitution it may hold a secret.
                ck.error(&path.key("base_url"), why);
                return None;
            }
        },
        (None, None) => {
            ck.error(
                path,
                format_args!("`base_url` is required for kind \"{}\"", p.kind),
            );
            return None;
        }
    };
    let key_env = p.api_key_env.as_deref().or(preset.key_env);
    let loopback = matches!(base_url.host.as_str(), "localhost" | "127.0.0.1" | "::1")
        || base_url.host.starts_with("127.");
    if !base_url.tls && !loopback && key_env.is_some_and(|v| env(v).is_some_and(|k| !k.is_empty()))
    {
        ck.error(
            &path.key("base_url"),
            "sends the API key in clear text: use https://, or a loopback address for local servers",
        );
    }
    let api_key = match key_env {
        Some(var) => match env(var).filter(|v| !v.is_empty()) {
            Some(v) => Some(SecretString::from(v)),
            // A hosted kind pointed at a loopback address (a local mock or proxy) may go keyless.
            None if (preset.key_required && !loopback) || p.api_key_env.is_some() => {
                ck.error(
                    &path.key("api_key_env"),
                    format_args!("environment variable `{var}` with the API key is not set"),
                );
                None
            }
            None => None,
        },
        None => None,
    };
    let mut headers = Vec::with_capacity(p.headers.len());
    // Framing and hop-by-hop headers are the gateway's to set; a wrong one desyncs pooled
    // connections.
    const RESERVED: [&str; 10] = [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "expect",
    ];
    for (k, v) in &p.headers {
        let lower = k.to_ascii_lowercase();
        if RESERVED.contains(&lower.as_str()) {
            ck.error(
                &path.key("headers").key(k),
                "is set by the gateway and cannot be configured",
            );
        } else if http_header_name_ok(&lower) && !v.contains(['\r', '\n']) {
            headers.push((lower, v.clone()));
        } else {
            ck.error(&path.key("headers").key(k), "not a valid HTTP header");
        }
    }
    if p.mock.is_some() && kind != ProviderKind::Mock {
        ck.error(&path.key("mock"), "only allowed with kind = \"mock\"");
    }
    let mock =
        (kind == ProviderKind::Mock).then(|| mock_settings(p.mock.as_ref(), &path.key("mock"), ck));
    let ms = |v: Option<u64>, d: u64| Duration::from_millis(v.unwrap_or(d));
    Some(ProviderConfig {
        name: name.to_owned(),
        kind,
        base_url,
        api_key,
        auth: preset.auth,
        wire: mock_wire(kind, p.mock.as_ref(), &path.key("mock").key("wire"), ck),
        api_version: p.api_version.clone().unwrap_or_else(|| {
            match kind {
                ProviderKind::Anthropic => "2023-06-01",
                _ => "2024-10-21",
            }
            .to_owned()
        }),
        headers,
        stream_usage: p
            .stream_usage
            .unwrap_or(kind.wire() == WireFormat::OpenAi && kind != ProviderKind::Mistral),
        timeouts: Timeouts {
            connect: ms(p.connect_timeout_ms, 5_000),
            first_byte: ms(p.first_byte_timeout_ms, 300_000),
            idle: ms(p.idle_timeout_ms, 120_000),
            ttft: ms(p.ttft_timeout_ms.or(p.first_byte_timeout_ms), 300_000),
        },
        mock,
    })
}

fn mock_settings(m: Option<&RawMock>, path: &ConfigPath, ck: &mut Checker<'_>) -> MockSettings {
    let default = RawMock::default();
    let m = m.unwrap_or(&default);
    let listen = m.listen.clone().unwrap_or_else(|| "127.0.0.1:0".to_owned());
    if listen.parse::<SocketAddr>().is_err() {
        ck.error(
            &path.key("listen"),
            format_args!("`{listen}` is not an IP:port address"),
        );
    }
    MockSettings {
        listen,
        ttft: Duration::from_millis(m.ttft_ms.unwrap_or(0)),
        chunk_delay: Duration::from_millis(m.chunk_delay_ms.unwrap_or(0)),
        chunks: m.chunks.unwrap_or(8).max(1),
    }
}

/// The wire format: the kind's own, or for a mock the one its `wire` setting names.
fn mock_wire(
    kind: ProviderKind,
    m: Option<&RawMock>,
    path: &ConfigPath,
    ck: &mut Checker<'_>,
) -> WireFormat {
    let Some(name) = m.and_then(|m| m.wire.as_deref()) else {
        return kind.wire();
    };
    WireFormat::from_name(name).unwrap_or_else(|| {
        let names: Vec<&str> = WireFormat::ALL.iter().map(|(n, _)| *n).collect();
        ck.error(
            path,
            format_args!(
                "unknown wire format `{name}`; expected one of {}",
                names.join(", ")
            ),
        );
        WireFormat::OpenAi
    })
}

fn http_header_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `sha256:<64 hex digits>`, as `tollgate hash-key` prints and the store keeps.
pub fn parse_key_hash(s: &str) -> Option<KeyHash> {
    let hex_part = s.strip_prefix("sha256:")?;
    let bytes = hex::decode(hex_part).ok()?;
    Some(KeyHash(bytes.try_into().ok()?))
}

/// An `http(s)://host[:port][/path]` URL, without query or fragment.
pub fn parse_url(url: &str) -> Result<UpstreamUrl, &'static str> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err("must start with http:// or https://");
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() || authority.contains('@') {
        return Err("needs a host (and no user info)");
    }
    if path.contains(['?', '#']) {
        return Err("must not have a query or fragment");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, tail) = v6.split_once(']').ok_or("unclosed `[` in host")?;
        (h, tail.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| "invalid port")?,
        None if tls => 443,
        None => 80,
    };
    Ok(UpstreamUrl {
        tls,
        host: host.to_owned(),
        port,
        path: path.trim_end_matches('/').to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("https://api.openai.com/v1/").expect("url");
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (true, "api.openai.com", 443, "/v1")
        );
        assert_eq!(u.authority(), "api.openai.com");
        let u = parse_url("http://[::1]:8080").expect("url");
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 8080, "")
        );
        assert_eq!(u.authority(), "[::1]:8080");
        assert!(parse_url("ftp://x").is_err());
        assert!(parse_url("http://x:99999/v1").is_err());
    }
}
