//! Sharing circuit state with other gateways through Redis (`[shared] redis_url`), as a
//! background service beside the proxy.

use crate::health::HealthRegistry;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use secrecy::ExposeSecret;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tollgate_config::SharedSettings;
use tollgate_state::shared::{CircuitEvent, SharedConfig, run};

/// Transitions waiting to be shared; a burst beyond this drops news, never traffic.
const QUEUE: usize = 1024;

/// The background service; built by [`CircuitSharing::attach`].
pub struct CircuitSharing {
    config: SharedConfig,
    health: Arc<HealthRegistry>,
    outgoing: Mutex<Option<mpsc::Receiver<CircuitEvent>>>,
}

impl CircuitSharing {
    /// Makes `health` share its transitions, if `[shared] redis_url` is set.
    pub fn attach(settings: &SharedSettings, health: &Arc<HealthRegistry>) -> Option<Self> {
        let url = settings.redis_url.as_ref()?;
        let (tx, rx) = mpsc::channel(QUEUE);
        health.share(tx);
        Some(CircuitSharing {
            config: SharedConfig {
                url: url.expose_secret().to_owned(),
                prefix: settings.prefix.clone(),
                instance: uuid::Uuid::now_v7().simple().to_string(),
            },
            health: health.clone(),
            outgoing: Mutex::new(Some(rx)),
        })
    }
}

#[async_trait]
impl BackgroundService for CircuitSharing {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(rx) = self.outgoing.lock().ok().and_then(|mut o| o.take()) else {
            return;
        };
        let health = self.health.clone();
        tokio::select! {
            () = run(self.config.clone(), rx, move |ev| health.apply_shared(ev)) => {}
            _ = shutdown.changed() => {}
        }
    }
}
