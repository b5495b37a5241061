#!/usr/bin/env bash
# The benchmark suite (README "Benchmarks"): the same load generator (janus-bench) against
#
#   direct     janus-bench --echo-server                        (the floor: no relay at all)
#   haproxy    HAProxy (TCP mode) -> echo server                (the reference of every ratio)
#   nginx      nginx stream -> echo server
#   janus      janus (configs/local.yaml: demo backend in the process, real gRPC over loopback)
#   edge-sink  janus-edge -> relay sink (janus-edge sink)
#   edge-hub   janus-edge -> janus hub -> demo backend
#
# The relays carry plain length-prefixed frames (janus-bench --mode frames); janus and the edge
# carry the real protocol (handshake, AES-GCM both ways, gRPC tunnels). Everything under test is
# pinned to core 0 (taskset), the generator to core 1 (one runtime thread). Per target and point
# (connections x payload): closed loop, a ramp, a warm-up, then DURATION measured; RUNS rounds
# over all targets, medians reported. Then, same suite run: the handshake crypto bound on core 0,
# handshake storms, encrypted broadcast to BROADCAST_SESSIONS sessions, idle memory.
# Finally target/bench/<stamp>/{summary.json,table.md,chart.svg} via bench-report.
#
#   scripts/bench.sh                       the whole suite (about 40 minutes)
#   SMOKE=1 scripts/bench.sh               a few seconds per target, debug build (CI)
#   TARGETS="haproxy janus" CONNS="1000" PAYLOADS=64 RUNS=1 scripts/bench.sh
#   PARTS="echo idle" scripts/bench.sh     only some parts (echo handshake broadcast idle)
#   SKIP_BUILD=1 ...                       use the binaries in target/<profile> as they are
#
# Ports (127.0.0.1): 7001-7002, 7011-7012, 7100, 8100, 8110, 9100, 9110, 17102, 17300-17302.
# This VM allows 20,000 open files per process and root cannot raise that: a relay holds two
# sockets per connection, so the largest point is 9,900 connections and idle memory stops at
# 19,000 (README caveats).
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE="${SMOKE:-0}"
if [ "$SMOKE" = 1 ]; then
    PROFILE="${PROFILE:-debug}"
    TARGETS="${TARGETS:-direct haproxy nginx janus edge-sink edge-hub}"
    CONNS="${CONNS:-20}"
    PAYLOADS="${PAYLOADS:-64}"
    RUNS="${RUNS:-1}"
    DURATION="${DURATION:-1s}"
    WARMUP="${WARMUP:-0.5s}"
    BROADCAST_SESSIONS="${BROADCAST_SESSIONS:-50}"
    IDLE_CONNS="${IDLE_CONNS:-100}"
    HANDSHAKE_CLIENTS="${HANDSHAKE_CLIENTS:-4}"
else
    PROFILE="${PROFILE:-release}"
    TARGETS="${TARGETS:-direct haproxy nginx janus edge-sink edge-hub}"
    CONNS="${CONNS:-50 1000 9900}"
    PAYLOADS="${PAYLOADS:-64 512}"
    RUNS="${RUNS:-3}"
    DURATION="${DURATION:-10s}"
    WARMUP="${WARMUP:-2s}"
    BROADCAST_SESSIONS="${BROADCAST_SESSIONS:-10000}"
    IDLE_CONNS="${IDLE_CONNS:-10000 19000}"
    HANDSHAKE_CLIENTS="${HANDSHAKE_CLIENTS:-50}"
fi
PARTS="${PARTS:-echo handshake broadcast idle}"
OUT="${OUT:-target/bench/$(date +%Y%m%d-%H%M%S)}"
BIN="target/$PROFILE"
SUT_CORE="${SUT_CORE:-0}"
GEN_CORE="${GEN_CORE:-1}"
mkdir -p "$OUT/logs"
: >"$OUT/runs.jsonl"

step() { printf '\n==> %s\n' "$*"; }

step "tools (HAProxy, nginx with its stream module; installed when missing)"
need=()
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || nginx -V 2>&1 | grep -q -- '--with-stream ' || need+=(libnginx-mod-stream)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
HAPROXY="$(command -v haproxy || echo /usr/sbin/haproxy)"
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
"$HAPROXY" -v | sed -n 1p
"$NGINX" -v 2>&1

