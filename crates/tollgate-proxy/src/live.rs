//! [`LiveState`]: everything a request needs from the config, built once and swapped whole.
//!
//! A request loads one `Arc<LiveState>` when it starts and keeps it to the end, so a reload never
//! mixes two versions inside one request. Counters that must outlive a reload (rate limits,
//! budgets, circuit state) do not live here.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use tollgate_config::{Config, KeyHash, ModelConfig, ProviderConfig, Target, VirtualKey};
use tollgate_providers::Adapter;

/// A provider ready for requests.
#[derive(Debug)]
pub struct Provider {
    /// Its validated config.
    pub config: ProviderConfig,
    /// Its wire dialect.
    pub adapter: Adapter,
}

/// The live, immutable view of one config version.
#[derive(Debug)]
pub struct LiveState {
    /// The config it was built from.
    pub config: Arc<Config>,
    providers: HashMap<String, Arc<Provider>>,
    models: HashMap<String, ModelConfig>,
    keys: HashMap<KeyHash, VirtualKey>,
    /// `GET /v1/models`, rendered once.
    pub models_list: Bytes,
}

impl LiveState {
    /// Builds the live state of `config`.
    pub fn build(config: Config) -> LiveState {
        let providers = config
            .providers
            .iter()
            .map(|(name, p)| {
                let provider = Provider {
                    config: p.clone(),
                    adapter: Adapter::for_kind(p.kind),
                };
                (name.clone(), Arc::new(provider))
            })
            .collect();
        let models = config
            .models
            .iter()
            .map(|(alias, m)| (alias.clone(), m.clone()))
            .collect();
        let keys = config.keys.iter().map(|k| (k.hash, k.clone())).collect();
        let data: Vec<serde_json::Value> = config
            .models
            .keys()
            .map(|alias| model_object(alias))
            .collect();
        let models_list =
            Bytes::from(serde_json::json!({"object": "list", "data": data}).to_string());
        LiveState {
            config: Arc::new(config),
            providers,
            models,
            keys,
            models_list,
        }
    }

    /// The provider called `name`.
    pub fn provider(&self, name: &str) -> Option<&Arc<Provider>> {
        self.providers.get(name)
    }

    /// The model alias called `alias`.
    pub fn model(&self, alias: &str) -> Option<&ModelConfig> {
        self.models.get(alias)
    }

    /// Whether clients must present a key (false when no `[[keys]]` are configured).
    pub fn auth_required(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The virtual key with this hash.
    pub fn key(&self, hash: &KeyHash) -> Option<&VirtualKey> {
        self.keys.get(hash)
    }

    /// The order in which to try a model's targets.
    ///
    /// Without weights, the configured order. With weights, the first target is drawn by weight
    /// and the rest follow in configured order, so failover stays predictable.
    pub fn attempt_order<'m>(&self, model: &'m ModelConfig) -> Vec<&'m Target> {
        let mut order: Vec<&Target> = model.targets.iter().collect();
        if order.len() > 1 && order.iter().any(|t| t.weight.is_some()) {
            let total: u64 = order.iter().map(|t| u64::from(t.weight.unwrap_or(1))).sum();
            let mut pick = rand::random_range(0..total);
            let first = order
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
                .unwrap_or(0);
            let chosen = order.remove(first);
            order.insert(0, chosen);
        }
        order
    }
}

/// One entry of `/v1/models`.
pub fn model_object(alias: &str) -> serde_json::Value {
    serde_json::json!({"id": alias, "object": "model", "created": 0, "owned_by": "tollgate"})
}
