//! Virtual keys made through the admin API: kept in the store, and in memory for the request
//! path. The in-memory copy is replaced whole when a key changes here, and when a look at the
//! store's key revision shows another gateway changed one ([`KeysRefresh`]).

use arc_swap::ArcSwap;
use async_trait::async_trait;
use base64::Engine as _;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tollgate_config::{
    BudgetConfig, KeyHash, Period, RateLimitConfig, Selector, VirtualKey, hash_key, parse_key_hash,
};
use tollgate_state::store::keys::StoredKey;
use tollgate_state::store::{Location, Store};

/// How often gateways look for keys changed by another gateway.
const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Prefix of every key the gateway makes, so scanners and people can recognise one.
const KEY_PREFIX: &str = "sk-tg-";

/// The keys made through the admin API, by hash.
#[derive(Debug, Default)]
pub struct StoredKeys {
    by_hash: ArcSwap<HashMap<KeyHash, VirtualKey>>,
    revision: AtomicI64,
}

/// The name of a stored key's own budget counter or rate-limit rule. `@` keeps it apart from
/// `[[budgets]]` names, which come from selectors or the operator.
pub fn own_limit_name(key: &str) -> String {
    format!("@key:{key}")
}

/// A stored key as the request path sees it; `None` (logged) when a row is unusable.
fn virtual_key(k: StoredKey) -> Option<VirtualKey> {
    let Some(hash) = parse_key_hash(&k.hash) else {
        tracing::warn!(key = %k.name, "A stored key has a malformed hash: it is ignored.");
        return None;
    };
    let own = || Selector {
        key: Some(k.name.clone()),
        ..Selector::default()
    };
    let budget = k.limits.budget.as_ref().and_then(|(limit, period)| {
        let period = Period::parse(period)?;
        Some(Arc::new(BudgetConfig {
            name: own_limit_name(&k.name),
            selector: own(),
            per: None,
            unit: tollgate_config::BudgetUnit::Usd,
            limit: *limit,
            period,
        }))
    });
    let rate_limit = (k.limits.rpm.is_some() || k.limits.tpm.is_some()).then(|| {
        Arc::new(RateLimitConfig {
            name: own_limit_name(&k.name),
            per: None,
            selector: own(),
            rpm: k.limits.rpm,
            tpm: k.limits.tpm,
        })
    });
    Some(VirtualKey {
        hash,
        tenant: k.tenant,
        team: k.team,
        expires_at: k.limits.expires_at,
        revoked: k.revoked_ms.is_some(),
        budget,
        rate_limit,
        name: k.name,
    })
}

impl StoredKeys {
    /// The key with this hash.
    pub fn get(&self, hash: &KeyHash) -> Option<VirtualKey> {
        self.by_hash.load().get(hash).cloned()
    }

    /// Every stored key, by hash.
    pub fn all(&self) -> Arc<HashMap<KeyHash, VirtualKey>> {
        self.by_hash.load_full()
    }

    /// Whether any key is stored.
    pub fn is_empty(&self) -> bool {
        self.by_hash.load().is_empty()
    }

    /// The revision of the store the keys were last read at.
    pub fn revision(&self) -> i64 {
        self.revision.load(Ordering::Acquire)
    }

    /// Reads every key from `store` and swaps them in.
    pub async fn reload(&self, store: &Store) -> Result<(), tollgate_state::store::StoreError> {
        // The revision first: a change made while reading shows as a newer one next time.
        let revision = store.keys_revision().await?;
        let keys = store.keys().await?;
        let by_hash = keys
            .into_iter()
            .filter_map(virtual_key)
            .map(|k| (k.hash, k))
            .collect();
        self.by_hash.store(Arc::new(by_hash));
        self.revision.store(revision, Ordering::Release);
        Ok(())
    }
}

/// A new key, and the prefix of it that is stored for display.
pub fn new_secret() -> (String, String, KeyHash) {
    let bytes: [u8; 24] = rand::random();
    let secret = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let display = format!("{}…", &secret[..KEY_PREFIX.len() + 4]);
    let hash = hash_key(&secret);
    (secret, display, hash)
}

/// Re-reads the stored keys when another gateway changed them.
pub struct KeysRefresh {
    /// The keys to keep fresh.
    pub keys: Arc<crate::spend::Spend>,
    /// The store they live in.
    pub location: Location,
}

#[async_trait]
impl BackgroundService for KeysRefresh {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut store: Option<Store> = None;
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            if store.is_none() {
                match Store::open_at(&self.location).await {
                    Ok(s) => store = Some(s),
                    Err(e) => {
                        tracing::warn!(error = %e, "Stored keys cannot be refreshed.");
                        continue;
                    }
                }
            }
            let Some(s) = &store else { continue };
            let keys = &self.keys.keys;
            match s.keys_revision().await {
                Ok(r) if r == keys.revision() => {}
                Ok(_) => {
                    if let Err(e) = keys.reload(s).await {
                        tracing::warn!(error = %e, "Stored keys were not refreshed.");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "Stored keys cannot be refreshed."),
            }
        }
        if let Some(s) = store {
            s.close().await;
        }
    }
}
