#!/usr/bin/env bash
# Builds release binaries and runs the size benchmark (commit latency by
# write size, join time by snapshot size); see BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
exec target/release/baton-size-bench "$@"
