#!/usr/bin/env bash
# Builds a release of Baton for Linux x86_64 machines: baton-node,
# baton-heart and batonctl linked statically (they need nothing installed),
# packed with the heart's systemd unit, install.sh and the example task
# modules (which `batonctl dev` runs, and the README deploys):
#
#   dist/baton-linux-x86_64.tar.gz   (one folder, baton/: bin/, examples/,
#                                     systemd/, install.sh, VERSION)
#
#   scripts/release.sh [--out DIR] [--binaries DIR]
#     --out DIR       where the archive goes (default dist, in the current
#                     folder)
#     --binaries DIR  pack the static binaries already built in DIR instead
#                     of building them with --release; BATON_RELEASE_BINARIES
#                     does the same (the "Three machines" test packs the
#                     debug build of scripts/test.sh this way)
#
# The README's "Three machines" section takes the archive from here.
set -euo pipefail
caller=$PWD
cd "$(dirname "$0")/.."
source scripts/static-target.sh
out=dist
binaries=${BATON_RELEASE_BINARIES:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=${2:?--out needs a folder}; shift 2 ;;
    --binaries) binaries=${2:?--binaries needs a folder}; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1; see scripts/release.sh --help" >&2; exit 2 ;;
  esac
done

case "$binaries" in ""|/*) ;; *) binaries="$caller/$binaries" ;; esac
if [ -z "$binaries" ]; then
  cargo build --release --target "$BATON_TEST_TARGET" \
    -p baton-node --bin baton-node --bin baton-heart -p batonctl --bin batonctl
  binaries="target/$BATON_TEST_TARGET/release"
fi
for binary in baton-heart baton-node batonctl; do
  if [ ! -x "$binaries/$binary" ]; then
    echo "error: $binaries/$binary is missing; build it, or leave out --binaries" >&2
    exit 2
  fi
  check_static "$binaries/$binary"
done

# The example modules, built from this tree (cargo does nothing when they
# are up to date).
examples=tasks/target/wasm32-wasip2/release
example_modules="counter.wasm counter_v2.wasm counter_v3_broken.wasm greeter.wasm"
scripts/build-tasks.sh

case "$out" in /*) ;; *) out="$caller/$out" ;; esac
version=$("$binaries/baton-node" --version | awk '{print $2}')
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/baton/bin" "$stage/baton/systemd" "$stage/baton/examples"
cp "$binaries/baton-heart" "$binaries/baton-node" "$binaries/batonctl" "$stage/baton/bin/"
for module in $example_modules; do
  cp "$examples/$module" "$stage/baton/examples/"
done
cp packaging/baton-heart.service "$stage/baton/systemd/"
cp packaging/install.sh "$stage/baton/"
echo "$version" > "$stage/baton/VERSION"
mkdir -p "$out"
tar -C "$stage" -czf "$out/baton-linux-x86_64.tar.gz" baton
echo "wrote $out/baton-linux-x86_64.tar.gz (Baton $version; install with baton/install.sh)"
