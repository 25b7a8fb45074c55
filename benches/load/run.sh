#!/usr/bin/env bash
# End-to-end load bench: the mock directly, nginx in front of the mock, and Tollgate in front of the
# mock, measured in one run on this machine. Prints saturation throughput, p50/p99 at fixed rates,
# streaming time to first token, and the Tollgate/nginx ratios. Every load loop is bounded in time
# and targets loopback only.
#
#   bash benches/load/run.sh            # DURATION=10s CONNECTIONS=64 RATES="500 2000" to adjust
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/setup.sh

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
RATES="${RATES:-500 2000}"
TTFT_SAMPLES="${TTFT_SAMPLES:-300}"
MOCK_PORT=18000 NGINX_PORT=18080 TOLLGATE_PORT=18400 ADMIN_PORT=18401

command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx-light; }
command -v oha >/dev/null || cargo install --locked oha
cargo build --release -p tollgate-cli
BIN="$PWD/target/release/tollgate"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() { for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

# The mock: no artificial delays, so every microsecond measured is proxy and machine overhead.
"$BIN" mock --listen "127.0.0.1:$MOCK_PORT" --chunks 8 >"$WORK/mock.log" 2>&1 & PIDS+=($!)
sed -e "s#__DIR__#$WORK#g" -e "s#__MOCK_PORT__#$MOCK_PORT#" -e "s#__NGINX_PORT__#$NGINX_PORT#" \
  benches/load/nginx.conf > "$WORK/nginx.conf"
mkdir -p "$WORK/body" "$WORK/proxy"
nginx -c "$WORK/nginx.conf" -p "$WORK"
TOLLGATE_UPSTREAM_URL="http://127.0.0.1:$MOCK_PORT/v1" TOLLGATE_LISTEN="127.0.0.1:$TOLLGATE_PORT" \
  TOLLGATE_ADMIN_LISTEN="127.0.0.1:$ADMIN_PORT" RUST_LOG=warn \
  "$BIN" serve --config examples/bench.toml >"$WORK/tollgate.log" 2>&1 & PIDS+=($!)
for p in $MOCK_PORT $NGINX_PORT $TOLLGATE_PORT; do wait_port "$p"; done

BODY='{"model":"bench","messages":[{"role":"user","content":"Hello, how are you?"}]}'
load() { # url duration extra-oha-args... -> oha JSON on stdout
  local url="$1" duration="$2"; shift 2
  oha --no-tui --output-format json -z "$duration" -m POST -H "authorization: Bearer sk-demo" \
    -H "content-type: application/json" -d "$BODY" "$@" "$url" |
    python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)))'
}

declare -A URL=(
  [mock]="http://127.0.0.1:$MOCK_PORT/v1/chat/completions"
  [nginx]="http://127.0.0.1:$NGINX_PORT/v1/chat/completions"
  [tollgate]="http://127.0.0.1:$TOLLGATE_PORT/v1/chat/completions"
)
declare -A PORT=([mock]=$MOCK_PORT [nginx]=$NGINX_PORT [tollgate]=$TOLLGATE_PORT)

RESULTS="${RESULTS_FILE:-$WORK/results.jsonl}"
: > "$RESULTS"
for target in mock nginx tollgate; do
  url="${URL[$target]}"
  curl -sf -o /dev/null -H 'authorization: Bearer sk-demo' -H 'content-type: application/json' -d "$BODY" "$url"
  load "$url" 3s -c "$CONNECTIONS" >/dev/null # warm-up
  sat=$(load "$url" "$DURATION" -c "$CONNECTIONS")
  echo "{\"target\":\"$target\",\"kind\":\"saturation\",\"oha\":$sat}" >> "$RESULTS"
  for rate in $RATES; do
    fixed=$(load "$url" "$DURATION" -c "$CONNECTIONS" -q "$rate")
    echo "{\"target\":\"$target\",\"kind\":\"rate\",\"rate\":$rate,\"oha\":$fixed}" >> "$RESULTS"
  done
  ttft=$(python3 benches/load/ttft.py 127.0.0.1 "${PORT[$target]}" /v1/chat/completions "$TTFT_SAMPLES")
  echo "{\"target\":\"$target\",\"kind\":\"ttft\",\"ttft\":$ttft}" >> "$RESULTS"
done

python3 benches/load/report.py "$RESULTS" "$RATES"
