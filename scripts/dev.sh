#!/usr/bin/env bash
# The README's first command: build the binaries and the example task
# modules, and run a local cluster with example tasks.
# Arguments go to `batonctl dev` (for example --nodes 5 --data-dir /tmp/baton).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bins -p baton-node -p batonctl
scripts/build-tasks.sh
exec target/release/batonctl dev "$@"
