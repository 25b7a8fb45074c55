//! `[[plugins]]`: Wasm plugins, validated. `tollgate-plugins` loads them.

use crate::locate::ConfigPath;
use crate::raw::RawConfig;
use crate::validate::Checker;
use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `[[plugins]]`: one Wasm component.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlugin {
    /// Unique name, in errors, logs and metrics.
    pub name: String,
    /// The `.wasm` component, relative to the config file.
    pub path: String,
    /// Passed to the plugin's `init` as JSON.
    pub config: Option<toml::Value>,
    /// `fail_closed` (the default: a failing plugin refuses the request) or `fail_open` (a
    /// failing plugin is skipped).
    pub on_error: Option<String>,
    /// The most one hook call may take. Default 50.
    pub timeout_ms: Option<u64>,
    /// The most linear memory one instance may have. Default 64.
    pub memory_mb: Option<u64>,
    /// Warm instances kept for reuse. Default 16; 0 makes a fresh instance for every call.
    pub instances: Option<u32>,
    /// The model aliases it applies to. Default: all.
    pub models: Option<Vec<String>>,
    /// What the plugin may reach beyond its own memory. Default: nothing.
    #[serde(default)]
    pub grants: RawGrants,
}

/// `[plugins.grants]`: capabilities a plugin is given. WASI guests (Python, JavaScript) see
/// no environment, files or network without them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrants {
    /// Environment variables the plugin may read (by name; values are read at load).
    #[serde(default)]
    pub env: Vec<String>,
    /// Directories the plugin may read, mounted read-only at the same path.
    #[serde(default)]
    pub read_dirs: Vec<String>,
}

/// What a plugin may reach.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grants {
    /// Environment variable names.
    pub env: Vec<String>,
    /// Read-only directories.
    pub read_dirs: Vec<PathBuf>,
}

/// One validated `[[plugins]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    /// Its name.
    pub name: String,
    /// The component file.
    pub path: PathBuf,
    /// The JSON its `init` gets (`{}` when none is configured).
    pub config_json: String,
    /// A failing call is skipped rather than refusing the request.
    pub fail_open: bool,
    /// Deadline of one hook call.
    pub timeout: Duration,
    /// Linear-memory cap of one instance.
    pub memory_bytes: usize,
    /// Warm instances kept.
    pub warm_instances: u32,
    /// Model aliases; `None`: all.
    pub models: Option<Vec<String>>,
    /// Capabilities.
    pub grants: Grants,
}

impl PluginConfig {
    /// Whether the plugin applies to requests for `model`.
    pub fn applies_to(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|m| m.iter().any(|x| x == model))
    }
}

/// The largest per-instance memory a plugin may ask for (the host's pool reserves slots of
/// this size).
pub const MAX_PLUGIN_MEMORY_MB: u64 = 1024;

pub(crate) fn check_plugins(
    raw: &RawConfig,
    file: &str,
    path: &ConfigPath,
    ck: &mut Checker<'_>,
) -> Vec<PluginConfig> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, p) in raw.plugins.iter().enumerate() {
        let pp = path.index(i);
        if !names.insert(p.name.clone()) {
            ck.error(
                &pp.key("name"),
                format!("two plugins are named {:?}", p.name),
            );
        }
        if p.name.is_empty() || p.name.contains(|c: char| c.is_control() || c == '"') {
            ck.error(&pp.key("name"), "use a non-empty name without quotes");
        }
        let fail_open = match p.on_error.as_deref() {
            None | Some("fail_closed") => false,
            Some("fail_open") => true,
            Some(other) => {
                ck.error(
                    &pp.key("on_error"),
                    format!("expected `fail_open` or `fail_closed`, not {other:?}"),
                );
                false
            }
        };
        let timeout_ms = p.timeout_ms.unwrap_or(50);
        if !(1..=60_000).contains(&timeout_ms) {
            ck.error(&pp.key("timeout_ms"), "must be 1 to 60000");
        }
        let memory_mb = p.memory_mb.unwrap_or(64);
        if !(1..=MAX_PLUGIN_MEMORY_MB).contains(&memory_mb) {
            ck.error(
                &pp.key("memory_mb"),
                format!("must be 1 to {MAX_PLUGIN_MEMORY_MB}"),
            );
        }
        if let Some(models) = &p.models {
            for m in models {
                if !raw.models.contains_key(m) {
                    ck.error(&pp.key("models"), format!("unknown model {m:?}"));
                }
            }
        }
        let config_json = match &p.config {
            None => "{}".to_owned(),
            Some(v) => serde_json::to_string(v).unwrap_or_else(|e| {
                ck.error(&pp.key("config"), format!("cannot be sent as JSON: {e}"));
                String::new()
            }),
        };
        let read_dirs: Vec<PathBuf> = p
            .grants
            .read_dirs
            .iter()
            .map(|d| {
                let dir = Path::new(d);
                if !dir.is_absolute() {
                    ck.error(&pp.key("grants").key("read_dirs"), "use absolute paths");
                }
                dir.to_path_buf()
            })
            .collect();
        out.push(PluginConfig {
            name: p.name.clone(),
            path: Path::new(file)
                .parent()
                .unwrap_or(Path::new("."))
                .join(&p.path),
            config_json,
            fail_open,
            timeout: Duration::from_millis(timeout_ms),
            memory_bytes: usize::try_from(memory_mb << 20).unwrap_or(usize::MAX),
            warm_instances: p.instances.unwrap_or(16),
            models: p.models.clone(),
            grants: Grants {
                env: p.grants.env.clone(),
                read_dirs,
            },
        });
    }
    out
}
