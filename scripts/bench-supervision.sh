#!/usr/bin/env bash
# Builds release binaries and the example tasks, then measures task failover,
# drain and reassignment; see BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
scripts/build-tasks.sh
exec target/release/baton-supervision-bench "$@"
