#!/usr/bin/env bash
# The rolling upgrade from an earlier release to this tree, on real
# processes: builds REF (a tag, a commit) in a git worktree of its own,
# starts 3- and 5-node clusters on REF's baton-node and baton-heart, with
# 200 counters ticking and a client writing, and upgrades every node to
# this tree's baton-node with `batonctl upgrade`'s upload. It fails unless
# every upgrade ends done; it prints the same tables as
# scripts/bench-upgrade.sh (tick gaps, write waits, time per node) and the
# releases and cluster version after each upgrade.
#
#   scripts/upgrade-soak.sh --from REF [bench flags, e.g. --nodes 3]
#
# REF must have rolling upgrades (release 0.5.0 or later: commit 9004391
# or later). Release builds: REF's goes to target/soak-from, this tree's to
# target/release. Takes about 25 minutes from cold on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
from=""
if [ "${1:-}" = --from ]; then
  from=${2:?--from needs a git ref}
  shift 2
fi
if [ -z "$from" ]; then
  echo "error: name the release to upgrade from: scripts/upgrade-soak.sh --from REF (a tag or commit)" >&2
  exit 2
fi
commit=$(git rev-parse --verify "$from^{commit}") || {
  echo "error: $from is not a commit of this repository" >&2
  exit 2
}
src=target/soak-from-src
git worktree remove --force "$src" 2>/dev/null || rm -rf "$src"
git worktree add --detach "$src" "$commit" >/dev/null
trap 'git worktree remove --force "$src" 2>/dev/null || true' EXIT
(cd "$src" && CARGO_TARGET_DIR="$PWD/../soak-from" cargo build --release -p baton-node --bins)
old=target/soak-from/release
if [ ! -x "$old/baton-heart" ]; then
  echo "error: $from has no baton-heart: rolling upgrades begin with release 0.5.0" >&2
  exit 2
fi
cargo build --release --workspace --bins
scripts/build-tasks.sh
echo "upgrading from $from ($("$old/baton-node" --version)) to this tree ($(target/release/baton-node --version))" >&2
# Not exec: the worktree is removed when the bench ends.
target/release/baton-upgrade-bench --installed-binary "$old/baton-node" \
  --upgrade-binary target/release/baton-node "$@"
