//! Hot reload: rebuild the whole [`LiveState`] from the config file and its scripts, then swap it
//! in with one atomic store. A bad change is reported and the old state keeps serving.
//!
//! Triggers: a debounced file watcher on the config's directory and every script directory,
//! `SIGHUP`, and `POST /admin/reload`.

use crate::live::LiveState;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tollgate_config::{Config, ServerConfig, UpstreamUrl};

/// What the last reloads did, for `GET /admin/reload`.
#[derive(Debug, Clone, Default)]
struct Status {
    version: u64,
    last_success_unix: u64,
    last_error: Option<String>,
    last_error_unix: u64,
    content_hash: u64,
}

/// Settings fixed at startup: a reload may not change them.
#[derive(Debug, Clone)]
pub struct Pinned {
    /// Listeners, threads, PID file, upgrade socket.
    pub server: ServerConfig,
    /// Where each in-process mock provider listens.
    pub mock_urls: HashMap<String, UpstreamUrl>,
}

/// Rebuilds and swaps the live state.
pub struct Reloader {
    config_path: PathBuf,
    live: Arc<ArcSwap<LiveState>>,
    pinned: Pinned,
    status: Mutex<Status>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Points every mock provider at its startup listener; a mock added later needs a restart.
pub fn pin_mocks(
    config: &mut Config,
    mock_urls: &HashMap<String, UpstreamUrl>,
) -> Result<(), String> {
    for (name, p) in &mut config.providers {
        if p.mock.is_none() {
            continue;
        }
        match mock_urls.get(name) {
            Some(url) => p.base_url = url.clone(),
            None => {
                return Err(format!(
                    "providers.{name}: a new built-in mock provider needs a restart"
                ));
            }
        }
    }
    Ok(())
}

/// Hash of the config text and every script and plugin it names, to skip reloads that change
/// nothing.
fn content_hash(config_text: &str, config: &Config) -> u64 {
    let mut h = DefaultHasher::new();
    config_text.hash(&mut h);
    for path in config.watched_paths() {
        path.hash(&mut h);
        std::fs::read(&path).unwrap_or_default().hash(&mut h);
    }
    h.finish()
}

fn changed_pinned(old: &ServerConfig, new: &ServerConfig) -> Option<&'static str> {
    if old.listen != new.listen {
        Some("server.listen")
    } else if old.admin_listen != new.admin_listen {
        Some("server.admin_listen")
    } else if old.threads != new.threads {
        Some("server.threads")
    } else if old.pid_file != new.pid_file || old.upgrade_sock != new.upgrade_sock {
        Some("server.pid_file/upgrade_sock")
    } else if old.admin_key != new.admin_key {
        // The admin listener and the keys' store are set up at start.
        Some("server.admin_key")
    } else {
        None
    }
}

