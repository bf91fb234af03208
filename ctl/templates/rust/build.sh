#!/usr/bin/env bash
# Builds {{name}}.wasm, a Baton task module, for wasm32-wasip2 (adding the
# target with rustup if it is missing). Deploy it with:
#   batonctl modules deploy {{name}} {{name}}.wasm
set -euo pipefail
cd "$(dirname "$0")"
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi
cargo build --release --target wasm32-wasip2
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{crate}}.wasm" {{name}}.wasm
echo "built {{name}}.wasm"
