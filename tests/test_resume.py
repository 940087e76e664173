"""Interruption and divergence: a real ``neurorec fit`` subprocess killed mid-fit (SIGTERM and
SIGKILL) and resumed with ``--resume`` ends at bitwise the parameters of an uninterrupted run;
a fit that turns NaN stops at once, names the iteration and parameter, and keeps the last good
checkpoint.

:func:`run_and_kill` is generic (any ``neurorec`` command that checkpoints into a folder) so
that ``neurorec train`` can reuse it.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from neurorec.cli import main
from neurorec.core.errors import DivergenceError
from neurorec.families.glm.spec import FitSpec
from neurorec.fit.checkpoint import load_checkpoint
from neurorec.fit.lbfgs import fit_lbfgs
from neurorec.fit.run import Run

REPO = Path(__file__).resolve().parents[1]
GLM_V1 = REPO / "models" / "glm_v1.yaml"
# a small GLM that runs long enough to be killed in the middle: 4 units, history on, held-back
# trials tracked (early stopping with a patience it never exhausts), a checkpoint every 2 its
SMALL_FIT = ["--quiet", "--seed", "3", "--set", "coupling.enabled=false",
             "--set", "fit.max_iter=60", "--set", "fit.check_every=2",
             "--set", "fit.patience=100",
             # the L-BFGS loop is what checkpoints (a batched Newton GLM fit takes seconds and
             # starts over on --resume, to the same result)
             "--set", "fit.solver=lbfgs"]
# same threads in the subprocess as in this process (conftest: 1), so the numbers can agree
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_and_kill(argv: Sequence[str], watch: Path, pattern: str, sig: int,
                 timeout: float = 240.0) -> tuple[int, str, str]:
    """Run ``python -m neurorec.cli ARGV``; send ``sig`` as soon as a file matching
    ``pattern`` appears in ``watch`` (the first checkpoint); wait for the process to end.

    Returns:
        (return code, stdout, stderr). A process that finished before the signal fails the
        calling test through its return code 0.
    """
    proc = subprocess.Popen([sys.executable, "-m", "neurorec.cli", *map(str, argv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=SUBPROCESS_ENV, cwd=REPO)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if watch.is_dir() and any(watch.glob(pattern)):
                proc.send_signal(sig)
                break
            time.sleep(0.01)
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def params_of(out: Path) -> dict[str, np.ndarray]:
    with np.load(out / "params.npz") as p:
        return {k: p[k] for k in p.files}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, small_nwb):
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("ref") / "fit"
    assert main(["fit", str(GLM_V1), "--data", str(small_nwb), "--out", str(out),
                 *SMALL_FIT]) == 0
    assert not out.with_name("fit.partial").exists()  # checkpoints removed once OUT is whole
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_fit_resumes_to_identical_parameters(sig, reference, small_nwb, tmp_path, capsys):
    out = tmp_path / "fit"
    work = tmp_path / "fit.partial"
    code, _, err = run_and_kill(["fit", GLM_V1, "--data", small_nwb, "--out", out, *SMALL_FIT],
                                work, "lbfgs-*.pt", sig)
    state = load_checkpoint(work / "lbfgs-0.pt")
    assert not state["finished"] and 0 < state["n_iter"] < 60  # killed mid-fit
    assert not out.exists()  # no half-written result
    if sig == signal.SIGTERM:
        # handled: a checkpoint at the next step boundary, one clear line, exit 128 + 15
        assert code == 143
        lines = err.strip().splitlines()
        assert lines == [f"stopped by SIGTERM at iteration {state['n_iter']}; checkpoint saved "
                         f"in {work}; run the same command with --resume to continue"]
    else:
        assert code == -signal.SIGKILL

    # without --resume the checkpoints are not thrown away silently
    capsys.readouterr()
    assert main(["fit", str(GLM_V1), "--data", str(small_nwb), "--out", str(out),
                 *SMALL_FIT]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{work}: checkpoints of an interrupted run; pass --resume to continue it or "
        "--overwrite to start over"]

    if sig == signal.SIGKILL:  # a checkpoint of another run (here: seed) is refused
        assert main(["fit", str(GLM_V1), "--data", str(small_nwb), "--out", str(out),
                     *SMALL_FIT, "--resume", "--seed", "4"]) == 2
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"{work / 'lbfgs-0.pt'}: checkpoint of another run (seed differ); resume with the "
            "same spec, data, seed and device, or pass --overwrite to start over")

    assert main(["fit", str(GLM_V1), "--data", str(small_nwb), "--out", str(out),
                 *SMALL_FIT, "--resume"]) == 0
    conv = json.loads((out / "metrics.json").read_text())["convergence"]
    # the CLI warns about a fit that stopped at fit.max_iter (this budget is short on purpose)
    unconverged = [] if conv["converged"] else [
        f"glm: warning: the {conv['optimizer']} fit did not converge ({conv['reason']}, "
        f"{conv['n_iter']} iterations); see convergence.png, raise fit.max_iter or the penalty"]
    assert capsys.readouterr().err.splitlines() == [f"resuming from {work}", *unconverged]
    ref, got = params_of(reference), params_of(out)
    assert ref.keys() == got.keys()
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)  # bitwise
    assert not work.exists()


# ------------------------------------------------------------------- the loop itself, in-process
def _rosenbrock_problem(n: int = 6):
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(n, generator=gen, dtype=torch.float64) * 0.5).requires_grad_()
    params = {"x": x}

    def objective() -> torch.Tensor:
        return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()

    return params, objective


def test_lbfgs_resume_is_bitwise_at_every_boundary(tmp_path):
    spec = FitSpec(max_iter=40, check_every=3, tol=1e-12, early_stopping=False,
                   newton_polish=False)
    params, objective = _rosenbrock_problem()
    full = fit_lbfgs(params, objective, spec, progress=False,
                     run=Run(checkpoint_dir=tmp_path / "full"))
    expected = params["x"].detach().clone()
    assert full.n_iter > 6
    # stop after k iterations (a shorter budget writes the same checkpoints up to there)
    for k in (3, 6, 9):
        work = tmp_path / f"k{k}"
        p, obj = _rosenbrock_problem()
        fit_lbfgs(p, obj, spec.model_copy(update={"max_iter": k}), progress=False,
                  run=Run(checkpoint_dir=work))
        state = load_checkpoint(work / "lbfgs-0.pt")
        assert state["n_iter"] == k
        state["finished"] = False  # as if killed: the budget was the full one
        torch.save(state, work / "lbfgs-0.pt")
        p, obj = _rosenbrock_problem()
        again = fit_lbfgs(p, obj, spec, progress=False,
                          run=Run(checkpoint_dir=work, resume=True))
        assert torch.equal(p["x"], expected), k
        assert (again.n_iter, again.n_evals) == (full.n_iter, full.n_evals)
        assert again.history == full.history


def test_divergence_names_iteration_parameter_and_keeps_last_good_checkpoint(tmp_path):
    spec = FitSpec(max_iter=40, check_every=2, early_stopping=False, newton_polish=False)
    params, objective = _rosenbrock_problem()
    calls = [0]

    def poisoned() -> torch.Tensor:
        calls[0] += 1
        loss = objective()
        return loss * math.nan if calls[0] > 12 else loss

    with pytest.raises(DivergenceError) as info:
        fit_lbfgs(params, poisoned, spec, progress=False, run=Run(checkpoint_dir=tmp_path))
    (line,) = info.value.lines
    m = re.fullmatch(r"fit: iteration (\d+): parameters x became NaN/Inf \(.*\); the last good "
                     r"state \(iteration (\d+)\) is kept in (.+)", line)
    assert m, line
    bad_iter, good_iter = int(m[1]), int(m[2])
    assert Path(m[3]) == tmp_path / "lbfgs-0.pt"
    assert good_iter < bad_iter
    state = load_checkpoint(tmp_path / "lbfgs-0.pt")
    assert state["n_iter"] == good_iter
    assert torch.isfinite(state["params"]["x"]).all()
    assert not torch.isfinite(params["x"]).all()


def test_divergence_in_a_cli_fit_is_one_line_and_keeps_the_checkpoint(
        small_nwb, tmp_path, capsys, monkeypatch):
    from neurorec.families.glm.glm import GLM

    real = GLM._objective
    calls = [0]

    def poisoned(self, p, d):
        calls[0] += 1
        loss = real(self, p, d)
        return loss * math.inf if calls[0] > 10 else loss

    monkeypatch.setattr(GLM, "_objective", poisoned)
    out = tmp_path / "fit"
    capsys.readouterr()
    code = main(["fit", str(GLM_V1), "--data", str(small_nwb), "--out", str(out), *SMALL_FIT])
    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert len(err) == 1 and "Traceback" not in err[0]
    m = re.fullmatch(r"fit: iteration (\d+): (.+) \(lower .*\); the last good state "
                     r"\(iteration (\d+)\) is kept in (.+)", err[0])
    assert m, err[0]
    assert "NaN/Inf" in m[2] and re.search(r"\b(beta|h)_z\b|objective", m[2])
    assert Path(m[4]) == tmp_path / "fit.partial" / "lbfgs-0.pt"
    state = load_checkpoint(m[4])
    assert state["n_iter"] == int(m[3]) < int(m[1])
    assert all(torch.isfinite(v).all() for v in state["params"].values())
    assert not out.exists()


# ------------------------------------------------------------------- ctrnn_obs (Adam, engine)
CTRNN_V1 = REPO / "models" / "ctrnn_v1.yaml"
# 4 recorded units, 4 network units; a checkpoint (and a held-back NLL) every 5 steps
SMALL_OBS_FIT = ["--quiet", "--seed", "1", "--set", "network.n_units=4",
                 "--set", "training.n_steps=200", "--set", "training.batch_size=16",
                 "--set", "training.validate_every=5", "--set", "training.patience=1000"]


def test_sigterm_stops_a_ctrnn_obs_fit_at_a_checkpoint_and_resume_finishes_it(
        small_nwb, tmp_path, capsys):
    ref = tmp_path / "ref"
    assert main(["fit", str(CTRNN_V1), "--data", str(small_nwb), "--out", str(ref),
                 *SMALL_OBS_FIT]) == 0
    out, work = tmp_path / "fit", tmp_path / "fit.partial"
    code, _, err = run_and_kill(["fit", CTRNN_V1, "--data", small_nwb, "--out", out,
                                 *SMALL_OBS_FIT], work, "adam-*.pt", signal.SIGTERM)
    state = load_checkpoint(work / "adam-0.pt")
    step = state["iteration"]
    assert code == 143 and not state["finished"] and 0 < step < 200 and step % 5 == 0
    assert err.strip().splitlines() == [f"stopped by SIGTERM at step {step}; checkpoint saved "
                                        f"in {work}; run the same command with --resume to "
                                        "continue"]
    assert not out.exists()
    assert main(["fit", str(CTRNN_V1), "--data", str(small_nwb), "--out", str(out),
                 *SMALL_OBS_FIT, "--resume"]) == 0
    want, got = params_of(ref), params_of(out)
    assert want.keys() == got.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)  # bitwise
    assert not work.exists()
