#!/usr/bin/env bash
# The chaos soak: many faults drawn at random (kill, pause, stop,
# partitions, packet loss, full disk, rollouts during faults) on 5 node
# containers, each checked as in the test suite. The seed is printed; the
# same seed replays the same choices of fault and victim.
#
#   scripts/chaos-soak.sh [--seed N] [--faults N]     (default: a new seed, 40 faults)
#
# The report: target/chaos/soak.md. Needs the Docker engine and root.
set -euo pipefail
cd "$(dirname "$0")/.."
while [ $# -gt 0 ]; do
  case "$1" in
    --seed) export BATON_CHAOS_SEED="$2"; shift 2 ;;
    --faults) export BATON_CHAOS_FAULTS="$2"; shift 2 ;;
    *) echo "usage: scripts/chaos-soak.sh [--seed N] [--faults N]" >&2; exit 2 ;;
  esac
done
scripts/build-static-node.sh
source scripts/static-target.sh
scripts/build-tasks.sh
scripts/chaos-clean.sh
cargo test -p baton-cluster-tests --target "$BATON_TEST_TARGET" --test chaos soak -- --ignored --nocapture
