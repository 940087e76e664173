"""Call the peer package nemos (in its own Python >= 3.12 venv) from the project's Python.

numpy + stdlib only, so it imports under the project's Python 3.11::

    from benchmarks.peers.run import run_nemos, nemos_available   # or sys.path-insert this dir
    if nemos_available():
        res = run_nemos(X_train, Y_train, X_test, Y_test, repeats=3)
        res["heldout_ll"], res["t_first_s"], res["t_warm_s"]

The venv is made by ``bash benchmarks/peers/setup.sh`` (default ``benchmarks/peers/.venv``;
``venv=`` or the ``NEUROREC_NEMOS_VENV`` environment variable point elsewhere). The arrays go
through an NPZ in a temporary directory to ``nemos_glm.py`` (see its docstring for the model,
the solver, the intercept nemos adds, threads and timing) and its JSON comes back as a dict.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "nemos_glm.py"
DEFAULT_VENV = HERE / ".venv"


class NemosUnavailable(RuntimeError):
    """The nemos venv is missing or broken."""


def _venv(venv: str | os.PathLike | None) -> Path:
    if venv is None:
        venv = os.environ.get("NEUROREC_NEMOS_VENV") or DEFAULT_VENV
    return Path(venv)


def _python(venv: str | os.PathLike | None) -> Path:
    return _venv(venv) / "bin" / "python"


def nemos_available(venv: str | os.PathLike | None = None) -> bool:
    """True when the venv's python exists and imports nemos."""
    py = _python(venv)
    if not py.exists():
        return False
    try:
        r = subprocess.run([str(py), "-c", "import nemos"], capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def run_nemos(X_train, Y_train, X_test, Y_test, *, l2: float = 0.0, repeats: int = 3,
              tol: float | None = None, maxiter: int | None = None,
              venv: str | os.PathLike | None = None, threads: int = 2,
              compilation_cache: bool = True, timeout: float | None = None) -> dict:
    """Fit nemos' Poisson ``PopulationGLM`` (default solver) in the venv; its JSON as a dict.

    Args:
        X_train, X_test: (n_rows, n_cols) designs; nemos adds one intercept per unit.
        Y_train, Y_test: (n_rows, n_units) counts (or (n_rows,) for one unit).
        l2: ridge strength in nemos' convention (penalty ``0.5 * l2 * ||coef||^2`` added to
            the sum over units of the *mean* NLL over rows; intercept unpenalised); 0 →
            unregularised.
        repeats: warm fits after the first (timed as ``t_warm_s``).
        tol, maxiter: solver_kwargs (nemos defaults 1e-4 and 500 when None).
        venv: the venv made by ``setup.sh`` (default ``benchmarks/peers/.venv``).
        threads: CPU cores given to XLA / BLAS in the child.
        compilation_cache: False → every fit recompiles (see ``nemos_glm.py``).
        timeout: seconds for the child process (None: no limit).

    Returns:
        The dict ``nemos_glm.py`` writes: ``t_first_s``, ``t_warm_s``, ``coef`` (n_units ×
        n_cols), ``intercept``, ``heldout_ll``, ``train_ll`` (nats, with log y!), per-unit
        LLs, solver name and state, versions.

    Raises:
        NemosUnavailable: the venv is missing or cannot import nemos.
        RuntimeError: the child failed (its stderr is in the message).
    """
    py = _python(venv)
    if not py.exists():
        raise NemosUnavailable(
            f"nemos venv not found at {_venv(venv)} (no {py}); "
            "run bash benchmarks/peers/setup.sh")
    arrays = {"X_train": np.asarray(X_train, dtype=np.float64),
              "Y_train": np.asarray(Y_train, dtype=np.float64),
              "X_test": np.asarray(X_test, dtype=np.float64),
              "Y_test": np.asarray(Y_test, dtype=np.float64),
              "l2": np.float64(l2)}
    with tempfile.TemporaryDirectory(prefix="neurorec_nemos_") as tmp:
        inp, out = Path(tmp) / "in.npz", Path(tmp) / "out.json"
        np.savez(inp, **arrays)
        cmd = [str(py), str(SCRIPT), str(inp), str(out), "--repeats", str(int(repeats)),
               "--threads", str(int(threads))]
        if tol is not None:
            cmd += ["--tol", repr(float(tol))]
        if maxiter is not None:
            cmd += ["--maxiter", str(int(maxiter))]
        if not compilation_cache:
            cmd.append("--no-compilation-cache")
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            if "No module named 'nemos'" in r.stderr or "No module named 'jax'" in r.stderr:
                raise NemosUnavailable(f"{py} cannot import nemos; "
                                       f"run bash benchmarks/peers/setup.sh\n{r.stderr[-2000:]}")
            raise RuntimeError(f"nemos_glm.py failed (exit {r.returncode}):\n{r.stderr[-4000:]}")
        result = json.loads(out.read_text())
    result["stderr_tail"] = r.stderr[-2000:]
    return result
