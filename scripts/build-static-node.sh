#!/usr/bin/env bash
# Builds baton-node as a static binary (glibc, linked statically) for the
# container tests' image, which is made from scratch: there is no registry
# to pull a base image from. Peers are configured by IP address, so the
# binary never needs glibc's NSS modules. The result:
# target/x86_64-unknown-linux-gnu/debug/baton-node.
set -euo pipefail
cd "$(dirname "$0")/.."
# An explicit --target keeps build scripts and proc macros dynamic; no
# debug info keeps the image small and the build shorter.
RUSTFLAGS="-C target-feature=+crt-static -C debuginfo=0" \
  cargo build -p baton-node --bin baton-node --target x86_64-unknown-linux-gnu "$@"
binary=target/x86_64-unknown-linux-gnu/debug/baton-node
# ldd says "statically linked" (static-pie) or "not a dynamic executable".
if ! ldd "$binary" 2>&1 | grep -qE "statically linked|not a dynamic executable"; then
  echo "error: $binary is dynamically linked; the container image needs a static binary" >&2
  exit 1
fi
