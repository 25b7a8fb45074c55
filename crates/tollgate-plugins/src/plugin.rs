//! One loaded plugin: its pre-linked component, its settings, and its pool of warm
//! instances (the hook calls themselves are in `calls.rs`).

use crate::PluginError;
use crate::bindings::{Plugin as Bindings, PluginPre};
use crate::host::HostState;
use crate::runtime::Runtime;
use crate::types::HookSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tollgate_config::plugins::PluginConfig;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx};

/// `init` gets more time than a hook: interpreters (Python, JavaScript) warm up in it.
const MIN_INIT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a hook call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HookError {
    /// It ran past its deadline.
    #[error("ran past its {0:?} deadline")]
    Timeout(Duration),
    /// It tried to grow its memory past the cap.
    #[error("hit its memory cap of {0} MiB")]
    Memory(usize),
    /// It trapped (a bug or a deliberate abort in the plugin).
    #[error("trapped: {0}")]
    Trap(String),
    /// A new instance could not be created or initialised.
    #[error("could not start an instance: {0}")]
    Instantiate(String),
    /// Skipped: the plugin ran out of time on its last calls and is resting (a runaway plugin
    /// would otherwise burn a whole deadline of CPU on every request).
    #[error("skipped after {0} calls in a row ran out of time")]
    Tripped(u32),
}

impl HookError {
    /// The `kind` label of `tollgate_plugin_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            HookError::Timeout(_) => "timeout",
            HookError::Memory(_) => "memory",
            HookError::Trap(_) => "trap",
            HookError::Instantiate(_) => "instantiate",
            HookError::Tripped(_) => "tripped",
        }
    }
}

/// A call's deadline passed (raised from the epoch callback, or by the timer around a call
/// that waits in the host).
#[derive(Debug, thiserror::Error)]
#[error("deadline passed")]
struct DeadlinePassed;

/// The most instances of one plugin alive at once (warm or in a call). Each takes slots in the
/// engine's shared pool; past this, a call waits (within its deadline) for one to come back.
pub const MAX_LIVE_INSTANCES: usize = 64;

/// Calls in a row that run out of time before a plugin rests, and how long it rests (then one
/// call tries it again).
pub const TRIP_AFTER_TIMEOUTS: u32 = 3;
const REST: Duration = Duration::from_secs(10);

/// How long past its deadline a call that waits in the host (not running wasm, which the
/// epoch stops) may take before it is abandoned.
const DEADLINE_SLACK: Duration = Duration::from_millis(5);

/// An initialised instance, holding its place among the plugin's live instances.
pub(crate) struct Warm {
    pub(crate) store: Store<HostState>,
    pub(crate) bindings: Bindings,
    _live: tokio::sync::OwnedSemaphorePermit,
}

/// Awaits `call`, but no longer than `timeout` and a little: the epoch stops a plugin only
/// while it runs wasm, not while it waits in a WASI call (a sleep, a read).
pub(crate) async fn bounded<R>(
    timeout: Duration,
    call: impl std::future::Future<Output = wasmtime::Result<R>>,
) -> wasmtime::Result<R> {
    match tokio::time::timeout(timeout + DEADLINE_SLACK, call).await {
        Ok(r) => r,
        Err(_) => Err(wasmtime::Error::new(DeadlinePassed)),
    }
}

