#!/usr/bin/env bash
# The whole test suite: what CI runs (.ci/run calls exactly this) and what the README tells you
# to run. Installs what it needs when missing; safe to rerun.
#
#   FUZZ_SECONDS=30   seconds per fuzz target (0 skips fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
FUZZ_TARGETS=(frame handshake session proto proxy relay)

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
cargo --version
if ! rustup component list --installed 2>/dev/null | grep -q '^clippy'; then rustup component add clippy rustfmt; fi

step "system packages (protoc for etcd-client; redis-server and etcd for the cluster tests)"
need=()
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi
protoc --version
redis-server --version
# sed reads to the end: with pipefail, `head` closing early could kill etcd with SIGPIPE (exit 141).
etcd --version | sed -n 1p
command -v gcc >/dev/null 2>&1 || { echo "gcc is needed for the C ABI test" >&2; exit 1; }

step "SDK tools (wasm32 target, wasm-bindgen-cli as in Cargo.lock, chromium; only when missing)"
scripts/sdk-tools.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, all features, -D warnings)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "cargo test"
cargo test --workspace --all-features

step "janus-core stays sans-IO"
forbidden='^(tokio|mio|socket2|tonic|redis|etcd-client|hyper) '
if cargo tree -p janus-core -e normal,build --prefix none | grep -E "$forbidden"; then
    echo "janus-core must not depend on the crates above" >&2
    exit 1
fi
echo "ok: none of tokio, mio, socket2, tonic, redis, etcd-client in janus-core's tree"

step "janus-client's blocking build has no async runtime"
runtimes='^(tokio|tokio-[a-z-]+|mio|async-std|async-io|smol|futures-executor) '
if cargo tree -p janus-client --no-default-features --features blocking -e normal,build --prefix none | grep -E "$runtimes"; then
    echo "janus-client --features blocking must not depend on an async runtime" >&2
    exit 1
fi
echo "ok: no async runtime in janus-client's blocking build"

step "the mio edge (janus-mio) has no tokio stack"
forbidden='^(tokio|tonic|hyper|redis|etcd-client|h2|tower) '
if cargo tree -p janus-mio -e normal,build --prefix none | grep -E "$forbidden"; then
    echo "janus-mio must not depend on the crates above" >&2
    exit 1
fi
cargo build -q -p janus-mio --bin janus-edge
"${CARGO_TARGET_DIR:-target}/debug/janus-edge" check-config configs/edge.local.yaml
echo "ok: no tokio, tonic, hyper, redis, etcd-client in janus-mio's tree; its check-config runs"

if [ "$FUZZ_SECONDS" -gt 0 ]; then
    step "fuzzing (${FUZZ_SECONDS}s per target)"
    if ! rustup toolchain list | grep -q '^nightly'; then rustup toolchain install nightly --profile minimal; fi
    if ! cargo +nightly fuzz --version >/dev/null 2>&1; then cargo install cargo-fuzz --locked; fi
    for target in "${FUZZ_TARGETS[@]}"; do
        # Run on a scratch corpus seeded from the committed seeds, so the repo stays clean.
        # Crash inputs a campaign found (scripts/fuzz-campaign.sh) are replayed first, as seeds.
        corpus="fuzz/corpus/$target"
        mkdir -p "$corpus"
        dirs=("corpus/$target" "seeds/$target")
        [ -d "fuzz/regressions/$target" ] && dirs+=("regressions/$target")
        (cd fuzz && cargo +nightly fuzz run "$target" "${dirs[@]}" -- \
            -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -n 12)
    done
fi

step "all checks passed"
