#!/usr/bin/env bash
# Builds release binaries and the example tasks, then measures hot code
# swaps: swap latency, deploy to every node switched, tick gaps during a
# rollout, and the swap's cost per task; see BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
scripts/build-tasks.sh
exec target/release/baton-swap-bench "$@"
