//! The process's one Wasm engine: its configuration, the epoch ticker, the linker with the
//! host's imports, and compiled components kept in memory and on disk.

use crate::PluginError;
use crate::cache::DiskCache;
use crate::host::HostState;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances: the granularity of deadlines, and how often a running
/// plugin yields to the executor.
pub(crate) const TICK: Duration = Duration::from_millis(1);

/// Components kept compiled in memory, by content hash; past this many, the cache restarts.
const MEMORY_CACHE_ENTRIES: usize = 64;

/// The engine, linker and compile caches shared by every plugin of every config version.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    compiled: Mutex<HashMap<[u8; 32], Component>>,
    disk: Option<DiskCache>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("disk_cache", &self.disk)
            .finish_non_exhaustive()
    }
}

static SHARED: OnceLock<Runtime> = OnceLock::new();
/// Held while the runtime starts, so it starts once; a failed start is tried again by the next
/// load (a reload after the operator fixes the cause), not remembered.
static STARTING: Mutex<()> = Mutex::new(());

impl Runtime {
    /// The process's runtime, started on first use (with its epoch ticker thread).
    pub fn shared() -> Result<&'static Runtime, PluginError> {
        if let Some(r) = SHARED.get() {
            return Ok(r);
        }
        let _starting = STARTING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(r) = SHARED.get() {
            return Ok(r);
        }
        let runtime = Runtime::new(DiskCache::from_env()).map_err(PluginError::Engine)?;
        let engine = runtime.engine.clone();
        std::thread::Builder::new()
            .name("tollgate-wasm-epoch".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| PluginError::Engine(format!("cannot start the epoch ticker: {e}")))?;
        Ok(SHARED.get_or_init(|| runtime))
    }

    fn new(disk: Option<DiskCache>) -> Result<Runtime, String> {
        let mut pool = PoolingAllocationConfig::new();
        // Slots are virtual reservations: memory is committed only as guests touch it.
        pool.total_component_instances(1000)
            .total_core_instances(4000)
            .max_core_instances_per_component(64)
            .total_memories(2000)
            .max_memories_per_component(64)
            .total_tables(4000)
            .max_tables_per_component(64)
            .table_elements(200_000)
            .total_stacks(1000)
            .max_component_instance_size(4 << 20)
            .max_core_instance_size(4 << 20)
            .max_memory_size(
                usize::try_from(tollgate_config::plugins::MAX_PLUGIN_MEMORY_MB << 20)
                    .unwrap_or(usize::MAX),
            );
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| format!("{e:#}"))?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| format!("{e:#}"))?;
        crate::bindings::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| format!("{e:#}"))?;
        Ok(Runtime {
            engine,
            linker,
            compiled: Mutex::new(HashMap::new()),
            disk,
        })
    }

    /// The component in `bytes`, compiled (or found compiled in memory or on disk).
    pub(crate) fn compile(&self, bytes: &[u8]) -> wasmtime::Result<Component> {
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(c) = self.lock().get(&hash) {
            return Ok(c.clone());
        }
        let component = match self.disk.as_ref().and_then(|d| d.load(&self.engine, &hash)) {
            Some(c) => c,
            None => {
                let c = Component::new(&self.engine, bytes)?;
                if let Some(d) = &self.disk {
                    d.store(&self.engine, &hash, &c);
                }
                c
            }
        };
        let mut compiled = self.lock();
        if compiled.len() >= MEMORY_CACHE_ENTRIES {
            compiled.clear();
        }
        compiled.insert(hash, component.clone());
        Ok(component)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Component>> {
        self.compiled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
