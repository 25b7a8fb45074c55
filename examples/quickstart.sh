#!/usr/bin/env bash
# Builds Tollgate and serves examples/quickstart.toml: models `demo-fast` and `demo-smart` on the
# built-in mock provider, key `sk-demo`, on 127.0.0.1:4000 (admin and /metrics on :4001).
# Extra arguments go to `tollgate serve` (e.g. --listen 0.0.0.0:4000).
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/setup.sh
exec cargo run -p tollgate-cli -- serve --config examples/quickstart.toml "$@"