if [ "${SKIP_BUILD:-0}" = 1 ]; then
    step "build skipped (SKIP_BUILD=1): using $BIN as it is"
else
    step "build ($PROFILE)"
    flag=()
    [ "$PROFILE" = release ] && flag=(--release)
    cargo build -q "${flag[@]}" -p janus-tokio -p janus-mio -p janus-bench-report --bins
fi

echo "machine: $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg); out: $OUT"

# --- processes under test ------------------------------------------------------------------
pids=()
sut_pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
    sut_pids=()
}
trap cleanup EXIT
# sut NAME CMD...: runs CMD on the SUT core, logging to $OUT/logs/NAME.log.
sut() {
    local name="$1"
    shift
    taskset -c "$SUT_CORE" "$@" >>"$OUT/logs/$name.log" 2>&1 &
    pids+=($!)
    sut_pids+=($!)
}
wait_port() {
    for _ in $(seq 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "port $1 never opened" >&2
    return 1
}

echo_server() {
    sut echo-server "$BIN/janus-bench" --echo-server 127.0.0.1:17300
    wait_port 17300
}

write_haproxy_cfg() {
    cat >"$OUT/haproxy.cfg" <<CFG
global
    # Two sockets per connection; this VM's file limit is 20,000 per process.
    maxconn 9950
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 120s
    timeout server 120s
frontend relay
    bind 127.0.0.1:17301
    default_backend echo
backend echo
    server echo 127.0.0.1:17300 maxconn 9950
CFG
}

write_nginx_cfg() {
    local modules=""
    [ -e /usr/lib/nginx/modules/ngx_stream_module.so ] &&
        modules="load_module /usr/lib/nginx/modules/ngx_stream_module.so;"
    mkdir -p "$OUT/nginx"
    cat >"$OUT/nginx.conf" <<CFG
$modules
daemon off;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $PWD/$OUT/nginx/nginx.pid;
error_log $PWD/$OUT/logs/nginx-error.log warn;
events {
    worker_connections 19990;
    multi_accept on;
}
stream {
    server {
        listen 127.0.0.1:17302 backlog=4096;
        proxy_pass 127.0.0.1:17300;
        proxy_timeout 120s;
    }
}
CFG
}

# start TARGET: starts it, sets ADDR (TCP), WS (WebSocket URL or empty), MODE (frames | echo),
# PUSH (the push service, or empty) and LABEL.
start() {
    WS=""
    PUSH=""
    case "$1" in
    direct)
        LABEL="direct (echo server)"
        MODE=frames
        ADDR=127.0.0.1:17300
        echo_server
        ;;
    haproxy)
        LABEL="HAProxy (TCP mode)"
        MODE=frames
        ADDR=127.0.0.1:17301
        echo_server
        write_haproxy_cfg
        sut haproxy "$HAPROXY" -db -f "$OUT/haproxy.cfg"
        wait_port 17301
        ;;
    nginx)
        LABEL="nginx stream"
        MODE=frames
        ADDR=127.0.0.1:17302
        echo_server
        write_nginx_cfg
        sut nginx "$NGINX" -c "$PWD/$OUT/nginx.conf" -p "$PWD/$OUT/nginx"
        wait_port 17302
        # The worker does the relaying: watch it too.
        local worker
        worker="$(pgrep -P "${sut_pids[-1]}" | head -n1 || true)"
        [ -n "$worker" ] && sut_pids+=("$worker")
        ;;
    janus)
        LABEL="janus (tokio)"
        MODE=echo
        ADDR=127.0.0.1:7001
        WS=ws://127.0.0.1:7002/ws
        PUSH=127.0.0.1:9100
        LOG_LEVEL=warn sut janus "$BIN/janus" --config configs/local.yaml
        wait_port 7001
        ;;
    edge-sink)
        LABEL="janus-edge -> sink"
        MODE=echo
        ADDR=127.0.0.1:7011
        WS=ws://127.0.0.1:7012/ws
        sut sink "$BIN/janus-edge" sink --config configs/hub.local.yaml --listen 127.0.0.1:7100
        wait_port 7100
        EDGE_THREADS=1 sut edge "$BIN/janus-edge" --config configs/edge.local.yaml
        wait_port 7011
        ;;
    edge-hub)
        LABEL="janus-edge -> hub"
        MODE=echo
        ADDR=127.0.0.1:7011
        WS=ws://127.0.0.1:7012/ws
        LOG_LEVEL=warn sut hub "$BIN/janus" --config configs/hub.local.yaml
        wait_port 7100
        EDGE_THREADS=1 sut edge "$BIN/janus-edge" --config configs/edge.local.yaml
        wait_port 7011
        ;;
    *)
        echo "unknown target $1" >&2
        return 1
        ;;
    esac
}

