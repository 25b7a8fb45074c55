#!/usr/bin/env bash
# What plugins cost end to end, and whether a hostile one hurts its neighbours: the same load
# (wrk, latency percentiles) through Tollgate with no plugin, with the C keyword guard on every
# request, and with no plugin on the measured model while a second client keeps hitting
# another model whose plugin never returns (an endless loop stopped at its 50 ms deadline,
# fail_open). Loopback only, bounded in time. Needs the example plugins (plugins/build.sh).
#
#   bash benches/load/plugins.sh        # DURATION=10 CONNECTIONS=32
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/setup.sh

DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
MOCK_PORT=18100 PORT=18600 ADMIN_PORT=18601
PLUGINS="${TOLLGATE_TEST_PLUGIN_DIR:-$PWD/plugins/target}"
[ -f "$PLUGINS/c_hostile.wasm" ] || { echo "build the plugins first: bash plugins/build.sh" >&2; exit 1; }
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -p tollgate-cli
BIN="${TOLLGATE_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/tollgate}"

WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
wait_port() { for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

"$BIN" mock --listen "127.0.0.1:$MOCK_PORT" >"$WORK/mock.log" 2>&1 & PIDS+=($!)
wait_port "$MOCK_PORT"
HASH="$("$BIN" hash-key sk-bench)"
cat > "$WORK/none.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
admin_listen = "127.0.0.1:$ADMIN_PORT"
pid_file = "$WORK/tollgate.pid"
upgrade_sock = "$WORK/upgrade.sock"

[providers.up]
kind = "openai_compatible"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"

[models.bench]
targets = [{ provider = "up", model = "mock" }]

[models.hostile]
targets = [{ provider = "up", model = "mock" }]

[[keys]]
name = "bench"
hash = "$HASH"
tenant = "bench"
TOML
{ cat "$WORK/none.toml"; cat <<TOML

[[plugins]]
name = "guard"
path = "$PLUGINS/c_keyword_guard.wasm"
models = ["bench"]
config = { deny = ["falcon"], redact = ["acme"], stop = ["classified"] }
TOML
} > "$WORK/guard.toml"
{ cat "$WORK/none.toml"; cat <<TOML

[[plugins]]
name = "loop"
path = "$PLUGINS/c_hostile.wasm"
models = ["hostile"]
on_error = "fail_open"
timeout_ms = 50
config = { mode = "loop" }
TOML
} > "$WORK/hostile.toml"
for model in bench hostile; do
  cat > "$WORK/$model.lua" <<LUA
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer sk-bench"
wrk.body = '{"model":"$model","max_tokens":16,"messages":[{"role":"user","content":"How much does this cost?"}]}'
LUA
done

run() {
  local name=$1
  RUST_LOG=error "$BIN" serve --config "$WORK/$name.toml" >"$WORK/$name.log" 2>&1 & local pid=$!
  PIDS+=("$pid")
  wait_port "$PORT"
  wrk -t2 -c"$CONNECTIONS" -d2s -s "$WORK/bench.lua" "http://127.0.0.1:$PORT/v1/chat/completions" >/dev/null
  local side=""
  if [ "$name" = hostile ]; then
    wrk -t1 -c4 -d"$((DURATION + 2))s" -s "$WORK/hostile.lua" "http://127.0.0.1:$PORT/v1/chat/completions" >"$WORK/side.txt" &
    side=$!
    sleep 1
  fi
  local out; out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/bench.lua" "http://127.0.0.1:$PORT/v1/chat/completions")
  local hostile_requests=""
  if [ -n "$side" ]; then
    wait "$side"
    hostile_requests=$(awk '/requests in/ {print $1}' "$WORK/side.txt")
  fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$out" | awk -v n="$name" -v d="$DURATION" -v h="$hostile_requests" '
    /requests in/ { r = $1 } /Non-2xx/ { e = $NF }
    $1 == "50%" { p50 = $2 } $1 == "99%" { p99 = $2 }
    END { printf "%-8s %7.0f req/s  p50 %-8s p99 %-8s non-2xx %d", n, r / d, p50, p99, e
          if (h != "") printf "  (alongside %d requests cut off by the looping plugin)", h
          printf "\n" }'
}

echo "clean requests, $CONNECTIONS connections, ${DURATION}s each:"
run none
run guard
run hostile
