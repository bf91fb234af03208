# Sourced: sets COMPONENTIZE_PY to a componentize-py of the pinned version,
# installing it from PyPI into a virtualenv under target/ if it is missing.
# Python tasks are built with it (scripts/build-tasks.sh, docs/python.md).
COMPONENTIZE_PY_VERSION=0.25.1
componentize_py_env="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/componentize-py"
COMPONENTIZE_PY="$componentize_py_env/bin/componentize-py"
if ! { [ -x "$COMPONENTIZE_PY" ] && "$COMPONENTIZE_PY" --version 2>/dev/null | grep -qx "componentize-py $COMPONENTIZE_PY_VERSION"; }; then
  echo "installing componentize-py $COMPONENTIZE_PY_VERSION into $componentize_py_env" >&2
  python3 -m venv "$componentize_py_env"
  "$componentize_py_env/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
fi
export COMPONENTIZE_PY
