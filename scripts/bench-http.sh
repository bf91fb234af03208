#!/usr/bin/env bash
# Builds release binaries and the example tasks, then measures what an HTTP
# request costs a task's tick against the same request from a plain Rust
# client; see BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
scripts/build-tasks.sh
exec target/release/baton-http-bench "$@"
