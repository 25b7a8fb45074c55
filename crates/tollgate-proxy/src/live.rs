//! [`LiveState`]: everything a request needs from the config, built once and swapped whole.
//!
//! A request loads one `Arc<LiveState>` when it starts and keeps it to the end, so a reload never
//! mixes two versions inside one request. Counters that must outlive a reload (health, rate
//! limits, budgets, circuit state) do not live here.

use crate::health::HealthRegistry;
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tollgate_config::{Config, KeyHash, ModelConfig, ProviderConfig, Strategy, Target, VirtualKey};
use tollgate_policy::{Limits, PolicyEngine, Price, Script};
use tollgate_providers::Adapter;
use tollgate_types::{Price as TokenPrice, Usage, Usd};

/// A provider ready for requests.
#[derive(Debug)]
pub struct Provider {
    /// Its validated config.
    pub config: ProviderConfig,
    /// Its wire dialect.
    pub adapter: Adapter,
}

/// Why a config could not become a live state. Each line reads `file:line:col: reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct BuildError(pub Vec<String>);

/// The compiled routing scripts of one config version.
#[derive(Debug)]
pub struct Policies {
    /// The engine, with the configured limits.
    pub engine: PolicyEngine,
    scripts: HashMap<PathBuf, Script>,
    /// Per script: moving average of its run time, and how many runs it has had.
    run_stats: HashMap<PathBuf, RunStats>,
}

#[derive(Debug, Default)]
struct RunStats {
    micros: AtomicU64,
    runs: AtomicU64,
}

/// Runs a script must complete, each fast, before it is trusted to run inline on a worker.
const WARM_UP_RUNS: u64 = 8;

/// A script averaging more than this runs with `block_in_place`, so the worker's other requests
/// move to another thread instead of waiting for it.
const SLOW_SCRIPT_MICROS: u64 = 500;

impl Policies {
    /// The compiled script at `path`.
    pub fn script(&self, path: &PathBuf) -> Option<&Script> {
        self.scripts.get(path)
    }

    /// Whether the script at `path` should run off the worker: it is new (still in its first
    /// runs after a load, so a script that loops forever never blocks a worker even once) or it
    /// has been slow lately.
    pub fn is_slow(&self, path: &PathBuf) -> bool {
        self.run_stats.get(path).is_some_and(|s| {
            s.runs.load(Ordering::Relaxed) < WARM_UP_RUNS
                || s.micros.load(Ordering::Relaxed) > SLOW_SCRIPT_MICROS
        })
    }

    /// Records how long one run of the script at `path` took.
    pub fn record_run(&self, path: &PathBuf, took: std::time::Duration) {
        if let Some(s) = self.run_stats.get(path) {
            s.runs.fetch_add(1, Ordering::Relaxed);
            let m = &s.micros;
            let sample = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            let old = m.load(Ordering::Relaxed);
            // Weight 1/4: one run into the deadline marks a script slow at once; about five fast
            // runs clear it again.
            m.store(old - old / 4 + sample / 4, Ordering::Relaxed);
        }
    }

    /// How many scripts are loaded.
    pub fn len(&self) -> usize {
        self.scripts.len()
    }

    /// Whether no script is loaded.
    pub fn is_empty(&self) -> bool {
        self.scripts.is_empty()
    }
}

/// The live, immutable view of one config version.
#[derive(Debug)]
pub struct LiveState {
    /// The config it was built from.
    pub config: Arc<Config>,
    /// Increases by one with every successful (re)load; echoed as `x-tollgate-config-version`.
    pub version: u64,
    providers: HashMap<String, Arc<Provider>>,
    models: HashMap<String, ModelConfig>,
    keys: HashMap<KeyHash, VirtualKey>,
    /// Every configured `provider/model` pair.
    target_ids: HashSet<String>,
    /// Prices per target id, as scripts see them.
    pub prices: Arc<HashMap<String, Price>>,
    /// Per-token prices for cost accounting, by provider, then upstream model.
    token_prices: HashMap<String, HashMap<String, TokenPrice>>,
    /// Compiled routing scripts.
    pub policies: Policies,
    /// Compiled guardrails.
    pub guardrails: tollgate_guard::Guardrails,
    /// Loaded Wasm plugins, in order.
    pub plugins: tollgate_plugins::Plugins,
    /// `GET /v1/models`, rendered once.
    pub models_list: Bytes,
}

impl LiveState {
    /// Builds the live state of `config`, compiling every routing script it names.
    pub fn build(config: Config, version: u64) -> Result<LiveState, BuildError> {
        Self::build_with(config, version, false)
    }

