#!/usr/bin/env bash
# The README's second command: every test, on a fresh machine.
#
# Unit tests, in-process Raft tests with fault injection, and cluster tests
# that start real baton-node and batonctl processes on loopback. Setup steps
# that a fresh machine needs belong here.
set -euo pipefail
cd "$(dirname "$0")/.."
# The cluster tests run the binaries from target/debug; `cargo test` alone
# builds only those of packages with integration tests.
cargo build --workspace --bins
# The example task modules, for wasm32-wasip2 (installs the target if needed).
scripts/build-tasks.sh
cargo test --workspace --all-targets "$@"
