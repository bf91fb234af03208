#!/usr/bin/env bash
# What metrics cost (issue 17): commits/s and ticks/s of the same release
# build with and without every node's /metrics scraped every second, in the
# same run on the same machine; see BENCHMARKS.md.
#   scripts/bench-metrics.sh [--rounds N]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    *) echo "usage: scripts/bench-metrics.sh [--rounds N]" >&2; exit 2 ;;
  esac
done
cargo build --release --workspace --bins
echo "## Commits, unscraped and scraped every second, $rounds rounds"
target/release/baton-bench --no-etcd --no-reads --kills 0 --rounds "$rounds" --seconds 8 --scraped-every-ms 1000
echo
echo "## Ticks: 2,000 counters every 200 ms, unscraped and scraped in turn"
for round in $(seq 1 "$rounds"); do
  for scrape in no yes; do
    flags=(--tasks 2000 --period-ms 200 --seconds 20 --no-faults --workers 0)
    [ "$scrape" = yes ] && flags+=(--scrape-every-ms 1000)
    echo "### round $round, scraped: $scrape"
    target/release/baton-scale-bench "${flags[@]}" | grep -E "^Machine|ticks committed per second|scraped|overdue|CPU of the nodes"
  done
done
