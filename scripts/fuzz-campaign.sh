#!/usr/bin/env bash
# A recorded fuzz campaign: every target for MINUTES minutes (default 10), one after another,
# each on a scratch corpus seeded from fuzz/seeds/ and fuzz/regressions/. Prints each target's
# final libFuzzer statistics; a crash stops that target and its input is copied to
# fuzz/regressions/<target>/ (commit it with the fix: the test command replays it).
#
#   MINUTES=10 scripts/fuzz-campaign.sh [target ...]
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES="${MINUTES:-10}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame handshake session proto proxy relay)

if ! rustup toolchain list | grep -q '^nightly'; then rustup toolchain install nightly --profile minimal; fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then cargo install cargo-fuzz --locked; fi

status=0
for target in "${targets[@]}"; do
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus" "fuzz/regressions/$target"
    log="fuzz/artifacts/$target.campaign.log"
    mkdir -p fuzz/artifacts
    printf '\n==> %s: %s min\n' "$target" "$MINUTES"
    if (cd fuzz && cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" "regressions/$target" -- \
        -max_total_time=$((MINUTES * 60)) -rss_limit_mb=2048 -print_final_stats=1 >"../$log" 2>&1); then
        grep -E '^(stat::|#[0-9]+.*DONE)' "$log" | grep -E 'number_of_executed_units|average_exec_per_sec|peak_rss|new_units_added|DONE' || true
        grep -E '^#[0-9]+' "$log" | tail -n 1
    else
        status=1
        echo "CRASH in $target (log: $log)"
        for f in fuzz/artifacts/"$target"/crash-* fuzz/artifacts/"$target"/oom-* fuzz/artifacts/"$target"/timeout-*; do
            [ -e "$f" ] && cp "$f" "fuzz/regressions/$target/" && echo "kept $f in fuzz/regressions/$target/"
        done
    fi
done
exit $status
