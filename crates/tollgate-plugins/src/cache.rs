//! Compiled components on disk, so a restart deserialises (milliseconds) instead of
//! compiling (seconds for Python and JavaScript guests).
//!
//! The directory is `TOLLGATE_PLUGIN_CACHE_DIR`, else `$XDG_CACHE_HOME/tollgate/plugins`,
//! else `~/.cache/tollgate/plugins`; `TOLLGATE_PLUGIN_CACHE_DIR=off` turns it off. Files are
//! named by the SHA-256 of the component and the engine's compatibility hash, so a new
//! Tollgate or wasmtime never loads an old artifact.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of `.cwasm` files.
#[derive(Debug)]
pub(crate) struct DiskCache {
    dir: PathBuf,
}

impl DiskCache {
    /// The configured cache, if any.
    pub(crate) fn from_env() -> Option<DiskCache> {
        let dir = match std::env::var("TOLLGATE_PLUGIN_CACHE_DIR") {
            Ok(v) if v == "off" || v.is_empty() => return None,
            Ok(v) => PathBuf::from(v),
            Err(_) => std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?
                .join("tollgate")
                .join("plugins"),
        };
        Some(DiskCache { dir })
    }

    fn file(&self, engine: &Engine, hash: &[u8; 32]) -> PathBuf {
        let mut h = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let mut key = Sha256::new();
        key.update(hash);
        key.update(h.finish().to_le_bytes());
        key.update(env!("CARGO_PKG_VERSION").as_bytes());
        self.dir
            .join(format!("{}.cwasm", hex::encode(key.finalize())))
    }

    /// The compiled component, if cached, trustworthy and loadable.
    pub(crate) fn load(&self, engine: &Engine, hash: &[u8; 32]) -> Option<Component> {
        let path = self.file(engine, hash);
        if !trusted(&self.dir) || !trusted(&path) {
            return None;
        }
        // SAFETY: `deserialize_file` trusts its input to be wasmtime's own output. This file
        // is: it is written only by `store` below (renamed into place whole), named by the
        // hash of its source and of this engine's configuration, in a directory that must
        // be as trusted as the gateway's binary (documented in docs/plugins.md). wasmtime
        // still checks its header, version and engine settings and refuses a mismatch.
        #[expect(unsafe_code, reason = "loading our own compiled artifacts; see SAFETY")]
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "Ignoring an unusable compiled plugin; compiling again.");
                None
            }
        }
    }

    /// Saves a compiled component; a failure only costs the next start a compile.
    pub(crate) fn store(&self, engine: &Engine, hash: &[u8; 32], component: &Component) {
        let path = self.file(engine, hash);
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let result = (|| -> std::io::Result<()> {
            // Only this user may write here: what is here is loaded as native code.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)?;
            let bytes = component.serialize().map_err(std::io::Error::other)?;
            let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
            let tmp = path.with_extension(format!("tmp{}.{n}", std::process::id()));
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            std::io::Write::write_all(&mut file, &bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = result {
            tracing::warn!(dir = %self.dir.display(), error = %e, "Cannot cache a compiled plugin.");
        }
    }
}

/// Whether `path` (not followed if it is a link) belongs to this process's user and nobody
/// else may write it, so nothing another user planted is loaded.
fn trusted(path: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    // `/proc/self` is owned by the process's effective user (no `unsafe` geteuid needed).
    let Ok(me) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return false;
    };
    !meta.file_type().is_symlink() && meta.uid() == me && meta.mode() & 0o022 == 0
}
