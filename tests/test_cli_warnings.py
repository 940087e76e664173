"""What used to pass silently (issue 30) now says so on stderr, or is refused where the result
would be wrong: bins that can never hold a spike, trials cropped to the shortest, overlapping
trials, a bare integer --heldout-neurons, a fit that did not converge; ``fit.max_iter`` is the
L-BFGS budget in iterations; the convergence report names the solver that ran."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import neurorec.workflows.pipeline as pipeline
from neurorec.cli import main
from neurorec.data import bin_trials
from neurorec.data.nwb import write_nwb
from neurorec.datasets import load
from neurorec.fit.lbfgs import fit_lbfgs
from neurorec.spec import load_model_spec
from neurorec.spec.fitting import FitSpec
from neurorec.workflows.data_checks import empty_bins, recording_warnings, spike_time_grid

REPO = Path(__file__).resolve().parents[1]
GLM = REPO / "models" / "glm_stimulus_only.yaml"
TINY = ["--set", "stimulus.n_basis=3", "--set", "data.conditions=[contrast]", "--quiet"]


class Reached(Exception):
    pass


def run(capsys, *argv) -> tuple[int, str, list[str]]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


@pytest.fixture
def no_fit(monkeypatch):
    """The fit itself is not needed to see what fit says before it starts."""
    def reached(*args, **kwargs):
        raise Reached
    monkeypatch.setattr(pipeline, "fit_and_evaluate", reached)


@pytest.mark.parametrize("bin_ms", [7, 5, 3, 10, 20, 30])
def test_empty_bins_match_the_binned_data(bin_ms):
    """The count announced equals the bins of the binned data that hold no spike in any trial
    and unit (V1 session 1: spike times on 10 ms bin centres)."""
    rec = load("v1_gratings:1")
    assert spike_time_grid(rec) == pytest.approx((0.01, 0.005))
    spec = load_model_spec(GLM, [f'data.bin_size="{bin_ms} ms"'])
    binned = bin_trials(rec, spec.data.bin_size, conditions=["direction"], test_fraction=0.2,
                        seed=0)
    measured = int((binned.counts.sum(axis=(0, 2)) == 0).sum())
    empty, n = empty_bins(spec.data.bin_size, 0.9, 0.01, 0.005)
    assert (empty, n) == (measured, binned.counts.shape[1])
    lines = recording_warnings(spec, rec)
    if bin_ms % 10:
        assert lines == [f"v1_gratings:1: warning: data.bin_size: {bin_ms:g} ms is not a "
                         f"multiple of the 10 ms grid the spike times lie on: {measured} of {n} "
                         "bins can never hold a spike (choose a multiple of 10 ms)"]
    else:
        assert lines == [] and measured == 0


def test_fit_warns_about_empty_bins(capsys, tmp_path, no_fit):
    with pytest.raises(Reached):
        main(["fit", str(REPO / "models" / "glm_v1.yaml"), "--data", "v1_gratings:1",
              "--out", str(tmp_path / "o"), "--set", 'data.bin_size="7 ms"'])
    err = capsys.readouterr().err.splitlines()
    assert err == ["v1_gratings:1: warning: data.bin_size: 7 ms is not a multiple of the 10 ms "
                   "grid the spike times lie on: 38 of 128 bins can never hold a spike (choose "
                   "a multiple of 10 ms)"]


def test_unequal_trials_are_cropped_with_one_warning_line(tmp_path, capsys):
    rec = load("v1_gratings:23")
    trials = rec.trials.copy()
    trials.loc[trials.index[:3], "stop_time"] -= 0.3  # three trials end 0.3 s early
    path = write_nwb(replace(rec, trials=trials), tmp_path / "short.nwb")
    out = tmp_path / "o"
    code, _, err = run(capsys, "fit", GLM, "--data", path, "--out", out,
                       "--set", "fit.max_iter=1", *TINY)
    assert code == 0
    crop = [e for e in err if "cropped to the shortest" in e]
    assert len(crop) == 1 and crop[0].startswith("warning: ")
    assert "dropping up to 30 bins" in crop[0]
    # and that is what was fitted: every trial has the shortest trial's 60 bins
    with np.load(out / "predictions.npz") as p:
        assert p["counts"].shape[1] == 60


def test_overlapping_trials_are_refused(tmp_path, capsys):
    rec = load("v1_gratings:23")
    trials = rec.trials.copy()
    trials.loc[trials.index[4], "stop_time"] = trials["start_time"].iloc[5] + 0.2
    path = write_nwb(replace(rec, trials=trials), tmp_path / "overlap.nwb")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run(capsys, "fit", GLM, "--data", path, "--out", tmp_path / "o")
    assert (code, out) == (2, "")
    assert len(err) == 1 and "trials: trial 5 (start " in err[0]
    assert "begins before trial 4 ends" in err[0] and "count the same spikes twice" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize(("value", "how"), [("1", "the unit at position 1 (id tt3_u1)"),
                                            ("14", "the unit at position 14 (id tt7_u15)")])
def test_bare_integer_heldout_neurons_says_how_it_was_read(capsys, tmp_path, no_fit, value,
                                                           how):
    ids = [str(u) for u in load("v1_gratings:23").unit_ids]
    assert how.endswith(f"(id {ids[int(value)]})")
    with pytest.raises(Reached):
        main(["fit", str(GLM), "--data", "v1_gratings:23", "--out", str(tmp_path / "o"),
              "--heldout-neurons", value])
    err = capsys.readouterr().err.splitlines()
    assert err == [f"--heldout-neurons {value}: warning: read as {how}, not a fraction (a "
                   "fraction is written 0.x)"]


def test_newton_fit_names_its_solver_and_warns_when_not_converged(tmp_path, capsys):
    out = tmp_path / "o"
    code, _, err = run(capsys, "fit", GLM, "--data", "v1_gratings:23", "--out", out,
                       "--set", "fit.max_iter=1", *TINY)
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    conv = m["convergence"]
    assert conv["optimizer"] == "Newton" and conv["n_iter"] == 1 and not conv["converged"]
    assert err == [f"glm_stimulus_only: warning: the Newton fit did not converge "
                   f"({conv['reason']}, 1 iterations); see convergence.png, raise fit.max_iter "
                   "or the penalty"]
    assert "during Newton" in (out / "report.html").read_text()
    code, _, err = run(capsys, "fit", GLM, "--data", "v1_gratings:23", "--out",
                       tmp_path / "b", *TINY)
    assert code == 0 and err == []  # converged: nothing on stderr


@pytest.mark.parametrize("max_iter", [1, 2, 3, 13])
def test_lbfgs_max_iter_is_the_budget_in_iterations(max_iter):
    """An ill-conditioned quadratic that needs many iterations: L-BFGS stops at max_iter even
    when that is not a multiple of check_every (10), and its objective is the one reached
    after that many iterations (it keeps decreasing with the budget)."""
    scales = torch.logspace(0, 6, 50, dtype=torch.float64)
    target = torch.linspace(-1, 1, 50, dtype=torch.float64)

    def fit(n: int) -> tuple[int, float]:
        w = torch.zeros(50, dtype=torch.float64, requires_grad=True)
        spec = FitSpec(max_iter=n, early_stopping=False, newton_polish=False, tol=1e-14)
        report = fit_lbfgs({"w": w}, lambda: (scales * (w - target) ** 2).sum(), spec,
                           progress=False)
        return report.n_iter, report.final_objective

    n_iter, objective = fit(max_iter)
    assert n_iter == max_iter
    assert objective > fit(max_iter + 10)[1]
    assert np.isfinite(objective)
