#!/usr/bin/env bash
# The edge tier's benchmarks (README "Edge benchmarks"): messages per second and latency of
#   1. HAProxy (TCP mode) relaying plain frames to an echo server      (the reference)
#   2. janus-edge relaying to a relay sink (janus-edge sink)            (the edge alone)
#   3. janus-edge -> janus hub -> demo backend                         (the edge tier)
#   4. janus alone -> demo backend                                     (the gateway)
# and, with IDLE=N, the user-space memory of N idle authenticated edge connections.
# Everything under test is pinned to core 0 (taskset -c 0), the load generator to core 1.
#
#   CLIENTS=1000 DURATION=10s PAYLOAD=64 scripts/bench-edge.sh
#   IDLE=19000 scripts/bench-edge.sh idle     (the fd hard limit here is 20,000 per process)
#
# Ports used: 7001-7012, 7100, 8100, 8110, 9100, 17102, 17300-17301 on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS="${CLIENTS:-1000}"
DURATION="${DURATION:-10s}"
PAYLOAD="${PAYLOAD:-64}"
RAMP="${RAMP:-2s}"
IDLE="${IDLE:-19000}"
BIN=target/release
OUT="${OUT:-target/bench-edge}"
mkdir -p "$OUT"

cargo build --release -q -p janus-tokio -p janus-mio --bins

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
trap cleanup EXIT
sut() { taskset -c 0 "$@" >"$OUT/$(basename "$1").log" 2>&1 & pids+=($!); }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
bench() { taskset -c 1 "$BIN/janus-bench" --threads 1 --quiet --clients "$CLIENTS" --duration "$DURATION" --ramp "$RAMP" --payload "$PAYLOAD" "$@"; }

if [ "${1:-all}" = idle ]; then
    sut "$BIN/janus-edge" sink --config configs/hub.local.yaml --listen 127.0.0.1:7100
    wait_port 7100
    EDGE_THREADS=1 sut "$BIN/janus-edge" --config configs/edge.local.yaml
    wait_port 7011
    CLIENTS="$IDLE" DURATION=40s RAMP=20s bench --addr 127.0.0.1:7011 --mode idle \
        --metrics http://127.0.0.1:8110/metrics --json "$OUT/idle.json"
    grep -E 'TCP|Sock|FRAG' /proc/net/sockstat
    exit 0
fi

echo "== 1. HAProxy (TCP mode) -> echo server"
sut "$BIN/janus-bench" --echo-server 127.0.0.1:17300
cat >"$OUT/haproxy.cfg" <<CFG
global
    maxconn 9000          # the fd hard limit here is 20000
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend relay
    bind 127.0.0.1:17301
    default_backend echo
backend echo
    server echo 127.0.0.1:17300
CFG
sut /usr/sbin/haproxy -f "$OUT/haproxy.cfg"
wait_port 17301
bench --addr 127.0.0.1:17301 --mode frames --json "$OUT/haproxy.json"
cleanup

echo "== 2. janus-edge -> relay sink"
sut "$BIN/janus-edge" sink --config configs/hub.local.yaml --listen 127.0.0.1:7100
wait_port 7100
EDGE_THREADS=1 sut "$BIN/janus-edge" --config configs/edge.local.yaml
wait_port 7011
bench --addr 127.0.0.1:7011 --mode echo --json "$OUT/edge-sink.json"
cleanup

echo "== 3. janus-edge -> janus hub -> demo backend"
sut "$BIN/janus" --config configs/hub.local.yaml
wait_port 7100
EDGE_THREADS=1 sut "$BIN/janus-edge" --config configs/edge.local.yaml
wait_port 7011
bench --addr 127.0.0.1:7011 --mode echo --json "$OUT/edge-hub.json"
cleanup

echo "== 4. janus alone -> demo backend"
sut "$BIN/janus" --config configs/local.yaml
wait_port 7001
bench --addr 127.0.0.1:7001 --mode echo --json "$OUT/janus.json"
cleanup

echo "== summary (messages/s, p99 µs)"
for f in haproxy edge-sink edge-hub janus; do
    python3 -c "import json,sys; r=json.load(open('$OUT/$f.json')); print('%-10s %10.0f msg/s  p50 %6d µs  p99 %6d µs  errors %s' % ('$f', r['messages_per_sec'], r['request_latency_us']['p50'], r['request_latency_us']['p99'], sum(r['errors'].values()) if isinstance(r['errors'], dict) else r['errors']))"
done
