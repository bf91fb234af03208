#!/usr/bin/env bash
# Builds release binaries and runs the formats benchmark (JSON against
# binary commit throughput, alternated in one run, and snapshot sizes); see
# BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
exec target/release/baton-format-bench "$@"
