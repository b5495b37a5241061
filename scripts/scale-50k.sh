#!/usr/bin/env bash
# 50,000 concurrent authenticated sessions on one gateway (issue 13). Not part of the test
# suite (tests/scale.rs is its bounded 2,000-session version); run it on a quiet machine:
#
#   scripts/scale-50k.sh                      # 50,000 sessions, 4 client processes
#   SESSIONS=20000 PROCS=2 scripts/scale-50k.sh
#   NO_BUILD=1 scripts/scale-50k.sh           # reuse target/release
#
# What it does: starts `janus` (release, configs/local.yaml on its own ports, the admin and client
# listeners on 0.0.0.0, idle timeout raised) and PROCS `janus-bench --mode idle` processes, each
# holding SESSIONS/PROCS authenticated sessions to its own 127.0.0.x address of the gateway (each
# (source, destination) pair has its own 28k ephemeral ports, so 50,000 connections fit on
# loopback). Then, with every session open, a janus-bench echo run measures latency. Needs root
# (or CAP_SYS_RESOURCE) for the open-file limit.
#
# Reports: memory per session (resident memory after minus before, over the sessions), the
# handshake rate (sessions / time until all were open, as the gateway counts them), and echo
# latency under that load. Raw JSON reports are left in $OUT (default target/scale-50k).
set -euo pipefail
cd "$(dirname "$0")/.."

SESSIONS=${SESSIONS:-50000}
PROCS=${PROCS:-4}
HOLD=${HOLD:-90s}            # how long the idle clients stay (covers the ramp and the echo run)
RAMP=${RAMP:-20s}            # client starts spread over this
PORT_BASE=${PORT_BASE:-27001}
OUT=${OUT:-target/scale-50k}
ECHO_CLIENTS=${ECHO_CLIENTS:-200}

TCP=$PORT_BASE
HTTP=$((PORT_BASE + 1))
GRPC=$((PORT_BASE + 2))
DEMO=$((PORT_BASE + 3))
WS=$((PORT_BASE + 4))

# The gateway holds one descriptor per session (the client processes fewer each).
need_files=$((SESSIONS + 2000))
ulimit -Hn "$need_files" 2>/dev/null || true
ulimit -n "$need_files" 2>/dev/null || {
  echo "scale-50k: cannot raise the open-file limit to $need_files (hard limit $(ulimit -Hn));" \
    "run as root with CAP_SYS_RESOURCE, or lower SESSIONS" >&2
  exit 1
}

if [ -z "${NO_BUILD:-}" ]; then
  cargo build --release -p janus-tokio --bin janus --bin janus-bench
fi
JANUS=target/release/janus
BENCH=target/release/janus-bench

mkdir -p "$OUT"
CONFIG=$OUT/janus.yaml
sed -e "s/127.0.0.1:7001/0.0.0.0:$TCP/" \
    -e "s/127.0.0.1:7002/127.0.0.1:$WS/" \
    -e "s/127.0.0.1:8100/127.0.0.1:$HTTP/" \
    -e "s/127.0.0.1:9100/127.0.0.1:$GRPC/" \
    -e "s/127.0.0.1:17102/127.0.0.1:$DEMO/g" \
    -e "s/^limits:$/limits:\n  session:\n    idle_timeout: 600s/" \
    configs/local.yaml > "$CONFIG"
sed -i "s/^    connection_rate: null$/    connection_rate: null\n    max_connections: $((SESSIONS + 10000))\n    max_handshakes: 4096/" "$CONFIG"
$JANUS check-config "$CONFIG" >/dev/null

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

RUST_LOG=warn $JANUS --config "$CONFIG" >"$OUT/janus.log" 2>&1 &
GATEWAY=$!
pids+=("$GATEWAY")
metric() { curl -s "http://127.0.0.1:$HTTP/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$HTTP/readyz" >/dev/null && break
  sleep 0.1
done
sleep 1
# The handshake rate on its own: connect, handshake, close, repeat (before the sessions pile up).
$BENCH --addr "127.0.0.1:$TCP" --mode handshake --clients 64 --duration 10s --quiet \
  --uid-base 80000000 --json "$OUT/handshake.json" >"$OUT/handshake.txt" 2>&1 || true
sleep 2
rss0=$(metric process_resident_memory_bytes)

per=$((SESSIONS / PROCS))
started=$(date +%s.%N)
for k in $(seq 0 $((PROCS - 1))); do
  $BENCH --addr "127.0.0.$((k + 1)):$TCP" --mode idle --clients "$per" \
    --duration "$HOLD" --ramp "$RAMP" --timeout 30s --quiet \
    --uid-base $((10000000 + k * 1000000)) --json "$OUT/idle-$k.json" \
    >"$OUT/idle-$k.txt" 2>&1 &
  pids+=("$!")
done

# Until the gateway holds every session (or the ramp plus a minute has passed).
open=0
deadline=$(( $(date +%s) + ${RAMP%s} + 60 ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  open=$(metric janus_sessions_open)
  [ "${open:-0}" -ge $((per * PROCS)) ] && break
  sleep 0.5
done
all_open=$(date +%s.%N)
sleep 2
rss1=$(metric process_resident_memory_bytes)
open=$(metric janus_sessions_open)

# Echo latency with every session open (the idle clients hold HOLD; this fits inside it).
$BENCH --addr "127.0.0.1:$TCP" --mode echo --clients "$ECHO_CLIENTS" --rate 10 \
  --duration 10s --quiet --uid-base 90000000 --json "$OUT/echo.json" >"$OUT/echo.txt" 2>&1 || true

for k in $(seq 0 $((PROCS - 1))); do wait "${pids[$((k + 1))]}" || true; done

python3 - "$OUT" "$SESSIONS" "$open" "$rss0" "$rss1" "$started" "$all_open" <<'PY'
import json, sys
out, sessions, open_, rss0, rss1, t0, t1 = sys.argv[1:]
sessions, open_ = int(sessions), int(float(open_ or 0))
rss0, rss1 = float(rss0), float(rss1)
ramp = float(t1) - float(t0)
print(f"sessions open at once: {open_} of {sessions}")
print(f"gateway resident memory: {rss0/2**20:.1f} MiB before, {rss1/2**20:.1f} MiB with them "
      f"-> {(rss1-rss0)/max(open_,1)/1024:.2f} KiB per session")
print(f"all open {ramp:.1f} s after the first start (starts spread over RAMP)")
def report(name):
    try:
        return json.load(open(f"{out}/{name}.json"))
    except Exception as e:  # that run failed: say so, the rest stands
        print(f"{name} run: no report ({e}); see {out}/{name}.txt")
        return None
hs = report("handshake")
if hs:
    lat = hs["handshake_latency_us"]
    print(f"handshakes: {hs['handshakes_per_sec']:.0f}/s (64 clients, connect-handshake-close), "
          f"latency p50 {lat['p50']} us, p99 {lat['p99']} us")
echo = report("echo")
if echo:
    lat = echo["request_latency_us"]
    print(f"echo with every session open: {echo['messages_per_sec']:.0f} msg/s, latency "
          f"p50 {lat['p50']} us, p90 {lat['p90']} us, p99 {lat['p99']} us, max {lat['max']} us, "
          f"{echo['error_total']} errors")
for k in range(16):
    try:
        idle = json.load(open(f"{out}/idle-{k}.json"))
    except Exception:
        break
    if idle["error_total"]:
        print(f"idle client process {k}: errors {idle['errors']}")
PY
