#!/usr/bin/env bash
# The whole test suite: the example Wasm plugins are built (their toolchains installed where
# missing), then the Rust unit, integration and end-to-end tests run, then the official-SDK
# tests (the `openai` Python package in a venv) against `tollgate serve` and its built-in mock.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/setup.sh

# The example plugins (C, Python, JavaScript) that the plugin tests load into a gateway.
bash plugins/setup.sh
bash plugins/build.sh
export TOLLGATE_TEST_PLUGIN_DIR="$PWD/plugins/target"

cargo build --workspace --bins
# Tests that need a real Redis or PostgreSQL are `#[ignore]`d, so a machine without them shows
# them as ignored; they run when both services are there (.ci/run sets both variables).
if [ -n "${TOLLGATE_TEST_REDIS_URL:-}" ] && [ -n "${TOLLGATE_TEST_DATABASE_URL:-}" ]; then
  cargo test --workspace -- --include-ignored
else
  echo "TOLLGATE_TEST_REDIS_URL and TOLLGATE_TEST_DATABASE_URL are not both set: the tests that need Redis or PostgreSQL are skipped (shown as ignored)." >&2
  cargo test --workspace
fi
# The example routing policies' fixtures, through the CLI users run.
target/debug/tollgate policy test policies/

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r tests/e2e/requirements.txt
TOLLGATE_BIN="$PWD/target/debug/tollgate" .venv/bin/python -m pytest tests/e2e -q
