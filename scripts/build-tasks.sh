#!/usr/bin/env bash
# Builds the task SDK's example modules for wasm32-wasip2 (installing the
# target with rustup if it is missing) into tasks/target/wasm32-wasip2/release/.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi
cargo build --release --target wasm32-wasip2 --manifest-path tasks/Cargo.toml "$@"
