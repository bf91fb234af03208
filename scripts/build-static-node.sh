#!/usr/bin/env bash
# Builds baton-heart and baton-node as static binaries for the container
# tests' image, as scripts/test.sh does: target/x86_64-unknown-linux-gnu/debug/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/static-target.sh
cargo build -p baton-node --bin baton-node --bin baton-heart --target "$BATON_TEST_TARGET" "$@"
check_static "target/$BATON_TEST_TARGET/debug/baton-node"
check_static "target/$BATON_TEST_TARGET/debug/baton-heart"
