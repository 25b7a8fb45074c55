#!/usr/bin/env bash
# What budgets and rate limits cost the gateway: the same load through Tollgate without them and
# with both (embedded store), reporting gateway CPU per request. With REDIS_URL set, also with
# both shared through Redis, counting Redis round trips per request (script calls on the
# request path, pipelines after it). Loopback only, bounded in time.
#
#   bash benches/load/spend.sh          # DURATION=10 CONNECTIONS=32 REDIS_URL=redis://127.0.0.1:6379
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/setup.sh

DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
MOCK_PORT=18100 PORT=18500 ADMIN_PORT=18501
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -p tollgate-cli
BIN="${TOLLGATE_BIN:-$PWD/target/release/tollgate}"

WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
wait_port() { for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

"$BIN" mock --listen "127.0.0.1:$MOCK_PORT" >"$WORK/mock.log" 2>&1 & PIDS+=($!)
wait_port "$MOCK_PORT"
HASH="$("$BIN" hash-key sk-bench)"
cat > "$WORK/base.toml" <<EOF
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

[prices."up/mock"]
input_per_1m = 1.0
output_per_1m = 2.0

[[keys]]
name = "bench"
hash = "$HASH"
tenant = "bench"
EOF
cp "$WORK/base.toml" "$WORK/spend.toml"
cat >> "$WORK/spend.toml" <<EOF

[spend]
data_dir = "$WORK/data"

[[budgets]]
key = "bench"
limit_usd = 1000000.0
period = "daily"

[[budgets]]
tenant = "bench"
limit_usd = 1000000.0
period = "monthly"

[[rate_limits]]
per = "key"
rpm = 100000000
tpm = 100000000000
EOF
if [ -n "${REDIS_URL:-}" ]; then
  { echo "[shared]"; echo "redis_url = \"$REDIS_URL\""; echo "prefix = \"tollgate-bench-$$\""; echo;
    cat "$WORK/spend.toml"; } > "$WORK/redis.toml"
fi
cat > "$WORK/post.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer sk-bench"
wrk.body = '{"model":"bench","max_tokens":16,"messages":[{"role":"user","content":"How much does this cost?"}]}'
EOF

# CPU seconds (user + system) the process has used so far.
cpu() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$1/stat"; }

run() {
  local name=$1
  RUST_LOG=warn "$BIN" serve --config "$WORK/$name.toml" >"$WORK/$name.log" 2>&1 & local pid=$!
  PIDS+=("$pid")
  wait_port "$PORT"
  wrk -t2 -c"$CONNECTIONS" -d2s -s "$WORK/post.lua" "http://127.0.0.1:$PORT/v1/chat/completions" >/dev/null
  local before; before=$(cpu "$pid")
  local calls_before=0 calls_after=0
  [ "$name" = redis ] && calls_before=$(redis_calls)
  local out; out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -s "$WORK/post.lua" "http://127.0.0.1:$PORT/v1/chat/completions")
  local after; after=$(cpu "$pid")
  [ "$name" = redis ] && calls_after=$(redis_calls)
  local requests; requests=$(echo "$out" | awk '/requests in/ {print $1}')
  local non2xx; non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  kill "$pid"; wait "$pid" 2>/dev/null || true
  awk -v n="$name" -v r="$requests" -v b="$before" -v a="$after" -v d="$DURATION" -v e="${non2xx:-0}" \
    'BEGIN { printf "%-6s %8.0f req/s  %7.1f us CPU/request  (non-2xx: %s)\n", n, r / d, (a - b) * 1e6 / r, e }'
  if [ "$name" = redis ]; then
    # One EVALSHA on the request path (admission), one EVAL after it (settlement): each a
    # round trip. wrk's last in-flight requests may be uncounted: +-connections.
    awk -v r="$requests" -v b="$calls_before" -v a="$calls_after" \
      'BEGIN { split(b, x, " "); split(a, y, " ");
               printf "       %.3f admission scripts and %.3f settlements per request\n", (y[1] - x[1]) / r, (y[2] - x[2]) / r }'
  fi
}

# Calls of EVALSHA and EVAL so far.
redis_calls() {
  redis-cli -u "$REDIS_URL" info commandstats | tr -d '\r' | awk -F'[=,:]' '
    /^cmdstat_evalsha:/ { s = $3 } /^cmdstat_eval:/ { e = $3 } END { print s + 0, e + 0 }'
}

echo "gateway CPU per request, $CONNECTIONS connections, ${DURATION}s each:"
run base
run spend
if [ -n "${REDIS_URL:-}" ]; then run redis; fi
