#!/usr/bin/env bash
# Builds release binaries and the example tasks, then measures the rolling
# upgrade of the node binary on 3- and 5-node local clusters: per-node
# upgrade time, the whole upgrade minus its gates, tick gaps, and write
# latency while leadership moves; see BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
scripts/build-tasks.sh
exec target/release/baton-upgrade-bench "$@"
