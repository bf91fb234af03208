#!/usr/bin/env bash
# Removes what chaos tests left behind when their process was itself killed
# (a test that ends, passing or failing, removes its own): containers,
# networks and volumes labelled baton.test whose run is over, and the small
# data disks (tmpfs) mounted for them. A run is over when no test process
# holds its lock (/tmp/baton-chaos-<run>.lock).
set -euo pipefail
command -v docker >/dev/null || { echo "error: docker not found; the chaos tests need the Docker engine" >&2; exit 1; }
runs=$( { docker ps -a --filter label=baton.test --format '{{.Label "baton.test"}}'
          docker network ls --filter label=baton.test --format '{{.Label "baton.test"}}'
          docker volume ls --filter label=baton.test --format '{{.Label "baton.test"}}'; } | sort -u)
for run in $runs; do
  lock="/tmp/baton-chaos-$run.lock"
  if [ -e "$lock" ] && ! flock -n "$lock" true; then
    continue  # a test still runs it
  fi
  echo "removing chaos run $run, left by a test process that ended without cleaning up"
  docker ps -aq --filter "label=baton.test=$run" | xargs -r docker rm -f -v >/dev/null
  docker network ls -q --filter "label=baton.test=$run" | xargs -r docker network rm >/dev/null
  docker volume ls -q --filter "label=baton.test=$run" | xargs -r docker volume rm >/dev/null
  rm -f "$lock"
done
# The directories (and small disks) of runs that are over.
for dir in /tmp/baton-chaos-*-*/; do
  dir=${dir%/}
  [ -d "$dir" ] || continue
  run=$(basename "$dir" | cut -d- -f3)
  lock="/tmp/baton-chaos-$run.lock"
  if [ -e "$lock" ] && ! flock -n "$lock" true; then
    continue
  fi
  busy=0
  for data in "$dir"/*/data; do
    if grep -qs " $data " /proc/mounts && ! umount "$data"; then
      busy=1
    fi
  done
  if [ "$busy" = 1 ]; then
    echo "warning: cannot unmount a small disk under $dir yet; the next run of this script will try again" >&2
    continue
  fi
  rm -rf "$dir"
done
