#!/usr/bin/env bash
# Builds release binaries and runs the cluster benchmark; see BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
exec target/release/baton-bench "$@"
