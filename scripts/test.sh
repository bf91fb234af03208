#!/usr/bin/env bash
# The README's second command: every test, on a fresh machine.
#
# Unit tests, in-process Raft tests with fault injection, and cluster tests
# that start real baton-node processes on loopback (cargo builds the binaries
# they run). Setup steps that a fresh machine needs belong here.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets "$@"
