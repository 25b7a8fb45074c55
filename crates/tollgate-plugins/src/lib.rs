//! Tollgate's Wasm plugin host.
//!
//! Plugins are WebAssembly components built against the versioned WIT package in
//! `plugins/wit/` (`tollgate:plugin@0.1.0`). They run on the request path, so the host keeps
//! them fast and contained:
//!
//! - **One engine per process** ([`Runtime::shared`]), with the pooling allocator, async calls
//!   and epoch interruption. A background thread ticks the epoch every millisecond; a running
//!   call yields to the executor at each tick (so a slow plugin never holds a worker thread
//!   for long) and traps once past its deadline.
//! - **Compiled once per file content**: components are kept in memory and on disk, keyed by
//!   the SHA-256 of their bytes and the engine's configuration, so a reload of unchanged
//!   plugins is a lookup and a restart is a deserialisation.
//! - **Warm instances**: each plugin keeps a pool of initialised instances (its `init` runs
//!   once per instance). An instance that traps, runs out of time or hits its memory cap is
//!   dropped, never reused.
//! - **Deny by default**: guests that import WASI (Python, JavaScript) get no environment,
//!   files or network unless their config grants it; their stderr goes to the gateway's log.
//!
//! [`Plugins`] runs a config's plugins in order on a request, an answer or a stream chunk and
//! applies each one's `fail_open`/`fail_closed` choice when it fails.

mod bindings;
mod cache;
mod calls;
mod chain;
mod host;
mod plugin;
mod runtime;
mod stderr;
mod view;

pub use bindings::types;
pub use chain::{ChunkOutcome, Plugins, Refusal, RequestChanges};
pub use plugin::{HookError, Plugin};
pub use runtime::Runtime;
pub use view::RequestInfo;

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The engine could not start.
    #[error("the Wasm engine could not start: {0}")]
    Engine(String),
    /// The file could not be read.
    #[error("{path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The file is not a component this host can run.
    #[error("{path}: not a loadable Wasm component: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What wasmtime said.
        reason: String,
    },
    /// The component does not fit the plugin interface.
    #[error(
        "{path}: does not implement tollgate:plugin@0.1.0 (world `plugin`, see plugins/wit/v0.1): {reason}"
    )]
    Interface {
        /// The file.
        path: String,
        /// What is missing or mismatched.
        reason: String,
    },
    /// `init` failed or refused the config.
    #[error("plugin {plugin}: {reason}")]
    Init {
        /// The plugin's name.
        plugin: String,
        /// What went wrong.
        reason: String,
    },
}
