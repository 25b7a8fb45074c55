//! Assembling the Pingora server: proxy listener, admin listener, in-process mock providers.

use crate::admin::AdminApp;
use crate::gateway::Gateway;
use crate::health::HealthRegistry;
use crate::live::LiveState;
use crate::reload::{Pinned, ReloadService, Reloader};
use crate::sharing::CircuitSharing;
use crate::spend::Spend;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::apps::http_app::HttpServer;
use pingora::connectors::ConnectorOptions;
use pingora::connectors::http::Connector;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{BackgroundService, background_service};
use pingora::services::listening::Service;
use std::sync::{Arc, Mutex};
use tollgate_config::{Config, UpstreamUrl};

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The config names scripts that do not compile, or similar.
    #[error("{0}")]
    Build(#[from] crate::live::BuildError),
    /// The spend store under `[spend] data_dir` cannot be opened or read.
    #[error("{0}")]
    Store(#[from] tollgate_state::store::StoreError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Process-level options that are not part of the config file.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Take the listening sockets over from a running instance (`--upgrade`).
    pub upgrade: bool,
    /// The config file, watched for reloads.
    pub config_path: std::path::PathBuf,
    /// Its text at startup, so an unchanged file does not trigger a reload.
    pub config_text: String,
}

/// Binds the in-process mock providers, builds the live state, and runs until shut down.
/// Returns only on a startup error.
pub fn run(mut config: Config, opts: &ServeOptions) -> Result<(), ServeError> {
    crate::metrics::install();
    let mocks = bind_mocks(&mut config)?;
    let pinned = Pinned {
        server: config.server.clone(),
        mock_urls: config
            .providers
            .iter()
            .filter(|(_, p)| p.mock.is_some())
            .map(|(n, p)| (n.clone(), p.base_url.clone()))
            .collect(),
    };
    let server_cfg = config.server.clone();
    if config.keys.is_empty() {
        tracing::warn!("No [[keys]] configured: the gateway accepts requests without a key.");
    }
    let health = Arc::new(HealthRegistry::default());
    let sharing = CircuitSharing::attach(&config.shared, &health);
    // With budgets, spend is restored from the embedded store and the ledger written to it.
    let (spend, ledger) = Spend::for_config(&config)?;
    if ledger.is_some() {
        tracing::info!(data_dir = %config.spend.data_dir.display(), "Spend store opened.");
    }
    let spend = Arc::new(spend);
    let live = Arc::new(ArcSwap::from_pointee(LiveState::build(config, 1)?));
    let reloader = Arc::new(Reloader::new(
        opts.config_path.clone(),
        &opts.config_text,
        live.clone(),
        pinned,
    ));

    let conf = ServerConf {
        threads: server_cfg.threads,
        pid_file: server_cfg.pid_file.clone(),
        upgrade_sock: server_cfg.upgrade_sock.clone(),
        grace_period_seconds: Some(server_cfg.grace_period_secs),
        graceful_shutdown_timeout_seconds: Some(server_cfg.graceful_shutdown_timeout_secs),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: opts.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let connector = Connector::new(Some(ConnectorOptions::from_server_conf(
        &server.configuration,
    )));
    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Gateway::new(live.clone(), connector, health.clone(), spend.clone()),
        "tollgate",
    );
    proxy.add_tcp(&server_cfg.listen);
    server.add_service(proxy);

    if let Some(admin_addr) = &server_cfg.admin_listen {
        let app = AdminApp {
            reloader: reloader.clone(),
            health,
            spend: spend.clone(),
            live: live.clone(),
            admin_key: server_cfg.admin_key,
            store: tokio::sync::OnceCell::new(),
        };
        let mut admin = Service::new("tollgate-admin".to_owned(), HttpServer::new_app(app));
        admin.add_tcp(admin_addr);
        server.add_service(admin);
    }
    server.add_service(background_service("reload", ReloadService(reloader)));
    if let Some(sharing) = sharing {
        server.add_service(background_service("circuit sharing", sharing));
    }
    if let Some(ledger) = ledger {
        server.add_service(background_service("ledger", ledger));
    }
    if let Some(location) = spend.location.clone() {
        let refresh = crate::keys::KeysRefresh {
            keys: spend.clone(),
            location: location.clone(),
        };
        server.add_service(background_service("key refresh", refresh));
        let connector = Connector::new(Some(ConnectorOptions::from_server_conf(
            &server.configuration,
        )));
        let alerts = crate::alerts::AlertService::for_config(
            live.clone(),
            spend.clone(),
            location,
            connector,
        );
        if let Some(alerts) = alerts {
            server.add_service(background_service("alerts", alerts));
        }
    }
    for mock in mocks {
        let service = MockService {
            listener: Mutex::new(Some(mock.listener)),
            config: mock.config,
        };
        server.add_service(background_service(&format!("mock {}", mock.name), service));
    }
    tracing::info!(listen = %server_cfg.listen, admin = ?server_cfg.admin_listen, "Tollgate starting.");
    server.run_forever()
}

/// A mock provider's listener, bound before the server starts so its port is known.
struct BoundMock {
    name: String,
    listener: std::net::TcpListener,
    config: tollgate_mock::MockConfig,
}

/// Binds a listener for every `kind = "mock"` provider and points its base URL at it.
fn bind_mocks(config: &mut Config) -> Result<Vec<BoundMock>, ServeError> {
    let mut bound = Vec::new();
    for (name, provider) in &mut config.providers {
        let Some(settings) = &provider.mock else {
            continue;
        };
        let bind_err = |source| ServeError::Bind {
            addr: settings.listen.clone(),
            source,
        };
        let listener = std::net::TcpListener::bind(&settings.listen).map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        let config = tollgate_mock::MockConfig {
            ttft: settings.ttft,
            chunk_delay: settings.chunk_delay,
            chunks: settings.chunks,
        };
        provider.base_url = UpstreamUrl {
            tls: false,
            host: addr.ip().to_string(),
            port: addr.port(),
            path: "/v1".to_owned(),
        };
        tracing::info!(provider = %name, %addr, "Built-in mock provider listening.");
        bound.push(BoundMock {
            name: name.clone(),
            listener,
            config,
        });
    }
    Ok(bound)
}

/// Runs one in-process mock provider on Pingora's background runtime.
struct MockService {
    listener: Mutex<Option<std::net::TcpListener>>,
    config: tollgate_mock::MockConfig,
}

#[async_trait]
impl BackgroundService for MockService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(std_listener) = self.listener.lock().ok().and_then(|mut l| l.take()) else {
            return;
        };
        let listener = match std_listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(std_listener))
        {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "Mock provider could not start.");
                return;
            }
        };
        tokio::select! {
            () = tollgate_mock::serve(listener, self.config.clone(), Arc::default()) => {}
            _ = shutdown.changed() => {}
        }
    }
}
