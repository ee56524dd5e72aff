#!/usr/bin/env bash
# Runs each fuzz target for a bounded time (default 60 s each) with cargo-fuzz (libFuzzer).
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 enables them on the stable toolchain.
# Usage: fuzz/run.sh [seconds-per-target]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for target in decoder session smux_decoder smux_session yamux_session; do
    echo "== fuzzing $target for ${seconds}s"
    # New finds go to corpus/<target>; seeds/<target> is read only.
    cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=16384
done
