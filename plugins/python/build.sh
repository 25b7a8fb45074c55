#!/usr/bin/env bash
# Builds the Python example plugin with componentize-py (PyPI; plugins/setup.sh installs it
# into the repo's .venv). Output: $OUT (default plugins/target)/py_pii_redactor.wasm.
set -euo pipefail
cd "$(dirname "$0")"
OUT="$(realpath -m "${OUT:-../target}")"
COMPONENTIZE_PY="${COMPONENTIZE_PY:-$(realpath -m ../../.venv/bin/componentize-py)}"
mkdir -p "$OUT"
"$COMPONENTIZE_PY" -d ../wit/v0.1 -w plugin componentize pii_redactor -o "$OUT/py_pii_redactor.wasm"
echo "built $OUT/py_pii_redactor.wasm ($(stat -c %s "$OUT/py_pii_redactor.wasm") bytes)"
