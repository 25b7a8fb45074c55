#!/usr/bin/env bash
# Builds the Rust example plugin into a component. Output: $OUT (default plugins/target)/rs_json_tidy.wasm.
#
# On a machine with rustup, the usual route is:
#   rustup target add wasm32-wasip2 && cargo build --release --target wasm32-wasip2
# (cargo then makes the component itself). Where rustup's wasm targets cannot be installed,
# this script uses Debian's separate Rust toolchain (apt: rustc-web cargo-web rust-web-src
# lld-16), which builds std for wasm32-unknown-unknown from source, links with wasm-ld-16,
# and leaves the machine's own cargo and rustc alone.
set -euo pipefail
cd "$(dirname "$0")"
OUT="$(realpath -m "${OUT:-../target}")"
WASM_TOOLS="${WASM_TOOLS:-$(command -v wasm-tools || realpath -m ../../.venv/bin/wasm-tools)}"
mkdir -p "$OUT"
if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -q wasm32-wasip2; then
  cargo build --release --target wasm32-wasip2 --quiet
  cp target/wasm32-wasip2/release/json_tidy.wasm "$OUT/rs_json_tidy.wasm"
else
  [ -x /usr/bin/cargo ] && [ -d /usr/lib/rustlib/src ] || {
    echo "Rust plugins need rustup's wasm32-wasip2 target, or Debian's rustc-web cargo-web rust-web-src lld-16" >&2
    exit 1
  }
  env RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
    /usr/bin/cargo build --release --quiet --target wasm32-unknown-unknown \
    -Zbuild-std=std,panic_abort --config 'target.wasm32-unknown-unknown.linker="wasm-ld-16"'
  "$WASM_TOOLS" component new target/wasm32-unknown-unknown/release/json_tidy.wasm \
    -o "$OUT/rs_json_tidy.wasm"
fi
echo "built $OUT/rs_json_tidy.wasm ($(stat -c %s "$OUT/rs_json_tidy.wasm") bytes)"
