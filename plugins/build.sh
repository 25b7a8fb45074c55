#!/usr/bin/env bash
# Builds every example plugin into plugins/target/ (run plugins/setup.sh first for the
# toolchains). Each language has its own build script and README.
set -euo pipefail
cd "$(dirname "$0")"
export OUT="$PWD/target"
export WASM_TOOLS="${WASM_TOOLS:-$(realpath -m ../.venv/bin/wasm-tools)}"
mkdir -p "$OUT"
bash c/build.sh
bash rust/build.sh
bash python/build.sh
bash js/build.sh
