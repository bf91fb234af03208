#!/usr/bin/env bash
# Builds the task SDK's example modules into tasks/target/wasm32-wasip2/release/:
# the Rust ones for wasm32-wasip2 (installing the target with rustup if it is
# missing), and the Python ones (tasks/python/examples/NAME, as NAME_py.wasm)
# with componentize-py, installed from PyPI into a virtualenv under target/
# if it is missing. A Python module is built again only when its sources or
# the SDK changed.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi
cargo build --release --target wasm32-wasip2 --manifest-path tasks/Cargo.toml "$@"

source scripts/componentize-py.sh
out=tasks/target/wasm32-wasip2/release
# Each Python example and the world it is built against.
for example in counter:python-migrating-task webwatch:python-task; do
  name=${example%%:*} world=${example#*:}
  wasm="$out/${name}_py.wasm"
  if [ -f "$wasm" ] && [ -z "$(find tasks/python wit "$COMPONENTIZE_PY" -newer "$wasm" -type f -not -path "*/__pycache__/*" -print -quit)" ]; then
    continue
  fi
  echo "building $wasm (componentize-py, world $world)" >&2
  "$COMPONENTIZE_PY" -d tasks/python/wit -w "$world" componentize \
    -p tasks/python -p "tasks/python/examples/$name" app -o "$wasm.partial" >/dev/null
  mv "$wasm.partial" "$wasm"
done
