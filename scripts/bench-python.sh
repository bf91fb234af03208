#!/usr/bin/env bash
# Builds release binaries and the example tasks, then measures a Python
# task module against the same task in Rust (compile, cache, ticks); see
# BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
scripts/build-tasks.sh
exec target/release/baton-python-bench "$@"
