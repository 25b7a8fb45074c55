#!/usr/bin/env bash
# Builds the JavaScript example plugin with componentize-js (npm; `npm install` here fetches
# it). wasi:http is disabled, so the component imports no network and the gateway's
# deny-by-default WASI can run it. Output: $OUT (default plugins/target)/js_topic_router.wasm.
set -euo pipefail
cd "$(dirname "$0")"
OUT="$(realpath -m "${OUT:-../target}")"
mkdir -p "$OUT"
if [ ! -d node_modules/@bytecodealliance/componentize-js ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
node componentize.mjs topic_router.js ../wit/v0.1 "$OUT/js_topic_router.wasm"
echo "built $OUT/js_topic_router.wasm ($(stat -c %s "$OUT/js_topic_router.wasm") bytes)"
