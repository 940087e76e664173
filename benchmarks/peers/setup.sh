#!/usr/bin/env bash
# Create a Python 3.12 venv holding the peer package nemos (needs Python >= 3.12)
# and statsmodels, separate from the project's Python 3.11 environment.
#
#   bash benchmarks/peers/setup.sh            # venv at benchmarks/peers/.venv
#   VENV=/some/where bash benchmarks/peers/setup.sh
#
# Idempotent: if the venv already imports nemos, nothing is installed.
# Override the interpreter with PYTHON312=/path/to/python3.12 (default: the
# pyenv interpreter 3.12.1, selected with PYENV_VERSION).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${VENV:-$HERE/.venv}"

versions() {
    "$VENV/bin/python" - <<'PY'
import sys, importlib.metadata as md
print("python", sys.version.split()[0])
for p in ("nemos", "jax", "jaxlib", "jaxopt", "statsmodels", "numpy", "scipy"):
    try:
        print(p, md.version(p))
    except md.PackageNotFoundError:
        print(p, "(not installed)")
PY
}

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import nemos, statsmodels" >/dev/null 2>&1; then
    echo "venv $VENV already has nemos; skipping install"
    versions
    exit 0
fi

if [ -n "${PYTHON312:-}" ]; then
    "$PYTHON312" -m venv "$VENV"
else
    PYENV_VERSION="${PYENV_VERSION_312:-3.12.1}" python -m venv "$VENV"
fi

"$VENV/bin/python" -c 'import sys; assert sys.version_info >= (3, 12), sys.version' \
    || { echo "venv python is not >= 3.12 (nemos needs it)" >&2; exit 1; }

"$VENV/bin/pip" install --upgrade pip >/dev/null
"$VENV/bin/pip" install nemos statsmodels
versions