    /// Like [`Self::build`]; with `trace`, scripts record the lines they run
    /// (see [`PolicyEngine::take_trace`]), for `tollgate route --explain`.
    pub fn build_with(config: Config, version: u64, trace: bool) -> Result<LiveState, BuildError> {
        let providers = config
            .providers
            .iter()
            .map(|(name, p)| {
                let provider = Provider {
                    config: p.clone(),
                    adapter: Adapter::for_provider(p),
                };
                (name.clone(), Arc::new(provider))
            })
            .collect();
        let models: HashMap<String, ModelConfig> = config
            .models
            .iter()
            .map(|(a, m)| (a.clone(), m.clone()))
            .collect();
        let keys = config.keys.iter().map(|k| (k.hash, k.clone())).collect();
        let target_ids = config
            .models
            .values()
            .flat_map(|m| m.targets.iter().map(Target::id))
            .collect();
        let prices: HashMap<String, Price> = config
            .prices
            .iter()
            .map(|(id, p)| {
                let price = Price {
                    input_per_1m: p.input_per_1m,
                    output_per_1m: p.output_per_1m,
                };
                (id.clone(), price)
            })
            .collect();
        let mut token_prices: HashMap<String, HashMap<String, TokenPrice>> = HashMap::new();
        for (id, p) in &config.prices {
            if let Some((provider, model)) = id.split_once('/') {
                token_prices
                    .entry(provider.to_owned())
                    .or_default()
                    .insert(model.to_owned(), p.price());
            }
        }
        let policies = compile_policies(&config, trace)?;
        let guardrails = crate::guard::build(&config.guardrails);
        let plugins = tollgate_plugins::Plugins::load(&config.plugins)
            .map_err(|e| BuildError(vec![e.to_string()]))?;
        let data: Vec<serde_json::Value> = config
            .models
            .keys()
            .map(|alias| model_object(alias))
            .collect();
        let models_list =
            Bytes::from(serde_json::json!({"object": "list", "data": data}).to_string());
        Ok(LiveState {
            config: Arc::new(config),
            version,
            providers,
            models,
            keys,
            target_ids,
            prices: Arc::new(prices),
            token_prices,
            policies,
            guardrails,
            plugins,
            models_list,
        })
    }

    /// What `usage` cost on `provider`'s `model`; `None` when that target has no price.
    pub fn cost(&self, provider: &str, model: &str, usage: &Usage) -> Option<Usd> {
        let price = self.token_prices.get(provider)?.get(model)?;
        Some(price.cost(usage))
    }

    /// The provider called `name`.
    pub fn provider(&self, name: &str) -> Option<&Arc<Provider>> {
        self.providers.get(name)
    }

    /// The model alias called `alias`.
    pub fn model(&self, alias: &str) -> Option<&ModelConfig> {
        self.models.get(alias)
    }

    /// Whether clients must present a key: `[[keys]]` are configured, or keys are managed
    /// through the admin API (even before the first is made).
    pub fn auth_required(&self) -> bool {
        !self.keys.is_empty() || self.config.server.admin_key.is_some()
    }

    /// The virtual key with this hash.
    pub fn key(&self, hash: &KeyHash) -> Option<&VirtualKey> {
        self.keys.get(hash)
    }

    /// Resolves a script's target name: a model alias (its targets), or a configured
    /// `provider/model` pair.
    pub fn resolve_target(&self, name: &str) -> Option<Vec<Target>> {
        if let Some(m) = self.models.get(name) {
            return Some(m.targets.clone());
        }
        let (provider, model) = name.split_once('/')?;
        self.target_ids.contains(name).then(|| {
            vec![Target {
                provider: provider.to_owned(),
                model: model.to_owned(),
                weight: None,
            }]
        })
    }

    /// The order in which to try a model's static targets, by its strategy.
    ///
    /// - `priority`: the configured order.
    /// - `weighted`: the first target drawn by weight, the rest in configured order, so
    ///   failover stays predictable.
    /// - `least_latency`: power of two choices: of two targets drawn at random, the one with
    ///   the lower moving-average latency goes first (an unmeasured one counts as fastest, so
    ///   it gets measured), the rest in configured order.
    pub fn attempt_order(&self, model: &ModelConfig, health: &HealthRegistry) -> Vec<Target> {
        let mut order: Vec<Target> = model.targets.clone();
        if order.len() < 2 {
            return order;
        }
        let first = match model.strategy {
            Strategy::Priority => 0,
            Strategy::Weighted => {
                let total: u64 = order.iter().map(|t| u64::from(t.weight.unwrap_or(1))).sum();
                let mut pick = rand::random_range(0..total);
                order
                    .iter()
                    .position(|t| {
                        let w = u64::from(t.weight.unwrap_or(1));
                        if pick < w {
                            true
                        } else {
                            pick -= w;
                            false
                        }
                    })
                    .unwrap_or(0)
            }
            Strategy::LeastLatency => {
                let a = rand::random_range(0..order.len());
                let b = (a + rand::random_range(1..order.len())) % order.len();
                let latency = |i: usize| health.snapshot(&order[i].id()).ewma_latency_ms;
                if latency(b) < latency(a) { b } else { a }
            }
        };
        let chosen = order.remove(first);
        order.insert(0, chosen);
        order
    }
}

/// Compiles every script the config names, each once, collecting every error.
fn compile_policies(config: &Config, trace: bool) -> Result<Policies, BuildError> {
    let defaults = Limits::default();
    let limits = Limits {
        max_operations: config.policy.max_operations,
        timeout: config.policy.timeout,
        // Prompts reach scripts as strings: a legal request must never trip the string limit.
        max_string_size: defaults
            .max_string_size
            .max(config.limits.max_request_bytes),
        ..defaults
    };
    let engine = if trace {
        PolicyEngine::new_tracing(limits)
    } else {
        PolicyEngine::new(limits)
    };
    let mut scripts = HashMap::new();
    let mut errors = Vec::new();
    for path in config.script_paths() {
        let shown = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(source) => match engine.compile(&shown, &source) {
                Ok(script) => {
                    scripts.insert(path, script);
                }
                Err(e) => errors.push(e.to_string()),
            },
            Err(e) => errors.push(format!("{shown}:0:0: cannot read script: {e}")),
        }
    }
    if errors.is_empty() {
        let run_stats = scripts
            .keys()
            .map(|p| (p.clone(), RunStats::default()))
            .collect();
        Ok(Policies {
            engine,
            scripts,
            run_stats,
        })
    } else {
        Err(BuildError(errors))
    }
}

/// One entry of `/v1/models`.
pub fn model_object(alias: &str) -> serde_json::Value {
    serde_json::json!({"id": alias, "object": "model", "created": 0, "owned_by": "tollgate"})
}