# The ramp for a number of connections: a few hundred new connections per 100 ms at most.
ramp_for() {
    if [ "$SMOKE" = 1 ]; then echo 0.2s; elif [ "$1" -le 100 ]; then echo 1s; elif [ "$1" -le 2000 ]; then echo 2s; else echo 8s; fi
}

# secs DURATION: seconds in a janus-bench duration (10s, 500ms).
secs() { python3 -c "import sys; s=sys.argv[1]; print(float(s[:-2])/1000 if s.endswith('ms') else float(s.rstrip('s')))" "$1"; }

# bench KIND TARGET CONNS PAYLOAD TRANSPORT FILE ARGS...: one janus-bench run on the generator
# core, recorded in runs.jsonl. A failed run is logged and skipped, never fatal.
bench() {
    local kind="$1" target="$2" conns="$3" payload="$4" transport="$5" file="$6"
    shift 6
    local watch=()
    for p in "${sut_pids[@]}"; do watch+=(--watch-pid "$p"); done
    local status=0
    taskset -c "$GEN_CORE" "$BIN/janus-bench" --threads 1 --quiet --json "$OUT/$file" \
        "${watch[@]}" "$@" >"$OUT/logs/${file%.json}.txt" 2>&1 || status=$?
    if [ "$status" -ne 0 ] || [ ! -s "$OUT/$file" ]; then
        echo "   $file: janus-bench failed (exit $status), see $OUT/logs/${file%.json}.txt"
        return 0
    fi
    printf '{"kind":"%s","target":"%s","label":"%s","conns":%s,"payload":%s,"transport":"%s","file":"%s"}\n' \
        "$kind" "$target" "$LABEL" "$conns" "$payload" "$transport" "$file" >>"$OUT/runs.jsonl"
    python3 - "$OUT/$file" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
l = r["request_latency_us"]; c = r.get("cpu") or {}
p = r["parameters"]
extra = ""
if r.get("gateway_memory"):
    m = r["gateway_memory"]; extra = "  %d conns: %.0f B/conn" % (m["connections"], m["bytes_per_connection"])
if p["mode"] == "broadcast":
    extra = "  %.0f deliveries/s" % r["pushes_per_sec"]
if p["mode"] == "handshake":
    extra = "  %.0f handshakes/s" % r["handshakes_per_sec"]
print("   %-10s %5d conns %4d B  %9.0f msg/s  p50 %7d  p99 %7d  p99.9 %7d µs  cpu sut %3.0f%% gen %3.0f%%  errors %d%s" % (
    p["mode"], p["clients"], p["payload"], r["messages_per_sec"], l["p50"], l["p99"], l["p999"],
    c.get("watched_percent") or 0, c.get("generator_percent") or 0, r["error_total"], extra))
PY
}

# The ramp of an idle run: at most 500 new connections a second (handshakes on a core shared
# with other work must not pile up past the admission limits), then eight quiet seconds.
idle_ramp_for() {
    if [ "$SMOKE" = 1 ]; then echo 0.2s; else python3 -c "import sys; print('%ds' % max(2, int(sys.argv[1]) // 500))" "$1"; fi
}
idle_duration_for() { python3 -c "import sys; print('%.1fs' % (float(sys.argv[1].rstrip('s')) + 8))" "$(idle_ramp_for "$1")"; }

warm="$(secs "$WARMUP")"
measure="$(secs "$DURATION")"
duration_for() { python3 -c "import sys; print('%.3fs' % sum(map(float, sys.argv[1:])))" "$(secs "$(ramp_for "$1")")" "$warm" "$measure"; }

# --- 1. messages per second and latency --------------------------------------------------
if [[ " $PARTS " == *" echo "* ]]; then
    for run in $(seq "$RUNS"); do
        for target in $TARGETS; do
            step "echo: $target (round $run of $RUNS)"
            if ! start "$target"; then
                cleanup
                continue
            fi
            for conns in $CONNS; do
                for payload in $PAYLOADS; do
                    bench echo "$target" "$conns" "$payload" tcp "echo-$target-c$conns-p$payload-r$run.json" \
                        --addr "$ADDR" --mode "$MODE" --clients "$conns" --payload "$payload" \
                        --ramp "$(ramp_for "$conns")" --warmup "$WARMUP" --duration "$(duration_for "$conns")" \
                        --timeout 10s
                done
            done
            cleanup
        done
    done
