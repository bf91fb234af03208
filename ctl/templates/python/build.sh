#!/usr/bin/env bash
# Builds {{name}}.wasm, a Baton task module, from app.py with componentize-py
# (installed from PyPI into .venv on the first build; set COMPONENTIZE_PY to
# use another). Deploy it with:
#   batonctl modules deploy {{name}} {{name}}.wasm
set -euo pipefail
cd "$(dirname "$0")"
if [ -z "${COMPONENTIZE_PY:-}" ]; then
  COMPONENTIZE_PY=.venv/bin/componentize-py
  if ! [ -x "$COMPONENTIZE_PY" ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check componentize-py=={{componentize_py}}
  fi
fi
"$COMPONENTIZE_PY" -d wit -w {{world}} componentize -p . app -o {{name}}.wasm.partial >/dev/null
mv {{name}}.wasm.partial {{name}}.wasm
echo "built {{name}}.wasm"
