"""Brian 2 on a GLM with a stimulus filter (``models/glm_grasshopper.yaml``, ``grasshopper:1``).

The network once dropped the filter silently and sampled another model. Now it takes the
stimulus series as ``model.sample`` does: its filtered drive is a fixed input per bin, and the
network's drive equals ``model._drive`` to 1e-12, fed given counts or on its own sample.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from neurorec import backends
from neurorec.core.errors import DataError
from neurorec.data.recording import TrialLayout
from neurorec.datasets import load
from neurorec.families.glm.brian2 import _brian2_settings, _run, drive_brian2
from neurorec.spec import load_model_spec
from neurorec.workflows.pipeline import fit_and_evaluate

pytest.importorskip("brian2")

REPEATS = 60  # samples per held-out stimulus and backend
WINDOW = 100  # bins per PSTH window


@pytest.fixture(scope="module")
def fitted():
    # the earlier-fitted, closed-loop-stable model: 30 L-BFGS steps, no stimulus ridge
    spec = load_model_spec("models/glm_grasshopper.yaml", ["fit.max_iter=30", "fit.solver=lbfgs",
                                                          "penalty.stimulus_l2=0"])
    return fit_and_evaluate(spec, load("grasshopper:1"), seed=0, progress=False)


def model_drive(model, data) -> np.ndarray:
    with torch.no_grad():
        return model._drive(model._fitted_tensors(), model._design(data)).numpy()


def test_the_stimulus_filter_is_a_real_term(fitted):
    drive = model_drive(fitted.model, fitted.test)
    assert "k" in fitted.model.params_
    assert np.ptp(drive - fitted.model.params_["bias"]) > 1.0


def test_without_a_stimulus_brian2_refuses_like_torch(fitted):
    model, test = fitted.model, fitted.test
    with pytest.raises(DataError, match="stimulus"):
        model.sample(len(test.condition), seed=0, like=TrialLayout(test.condition, test.n_bins))
    with pytest.raises(DataError, match="stimulus: a model with a stimulus filter"):
        backends.simulate_brian2(model, test.condition, seed=0)
    with pytest.raises(DataError, match=r"stimulus: .*got \(2, 10, 1\)"):
        backends.simulate_brian2(model, test.condition, seed=0,
                                 stimulus=test.stimulus[:, :10])


def test_drive_on_given_counts_equals_model_drive(fitted):
    test = fitted.test
    got = drive_brian2(fitted.model, test.counts, test.condition, stimulus=test.stimulus)
    np.testing.assert_allclose(got, model_drive(fitted.model, test), rtol=0, atol=1e-12)


def test_closed_loop_drive_and_rates_match_torch(fitted):
    model, test = fitted.model, fitted.test
    condition = np.repeat(test.condition, REPEATS)
    stimulus = np.repeat(test.stimulus, REPEATS, axis=0)
    with _brian2_settings():
        counts, drive = _run(model, condition, seed=3, record_drive=True, stimulus=stimulus)
    repeated = test.subset(np.repeat(np.arange(len(test.condition)), REPEATS))
    on_sample = model_drive(model, dataclasses.replace(repeated, counts=counts))
    np.testing.assert_allclose(drive, on_sample, rtol=0, atol=1e-12)
    # the same distribution as the torch sampler given the same stimulus
    reference = model.sample(len(condition), seed=4,
                             like=TrialLayout(condition, model.n_bins_, stimulus))
    for s in range(len(test.condition)):
        rows = slice(s * REPEATS, (s + 1) * REPEATS)
        a = counts[rows, :, 0].reshape(REPEATS, -1, WINDOW).sum(axis=2)
        b = reference[rows, :, 0].reshape(REPEATS, -1, WINDOW).sum(axis=2)
        se = np.sqrt((a.var(axis=0, ddof=1) + b.var(axis=0, ddof=1)) / REPEATS) + 1e-9
        assert np.abs((a.mean(axis=0) - b.mean(axis=0)) / se).max() < 5