/// A plugin, ready to call.
pub struct Plugin {
    /// Its settings.
    pub config: PluginConfig,
    /// The hooks its `init` said it implements.
    pub hooks: HookSet,
    name: Arc<str>,
    pre: PluginPre<HostState>,
    env: Vec<(String, String)>,
    idle: Mutex<Vec<Warm>>,
    live: Arc<tokio::sync::Semaphore>,
    metric_names: crate::host::MetricNames,
    /// `tollgate_plugin_calls_total{plugin}`, registered once (not per call).
    pub(crate) calls: metrics::Counter,
    /// Calls in a row that ran out of time, and until when the plugin rests.
    timeouts_in_a_row: std::sync::atomic::AtomicU32,
    resting_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Loads, links and initialises the plugin `config` names (one instance, kept warm).
    /// Runs its own executor: call it from anywhere, including inside an async runtime.
    pub fn load(config: &PluginConfig) -> Result<Arc<Plugin>, PluginError> {
        let runtime = Runtime::shared()?;
        let path = config.path.display().to_string();
        let bytes = std::fs::read(&config.path).map_err(|e| PluginError::Read {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let component = runtime.compile(&bytes).map_err(|e| PluginError::Invalid {
            path: path.clone(),
            reason: format!("{e:#}"),
        })?;
        let interface = |e: wasmtime::Error| PluginError::Interface {
            path: path.clone(),
            reason: format!("{e:#}"),
        };
        let pre = runtime
            .linker
            .instantiate_pre(&component)
            .map_err(interface)?;
        let pre = PluginPre::new(pre).map_err(interface)?;
        let env = config
            .grants
            .env
            .iter()
            .filter_map(|n| std::env::var(n).ok().map(|v| (n.clone(), v)))
            .collect();
        let mut plugin = Plugin {
            config: config.clone(),
            hooks: HookSet::empty(),
            name: Arc::from(config.name.as_str()),
            pre,
            env,
            idle: Mutex::new(Vec::new()),
            live: Arc::new(tokio::sync::Semaphore::new(MAX_LIVE_INSTANCES)),
            metric_names: crate::host::MetricNames::default(),
            timeouts_in_a_row: std::sync::atomic::AtomicU32::new(0),
            resting_until: Mutex::new(None),
            calls: metrics::counter!("tollgate_plugin_calls_total", "plugin" => config.name.clone()),
        };
        let live = plugin
            .live
            .clone()
            .try_acquire_owned()
            .map_err(|e| PluginError::Init {
                plugin: config.name.clone(),
                reason: e.to_string(),
            })?;
        let first = block_on(plugin.instantiate(live))
            .and_then(|r| r)
            .map_err(|e| PluginError::Init {
                plugin: config.name.clone(),
                reason: e.to_string(),
            })?;
        plugin.hooks = first.1;
        plugin.put_back(first.0);
        Ok(Arc::new(plugin))
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn wasi(&self) -> Result<WasiCtx, HookError> {
        let mut b = WasiCtx::builder();
        // No network at all (the default address check already refuses every address).
        b.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        b.stderr(crate::stderr::StderrToLog {
            plugin: self.name.clone(),
        });
        for (k, v) in &self.env {
            b.env(k, v);
        }
        for dir in &self.config.grants.read_dirs {
            let d = dir.display().to_string();
            b.preopened_dir(dir, &d, FsPerms::ReadOnly)
                .map_err(|e| HookError::Instantiate(format!("cannot open {d}: {e}")))?;
        }
        Ok(b.build())
    }

    /// A new instance, initialised with the plugin's config, and the hooks it implements.
    async fn instantiate(
        &self,
        live: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<(Warm, HookSet), HookError> {
        let runtime = Runtime::shared().map_err(|e| HookError::Instantiate(e.to_string()))?;
        let state = HostState::new(
            self.name.clone(),
            self.wasi()?,
            self.config.memory_bytes,
            self.metric_names.clone(),
        );
        let mut store = Store::new(&runtime.engine, state);
        store.limiter(|s| s);
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Err(wasmtime::Error::new(DeadlinePassed))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        let timeout = self.config.timeout.max(MIN_INIT_TIMEOUT);
        arm(&mut store, "", timeout);
        let bindings = match bounded(timeout, self.pre.instantiate_async(&mut store)).await {
            Ok(b) => b,
            Err(e) => return Err(classify(&store, e, timeout)),
        };
        let init = bounded(
            timeout,
            bindings
                .tollgate_plugin_hooks()
                .call_init(&mut store, &self.config.config_json),
        )
        .await;
        match init {
            Ok(Ok(hooks)) => Ok((
                Warm {
                    store,
                    bindings,
                    _live: live,
                },
                hooks,
            )),
            Ok(Err(refused)) => Err(HookError::Instantiate(format!(
                "init refused its config: {}",
                crate::host::truncate(&refused, 1024)
            ))),
            Err(e) => Err(classify(&store, e, timeout)),
        }
    }

    /// A warm instance, or a new one.
    pub(crate) async fn take(&self, request_id: &str) -> Result<Warm, HookError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let mut warm = match idle {
            Some(w) => w,
            None => {
                let live =
                    tokio::time::timeout(self.config.timeout, self.live.clone().acquire_owned())
                        .await
                        .map_err(|_| HookError::Timeout(self.config.timeout))?
                        .map_err(|e| HookError::Instantiate(e.to_string()))?;
                self.instantiate(live).await?.0
            }
        };
        arm(&mut warm.store, request_id, self.config.timeout);
        Ok(warm)
    }

    fn put_back(&self, warm: Warm) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < self.config.warm_instances as usize {
            idle.push(warm);
        }
    }

    /// Settles one call: the instance goes back to the pool after a success, and is dropped
    /// (with the error counted and logged) after a failure.
    pub(crate) fn settle<R>(
        &self,
        warm: Warm,
        result: wasmtime::Result<R>,
    ) -> Result<R, HookError> {
        use std::sync::atomic::Ordering;
        match result {
            Ok(r) => {
                self.timeouts_in_a_row.store(0, Ordering::Relaxed);
                self.put_back(warm);
                Ok(r)
            }
            Err(e) => {
                let err = classify(&warm.store, e, self.config.timeout);
                if matches!(err, HookError::Timeout(_)) {
                    let n = self.timeouts_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
                    if n >= TRIP_AFTER_TIMEOUTS {
                        *self.resting() = Some(Instant::now() + REST);
                        tracing::warn!(plugin = %self.name, timeouts = n, rest_secs = REST.as_secs(),
                            "A plugin keeps running out of time; skipping it for a while.");
                    }
                } else {
                    self.timeouts_in_a_row.store(0, Ordering::Relaxed);
                }
                self.record_failure(&warm.store.data().request_id, &err);
                Err(err)
            }
        }
    }

    fn resting(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.resting_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Err` while the plugin rests; the first call after the rest tries it again.
    pub(crate) fn check_rest(&self) -> Result<(), HookError> {
        let mut resting = self.resting();
        match *resting {
            Some(until) if Instant::now() < until => Err(HookError::Tripped(
                self.timeouts_in_a_row
                    .load(std::sync::atomic::Ordering::Relaxed),
            )),
            Some(_) => {
                *resting = None;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Counts and logs a failed call.
    pub(crate) fn record_failure(&self, request_id: &str, err: &HookError) {
        metrics::counter!("tollgate_plugin_errors_total", "plugin" => self.name.to_string(), "kind" => err.kind())
            .increment(1);
        // A resting plugin was logged when it began to rest; once per request is noise.
        if matches!(err, HookError::Tripped(_)) {
            tracing::debug!(plugin = %self.name, request_id, "A resting plugin was skipped.");
            return;
        }
        tracing::warn!(plugin = %self.name, request_id, error = %err, fail_open = self.config.fail_open, "A plugin call failed.");
    }
}

/// Sets a store up for one call.
fn arm(store: &mut Store<HostState>, request_id: &str, timeout: Duration) {
    let data = store.data_mut();
    data.request_id.clear();
    data.request_id.push_str(request_id);
    data.deadline = Instant::now() + timeout;
    data.hit_memory_cap = false;
    data.logs_this_call = 0;
    store.set_epoch_deadline(1);
}

/// What a failed call's error means.
fn classify(store: &Store<HostState>, e: wasmtime::Error, timeout: Duration) -> HookError {
    if e.downcast_ref::<DeadlinePassed>().is_some()
        || e.downcast_ref::<Trap>() == Some(&Trap::Interrupt)
    {
        HookError::Timeout(timeout)
    } else if store.data().hit_memory_cap {
        HookError::Memory(store.data().memory_cap_mib())
    } else {
        // The trap itself ("wasm `unreachable` instruction executed"), not the backtrace
        // wrapped around it; the backtrace goes to the debug log.
        tracing::debug!(plugin = %store.data().plugin, error = ?e, "Plugin trap.");
        let what = e
            .downcast_ref::<Trap>()
            .map_or_else(|| e.root_cause().to_string(), ToString::to_string);
        HookError::Trap(crate::host::truncate(&what, 1024).to_owned())
    }
}

/// Runs `fut` to completion on a private single-threaded executor, on a thread of its own (so
/// it works whether or not the caller is inside an async runtime).
fn block_on<F>(fut: F) -> Result<F::Output, HookError>
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .map_err(|e| HookError::Instantiate(format!("cannot start an executor: {e}")))?;
            Ok(rt.block_on(fut))
        })
        .join()
    })
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}
