# Source at the start of every command on the GPU machine, from the repository root:
#
#     . tools/device/setup.sh && python3 -m pytest -q tests/test_cuda.py
#
# (the device tool's `carry` must name .whl, and .devdata when data from ../shared/data is
# needed: MNIST, PTB). It installs the wheels in .whl/ -- packages the device image lacks:
# pydantic and its core, pynwb/hdmf, DCA, PyDMD, Brian 2, ... -- into /tmp/site without
# touching the image's own packages (torch, numpy, scipy, pandas, h5py, ...), puts them and the
# checkout on PYTHONPATH, points NEUROREC_DATA at .devdata, and prints the GPU and the
# torch/CUDA versions. NEUROREC_SKIP_WHEELS=1 skips the install (a machine that already has
# everything, e.g. a dry run on the development machine, whose Python is not 3.12).
# Sourced, so it `return`s a non-zero status on failure (the && chain then stops).

_nr_site=${NEUROREC_SITE:-/tmp/site}
if [ "${NEUROREC_SKIP_WHEELS:-0}" != 1 ]; then
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$_nr_site" .whl/*.whl || { echo "setup.sh: installing .whl/*.whl failed" >&2; return 1; }
    # pydantic-core needs typing_extensions >= 4.14.1: carried as a fallback, installed only
    # when the image's is older (replacing a newer one could break the image's torch)
    if ! python3 - <<'EOF'
import sys
from importlib.metadata import version
try:
    have = tuple(int(x) for x in version("typing_extensions").split(".")[:3])
except Exception:  # not installed, or an unparsable version
    sys.exit(1)
sys.exit(0 if have >= (4, 14, 1) else 1)
EOF
    then
        echo "setup.sh: the image's typing_extensions is older than 4.14.1: installing the carried one"
        python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$_nr_site" .whl/fallback/typing_extensions-*.whl || return 1
    fi
    export PYTHONPATH="$_nr_site:$PWD"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export NEUROREC_DATA="$PWD/.devdata"
export NEUROREC_BRIAN2_CACHE=/tmp/neurorec_brian2_cache
export MPLBACKEND=Agg
export PYTHONUNBUFFERED=1
unset _nr_site

if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
        | sed 's/^/GPU: /'
else
    echo "GPU: nvidia-smi not found"
fi
python3 - <<'EOF' || { echo "setup.sh: a package neurorec needs does not import" >&2; return 1; }
import importlib, platform
import numpy, torch
cuda = torch.cuda.is_available()
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda},"
      f" cuDNN {torch.backends.cudnn.version()}), cuda available: {cuda}"
      + (f" ({torch.cuda.get_device_name(0)})" if cuda else "") + f", numpy {numpy.__version__}")
missing = []
for name in ("neurorec.cli", "pydantic", "pynwb", "dca", "pydmd", "brian2"):
    try:
        importlib.import_module(name)
    except Exception as err:  # report every one, then fail on the required ones
        missing.append(name)
        print(f"import {name}: {type(err).__name__}: {err}")
required = [m for m in missing if m != "brian2"]  # brian2 is an optional benchmark peer
print("imports: " + ("ok" if not missing else f"failed: {', '.join(missing)}"))
raise SystemExit(1 if required else 0)
EOF
