#!/usr/bin/env bash
# The README's second command: every test, on a fresh machine.
#
# Unit tests, in-process Raft tests with fault injection, cluster tests that
# start real baton-node and batonctl processes on loopback, and the chaos
# tests that run nodes in Docker containers (they need the Docker engine; a
# missing engine fails them). Setup steps that a fresh machine needs belong
# here.
#
# Everything is built once, for an explicit target with glibc linked
# statically: the container image is made from scratch around that same
# baton-node (there is no registry to pull a base image from), and the
# process tests run it too. An explicit --target keeps build scripts and
# proc macros dynamic. Binaries land in target/x86_64-unknown-linux-gnu/debug.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/static-target.sh
# The two-builds test upgrades a cluster of this tree built as an earlier
# release (cluster-tests/tests/two_builds.rs; the release and the cap must
# match its EARLIER and NODE_UPGRADES). It is built first, in the same
# target directory, so that it shares every dependency with the build after
# it and costs only the workspace's own crates again; its baton-node is kept
# aside and named to the test.
earlier="target/earlier-release/prebuilt/baton-node-0.5.0-earlier"
BATON_BUILD_RELEASE=0.5.0-earlier BATON_BUILD_MAX_CLUSTER_VERSION=6 \
  cargo build --locked --workspace --bins --target "$BATON_TEST_TARGET"
mkdir -p "$(dirname "$earlier")"
cp "target/$BATON_TEST_TARGET/debug/baton-node" "$earlier"
export BATON_EARLIER_NODE="$PWD/$earlier"
# The cluster tests run the binaries beside them; `cargo test` alone builds
# only those of packages with integration tests. Building this tree as
# itself again rebuilds what read the release's variables.
cargo build --locked --workspace --bins --target "$BATON_TEST_TARGET"
check_static "target/$BATON_TEST_TARGET/debug/baton-node"
check_static "target/$BATON_TEST_TARGET/debug/baton-heart"
# The example task modules, for wasm32-wasip2 (installs the target if needed).
scripts/build-tasks.sh
# Debian packages the tests use: a static busybox, from which the "Three
# machines" test builds its machines; Prometheus, which the metrics test
# runs against a cluster; Chromium and its WebDriver, with which the status
# page's test reads and clicks the page.
missing=()
if ! { [ -x /bin/busybox ] && ldd /bin/busybox 2>&1 | grep -q "not a dynamic executable"; }; then
  missing+=(busybox-static)
fi
if ! command -v prometheus >/dev/null; then
  missing+=(prometheus)
fi
if ! command -v chromium >/dev/null; then
  missing+=(chromium)
fi
if ! command -v chromedriver >/dev/null; then
  missing+=(chromium-driver)
fi
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Containers left by a test process that was itself killed.
scripts/chaos-clean.sh
cargo test --workspace --all-targets --target "$BATON_TEST_TARGET" "$@"
