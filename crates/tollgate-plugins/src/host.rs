//! Each instance's store data: the deny-by-default WASI context, the memory cap, the call's
//! deadline, and the host functions plugins import (`log`, `metric`, `now-ms`).

use crate::bindings::tollgate::plugin::{host, types};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The most table elements an instance may grow to (Python and JavaScript guests need tens
/// of thousands of function references).
const MAX_TABLE_ELEMENTS: usize = 200_000;

/// Log lines one call may write; the rest are dropped.
const MAX_LOG_LINES_PER_CALL: u32 = 20;

/// Distinct metric names one plugin may create (they are label values); later ones are
/// counted under `other`.
const MAX_METRIC_NAMES: usize = 32;

/// The metric names a plugin has used, shared by its instances.
pub(crate) type MetricNames = Arc<Mutex<HashSet<String>>>;

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
    /// Linear memory across all of the instance's memories.
    memory_total: usize,
    /// Log lines written by the current call.
    pub(crate) logs_this_call: u32,
    metric_names: MetricNames,
    /// Whether a memory growth was refused (so the trap that follows is reported as the
    /// memory cap, not as a bug in the plugin).
    pub(crate) hit_memory_cap: bool,
}

impl HostState {
    pub(crate) fn new(
        plugin: Arc<str>,
        wasi: WasiCtx,
        memory_cap: usize,
        metric_names: MetricNames,
    ) -> HostState {
        HostState {
            wasi,
            table: ResourceTable::new(),
            plugin,
            request_id: String::new(),
            deadline: Instant::now(),
            memory_cap,
            memory_total: 0,
            logs_this_call: 0,
            metric_names,
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
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // The cap is on the instance, whatever number of memories its modules declare.
        let total = self
            .memory_total
            .saturating_sub(current)
            .saturating_add(desired);
        if total > self.memory_cap {
            self.hit_memory_cap = true;
            return Ok(false);
        }
        self.memory_total = total;
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
        // Bounded, so a chatty plugin cannot flood the logs: 2 KB a line, 20 lines a call.
        self.logs_this_call += 1;
        if self.logs_this_call > MAX_LOG_LINES_PER_CALL {
            return;
        }
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
        // Metric names are the plugin's own choice and become label values: short, printable,
        // and at most MAX_METRIC_NAMES of them per plugin, so one name per request cannot
        // grow the registry without bound.
        let mut name: String = truncate(&name, 64)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        {
            let mut names = self
                .metric_names
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !names.contains(&name) {
                if names.len() < MAX_METRIC_NAMES {
                    names.insert(name.clone());
                } else {
                    name = "other".to_owned();
                }
            }
        }
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
    &s[..s.floor_char_boundary(max)]
}