fi

# --- 2. handshakes against the crypto bound ----------------------------------------------
if [[ " $PARTS " == *" handshake "* ]] && [[ " $TARGETS " == *" janus "* ]]; then
    for run in $(seq "$RUNS"); do
        step "handshakes (round $run of $RUNS): the crypto bound on core $SUT_CORE, then storms"
        taskset -c "$SUT_CORE" "$BIN/janus-bench" --crypto-bound --json "$OUT/crypto-r$run.json" >/dev/null
        printf '{"kind":"crypto","target":"crypto","file":"crypto-r%s.json"}\n' "$run" >>"$OUT/runs.jsonl"
        for target in janus edge-sink; do
            [[ " $TARGETS " == *" $target "* ]] || continue
            start "$target"
            bench handshake "$target" "$HANDSHAKE_CLIENTS" 0 tcp "handshake-$target-tcp-r$run.json" \
                --addr "$ADDR" --mode handshake --clients "$HANDSHAKE_CLIENTS" \
                --ramp "$(ramp_for 50)" --warmup "$WARMUP" --duration "$(duration_for 50)"
            bench handshake "$target" "$HANDSHAKE_CLIENTS" 0 ws "handshake-$target-ws-r$run.json" \
                --ws "$WS" --mode handshake --clients "$HANDSHAKE_CLIENTS" \
                --ramp "$(ramp_for 50)" --warmup "$WARMUP" --duration "$(duration_for 50)"
            cleanup
        done
    done
fi

# --- 3. encrypted broadcast --------------------------------------------------------------
if [[ " $PARTS " == *" broadcast "* ]] && [[ " $TARGETS " == *" janus "* ]]; then
    for run in $(seq "$RUNS"); do
        step "broadcast to $BROADCAST_SESSIONS sessions (round $run of $RUNS)"
        start janus
        for payload in $PAYLOADS; do
            bench broadcast janus "$BROADCAST_SESSIONS" "$payload" tcp "broadcast-janus-p$payload-r$run.json" \
                --addr "$ADDR" --mode broadcast --push-addr "$PUSH" --clients "$BROADCAST_SESSIONS" \
                --payload "$payload" --ramp "$(ramp_for "$BROADCAST_SESSIONS")" --warmup "$WARMUP" \
                --duration "$(duration_for "$BROADCAST_SESSIONS")" --timeout 20s
        done
        cleanup
    done
fi

# --- 4. idle memory ----------------------------------------------------------------------
if [[ " $PARTS " == *" idle "* ]]; then
    step "idle memory (one run per point: memory barely moves between runs)"
    for target in $TARGETS; do
        [ "$target" = direct ] && continue
        for conns in $IDLE_CONNS; do
            start "$target"
            case "$MODE" in
            frames)
                # Two sockets per relayed connection: stay under the file limit.
                n=$((conns > 9900 ? 9900 : conns))
                bench idle "$target" "$n" 0 tcp "idle-$target-tcp-c$n.json" \
                    --addr "$ADDR" --mode idle-frames --clients "$n" --ramp "$(idle_ramp_for "$n")" \
                    --duration "$(idle_duration_for "$n")" --timeout 20s
                ;;
            *)
                # A fresh process per transport: memory freed by the first run stays resident.
                for transport in tcp ws; do
                    [ "$transport" = ws ] && { cleanup; start "$target"; }
                    if [ "$transport" = ws ]; then dest=(--ws "$WS"); else dest=(--addr "$ADDR"); fi
                    # The sessions compact after a quiet second; read memory a few seconds later.
                    bench idle "$target" "$conns" 0 "$transport" "idle-$target-$transport-c$conns.json" \
                        "${dest[@]}" --mode idle --clients "$conns" --ramp "$(idle_ramp_for "$conns")" \
                        --duration "$(idle_duration_for "$conns")" --timeout 20s
                done
                ;;
            esac
            cleanup
        done
    done
fi

step "report"
"$BIN/bench-report" "$OUT"
echo "outputs in $OUT (runs.jsonl, one JSON report per run, logs/)"
