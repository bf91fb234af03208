#!/usr/bin/env bash
# The status page's load time (issue 17; goal < 300 ms with 10,000 tasks):
# each page loaded from the leader and from a follower of a 3-node release
# cluster whose 10,000 counters tick every second, beside /metrics and a
# `tasks list` of every task in the same run; see BENCHMARKS.md.
#   scripts/bench-status-page.sh [--tasks N] [--loads N]
set -euo pipefail
cd "$(dirname "$0")/.."
tasks=10000
loads=20
while [ $# -gt 0 ]; do
  case "$1" in
    --tasks) tasks="$2"; shift 2 ;;
    --loads) loads="$2"; shift 2 ;;
    *) echo "usage: scripts/bench-status-page.sh [--tasks N] [--loads N]" >&2; exit 2 ;;
  esac
done
cargo build --release --workspace --bins
scripts/build-tasks.sh
target/release/baton-scale-bench --tasks "$tasks" --period-ms 1000 --seconds 10 --no-faults --workers 0 \
  --status-page-loads "$loads"
