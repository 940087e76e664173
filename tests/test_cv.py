"""``--cv``: stratified folds, the CV loop against a hand-written one, the CLI outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import select_units

from neurorec.data import bin_trials
from neurorec.datasets import load
from neurorec.families import GLM
from neurorec.families.glm.spec import GLMSpec
from neurorec.workflows.cv import cross_validate, cv_folds, penalty_grid, with_penalty


@pytest.fixture(scope="module")
def train():
    data = bin_trials(load("v1_gratings:14"), 0.01, test_fraction=0.2, seed=0)
    return select_units(data.subset(~data.is_test), np.arange(5))


def test_folds_are_stratified_and_seeded():
    condition = np.repeat(np.arange(4), [10, 7, 5, 3])
    fold = cv_folds(condition, 3, seed=1)
    assert np.array_equal(fold, cv_folds(condition, 3, seed=1))
    assert not np.array_equal(fold, cv_folds(condition, 3, seed=2))
    for c in range(4):
        counts = np.bincount(fold[condition == c], minlength=3)
        assert counts.max() - counts.min() <= 1  # every condition spread evenly
    sizes = np.bincount(fold, minlength=3)
    assert sizes.max() - sizes.min() <= 1


def test_cv_equals_a_hand_written_loop_over_folds(train):
    spec = GLMSpec(stimulus={"n_basis": 4}, history={"n_basis": 2, "duration": 0.03},
                   coupling={"enabled": True, "n_basis": 2, "duration": 0.03})
    grid = [{"l2": 1e-2, "l1": 0.0}, {"l2": 1e-4, "l1": 0.0}, {"l2": 0.0, "l1": 0.0}]
    got = cross_validate(spec, train, k=3, seed=0, grid=grid)
    fold = cv_folds(train.condition, 3, seed=0)
    expected = np.zeros((3, 3))
    for f in range(3):  # no warm starts: every fit from the default start
        for g, point in enumerate(grid):
            model = GLM(with_penalty(spec, point), seed=0).fit(train.subset(fold != f),
                                                               progress=False)
            expected[g, f] = model.log_likelihood(train.subset(fold == f))
    np.testing.assert_allclose(got.fold_heldout_ll, expected, rtol=1e-8)
    assert got.chosen == grid[int(np.argmax(expected.mean(axis=1)))]
    assert got.to_dict()["mean_heldout_ll"] == pytest.approx(list(expected.mean(axis=1)))


def test_grid_covers_l1_only_where_used():
    assert {p["l1"] for p in penalty_grid(GLMSpec())} == {0.0}
    assert len({p["l1"] for p in penalty_grid(GLMSpec(penalty={"l1": 1e-3}))}) > 1


def test_cli_fit_with_cv_writes_cv_and_figure(small_nwb, tmp_path):
    out = tmp_path / "fit"
    cmd = [sys.executable, "-m", "neurorec.cli", "fit", "models/glm_stimulus_only.yaml",
           "--data", str(small_nwb), "--out", str(out), "--cv", "3", "--quiet",
           "--set", "history.enabled=true"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    cv = metrics["cv"]
    assert cv["k"] == 3 and len(cv["mean_heldout_ll"]) == len(cv["grid"])
    assert cv["chosen"] == cv["grid"][int(np.argmax(cv["mean_heldout_ll"]))]
    assert "cv.png" in (out / "report.html").read_text()
    assert "cross-validation (3 folds): chose" in done.stdout
    bad = [*cmd[:cmd.index("--cv")], "--cv", "1", "--overwrite"]
    refused = subprocess.run(bad, capture_output=True, text=True)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "--cv" in refused.stderr