impl Reloader {
    /// A reloader for `config_path`, which produced the state in `live`.
    pub fn new(
        config_path: PathBuf,
        config_text: &str,
        live: Arc<ArcSwap<LiveState>>,
        pinned: Pinned,
    ) -> Self {
        let current = live.load();
        let status = Status {
            version: current.version,
            last_success_unix: now_unix(),
            content_hash: content_hash(config_text, &current.config),
            ..Status::default()
        };
        drop(current);
        Reloader {
            config_path,
            live,
            pinned,
            status: Mutex::new(status),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        match self.status.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Rebuilds the live state from disk. `Ok(None)` when nothing changed (unless `force`).
    pub fn reload(&self, force: bool) -> Result<Option<u64>, String> {
        // One reload at a time: the status lock is held throughout, so versions stay ordered.
        let mut status = self.lock();
        let result = self.try_build(&status, force);
        match &result {
            Ok(Some((state, hash))) => {
                status.version = state.version;
                status.last_success_unix = now_unix();
                status.content_hash = *hash;
            }
            Ok(None) => {}
            Err(e) => {
                status.last_error = Some(e.clone());
                status.last_error_unix = now_unix();
            }
        }
        match result {
            Ok(Some((state, _))) => {
                let version = state.version;
                self.live.store(Arc::new(state));
                crate::metrics::record_reload(true);
                tracing::info!(version, config = %self.config_path.display(), "Reloaded the live state.");
                Ok(Some(version))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                crate::metrics::record_reload(false);
                tracing::error!(config = %self.config_path.display(), "Reload rejected; the previous state keeps serving:\n{e}");
                Err(e)
            }
        }
    }

    fn try_build(&self, status: &Status, force: bool) -> Result<Option<(LiveState, u64)>, String> {
        let text = std::fs::read_to_string(&self.config_path)
            .map_err(|e| format!("{}: {e}", self.config_path.display()))?;
        let mut config =
            tollgate_config::load_str(&text, &self.config_path, &|n| std::env::var(n).ok())
                .map_err(|e| e.to_string())?;
        let hash = content_hash(&text, &config);
        if hash == status.content_hash && !force {
            return Ok(None);
        }
        if let Some(field) = changed_pinned(&self.pinned.server, &config.server) {
            return Err(format!(
                "{}: {field} cannot change on reload; restart, or start a new process with `serve --upgrade`",
                self.config_path.display()
            ));
        }
        pin_mocks(&mut config, &self.pinned.mock_urls)?;
        let state = LiveState::build(config, status.version + 1).map_err(|e| e.to_string())?;
        Ok(Some((state, hash)))
    }

    /// `GET /admin/reload`.
    pub fn status_json(&self) -> serde_json::Value {
        let s = self.lock().clone();
        serde_json::json!({
            "version": s.version,
            "last_success_unix": s.last_success_unix,
            "last_error": s.last_error,
            "last_error_unix": (s.last_error_unix > 0).then_some(s.last_error_unix),
        })
    }

    /// Directories to watch: the config's and every script's and plugin's.
    fn watch_dirs(&self) -> BTreeSet<PathBuf> {
        let dir = |p: &Path| {
            p.parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        };
        let mut dirs: BTreeSet<PathBuf> = self
            .live
            .load()
            .config
            .watched_paths()
            .iter()
            .map(|p| dir(p))
            .collect();
        dirs.insert(dir(&self.config_path));
        dirs.into_iter()
            .map(|d| {
                if d.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    d
                }
            })
            .collect()
    }
}

/// The background service that watches files and `SIGHUP` and triggers reloads.
pub struct ReloadService(pub Arc<Reloader>);

#[async_trait]
impl BackgroundService for ReloadService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let reloader = self.0.clone();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(16);
        let watch_tx = tx.clone();
        // Watch directories, not files: editors save by renaming a new file over the old one.
        let debouncer = new_debouncer(
            Duration::from_millis(100),
            None,
            move |res: DebounceEventResult| {
                if let Ok(events) = res {
                    // Reading a file emits access events; reacting to them would reload in a loop.
                    if events.iter().any(|e| !e.kind.is_access()) {
                        let _ = watch_tx.try_send(());
                    }
                }
            },
        );
        let mut debouncer = match debouncer {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::error!(error = %e, "File watching is unavailable; reload with SIGHUP or POST /admin/reload.");
                None
            }
        };
        let mut watched: BTreeSet<PathBuf> = BTreeSet::new();
        let mut rewatch = |d: &mut Option<
            notify_debouncer_full::Debouncer<
                notify::RecommendedWatcher,
                notify_debouncer_full::RecommendedCache,
            >,
        >| {
            let Some(d) = d else { return };
            for dir in reloader.watch_dirs() {
                if watched.contains(&dir) {
                    continue;
                }
                match d.watch(&dir, RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        watched.insert(dir);
                    }
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "Cannot watch directory.")
                    }
                }
            }
        };
        rewatch(&mut debouncer);
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            let force = tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = rx.recv() => false,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            };
            let r = reloader.clone();
            // Building compiles scripts and reads files: keep it off the async workers.
            let outcome = tokio::task::spawn_blocking(move || r.reload(force)).await;
            if matches!(outcome, Ok(Ok(Some(_)))) {
                rewatch(&mut debouncer);
            }
        }
    }
}
