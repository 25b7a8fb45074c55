//! Each instance's store data: the deny-by-default WASI context, the memory cap, the call's
//! deadline, and the host functions plugins import (`log`, `metric`, `now-ms`).

use crate::bindings::tollgate::plugin::{host, types};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The most table elements an instance may grow to (Python and JavaScript guests need tens
/// of thousands of function references).
const MAX_TABLE_ELEMENTS: usize = 200_000;

/// Store data of one instance.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// The plugin's name, for logs and metrics.
    pub(crate) plugin: Arc<str>,
    /// The request the current call serves.
    pub(crate) request_id: String,
    /// When the current call must have returned.
    pub(crate) deadline: Instant,
    memory_cap: usize,
    /// Whether a memory growth was refused (so the trap that follows is reported as the
    /// memory cap, not as a bug in the plugin).
    pub(crate) hit_memory_cap: bool,
}

impl HostState {
    pub(crate) fn new(plugin: Arc<str>, wasi: WasiCtx, memory_cap: usize) -> HostState {
        HostState {
            wasi,
            table: ResourceTable::new(),
            plugin,
            request_id: String::new(),
            deadline: Instant::now(),
            memory_cap,
            hit_memory_cap: false,
        }
    }
}

impl HostState {
    /// The memory cap, in MiB.
    pub(crate) fn memory_cap_mib(&self) -> usize {
        self.memory_cap >> 20
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.hit_memory_cap = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: types::Level, message: String) {
        // Bounded, so a chatty plugin cannot flood the logs with megabytes per call.
        let message = truncate(&message, 2048);
        let (plugin, request_id) = (&*self.plugin, &self.request_id);
        match level {
            types::Level::Debug => tracing::debug!(plugin, request_id, "{message}"),
            types::Level::Info => tracing::info!(plugin, request_id, "{message}"),
            types::Level::Warn => tracing::warn!(plugin, request_id, "{message}"),
            types::Level::Error => tracing::error!(plugin, request_id, "{message}"),
        }
    }

    fn metric(&mut self, name: String, delta: u64) {
        // Metric names are the plugin's own choice; keep them short and printable so a
        // plugin cannot explode the label space with one name per request.
        let name: String = truncate(&name, 64)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        metrics::counter!("tollgate_plugin_metric_total", "plugin" => self.plugin.to_string(), "name" => name)
            .increment(delta);
    }

    fn now_ms(&mut self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
