#!/usr/bin/env bash
# Builds release binaries and runs the scale benchmark (many tasks on one
# cluster); see BENCHMARKS.md. Arguments go to baton-scale-bench, e.g.
#   scripts/bench-scale.sh --tasks 2000 --period-ms 200
#   scripts/bench-scale.sh --tasks 100000 --period-ms 60000 --workers 2
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
exec target/release/baton-scale-bench "$@"
