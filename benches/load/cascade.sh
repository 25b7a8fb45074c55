#!/usr/bin/env bash
# What a cascade costs the gateway: the same load through Tollgate with a plain model, and with a
# two-tier cascade whose cheap answer is kept (one upstream call, scored by log-probabilities),
# escalated (two calls), and kept for a streaming client (re-emitted as SSE). Reports throughput,
# p99 latency and gateway CPU per request. Loopback only, bounded in time.
#
#   bash benches/load/cascade.sh          # DURATION=10 CONNECTIONS=32 RUNS="plain kept ..."
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/setup.sh

DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
MOCK_PORT=18110 PORT=18510 ADMIN_PORT=18511
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
if [ -z "${TOLLGATE_BIN:-}" ]; then cargo build --release -p tollgate-cli; fi
BIN="${TOLLGATE_BIN:-$PWD/target/release/tollgate}"

WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
wait_port() { for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

"$BIN" mock --listen "127.0.0.1:$MOCK_PORT" --ttft-ms 0 --chunk-delay-ms 0 >"$WORK/mock.log" 2>&1 & PIDS+=($!)
wait_port "$MOCK_PORT"
HASH="$("$BIN" hash-key sk-bench)"
config() { # NAME MODEL-TABLE
  cat > "$WORK/$1.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"
admin_listen = "127.0.0.1:$ADMIN_PORT"
pid_file = "$WORK/tollgate.pid"
upgrade_sock = "$WORK/upgrade.sock"

[providers.sure]
kind = "openai_compatible"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
headers = { "x-mock-confidence" = "0.95" }

[providers.unsure]
kind = "openai_compatible"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
headers = { "x-mock-confidence" = "0.2" }

[providers.strong]
kind = "openai_compatible"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"

[prices."sure/cheap"]
input_per_1m = 0.15
output_per_1m = 0.6

[prices."unsure/cheap"]
input_per_1m = 0.15
output_per_1m = 0.6

[prices."strong/big"]
input_per_1m = 5.0
output_per_1m = 15.0

$2

[[keys]]
name = "bench"
hash = "$HASH"
tenant = "bench"
EOF
}
cascade() { # CHEAP-PROVIDER
  printf '[[models.bench.cascade.tiers]]\ntargets = ["%s/cheap"]\nthreshold = 0.6\nscorers = [{ kind = "logprobs" }]\n\n[[models.bench.cascade.tiers]]\ntargets = ["strong/big"]\n' "$1"
}
config plain "$(printf '[models.bench]\ntargets = [{ provider = "strong", model = "big" }]\n')"
config kept "$(cascade sure)"
config escalated "$(cascade unsure)"
cp "$WORK/kept.toml" "$WORK/kept_stream.toml"
for kind in json stream; do
  stream=false; [ "$kind" = stream ] && stream=true
  cat > "$WORK/$kind.lua" <<EOF
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer sk-bench"
wrk.body = '{"model":"bench","stream":$stream,"max_tokens":32,"messages":[{"role":"user","content":"Which city should I visit in spring?"}]}'
EOF
done

# CPU seconds (user + system) the process has used so far.
cpu() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$1/stat"; }

run() { # CONFIG LUA
  local name=$1 lua=$2
  RUST_LOG=warn "$BIN" serve --config "$WORK/$name.toml" >"$WORK/$name.log" 2>&1 & local pid=$!
  PIDS+=("$pid")
  wait_port "$PORT"
  wrk -t2 -c"$CONNECTIONS" -d2s -s "$WORK/$lua.lua" "http://127.0.0.1:$PORT/v1/chat/completions" >/dev/null
  local before; before=$(cpu "$pid")
  local out; out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/$lua.lua" "http://127.0.0.1:$PORT/v1/chat/completions")
  local after; after=$(cpu "$pid")
  local requests; requests=$(echo "$out" | awk '/requests in/ {print $1}')
  local non2xx; non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  local p99; p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  kill "$pid"; wait "$pid" 2>/dev/null || true
  awk -v n="$name" -v r="$requests" -v b="$before" -v a="$after" -v d="$DURATION" -v e="${non2xx:-0}" -v p="$p99" \
    'BEGIN { printf "%-12s %8.0f req/s  p99 %8s  %7.1f us CPU/request  (non-2xx: %s)\n", n, r / d, p, (a - b) * 1e6 / r, e }'
}

echo "$CONNECTIONS connections, ${DURATION}s each:"
for name in ${RUNS:-plain kept escalated kept_stream}; do
  case $name in kept_stream) run "$name" stream ;; *) run "$name" json ;; esac
done
