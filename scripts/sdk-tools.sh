#!/usr/bin/env bash
# What the browser-build test (janus-wasm/tests/chromium.rs) needs, installed only when missing:
# the wasm32 target, wasm-bindgen-cli at exactly the wasm-bindgen version in Cargo.lock (the
# CLI and the library must agree), and Debian's Chromium. Safe to rerun; prints what it uses.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi

want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ]; then
    # --locked first, as the CLI's own lock file pins it; a registry that lacks one of those
    # exact versions (e.g. a yanked one) gets a fresh resolution of the same CLI version.
    cargo install wasm-bindgen-cli --version "$want" --locked ||
        cargo install wasm-bindgen-cli --version "$want"
fi

if ! command -v chromium >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
fi

# (`chromium --version` starts the browser, which takes seconds: ask dpkg instead.)
echo "wasm32-unknown-unknown: installed; $(wasm-bindgen --version); chromium $(dpkg-query -W -f='${Version}' chromium 2>/dev/null || echo '(not from dpkg)')"
