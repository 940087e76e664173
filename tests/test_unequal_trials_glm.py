"""Trials of unequal length, masked (``data.unequal: mask``): the GLM's likelihood and scores
count only the bins inside each trial.

Hand-built example: 2 conditions, 16 trials of 0.4–1.0 s, 3 units. The masked GLM fit (no
penalty) equals statsmodels' Poisson GLM on the valid rows only (stimulus one-hot × raised
cosines and own-history features written out by hand, a trial's history never reaching
before its start); what sits in the masked bins does not matter; the pipeline's bits/spike
is the NLB score over the valid held-out bins.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neurorec.core.bases import raised_cosine_linear
from neurorec.core.errors import DataError
from neurorec.core.metrics import bits_per_spike
from neurorec.data.recording import BinnedTrials
from neurorec.families import GLM
from neurorec.families.glm.spec import GLMSpec

BIN, N_BINS, N_UNITS, K_S, K_H = 0.02, 50, 3, 3, 2


def masked_data(seed: int = 0) -> BinnedTrials:
    """(16, 50, 3) counts with lengths 20..50 bins; counts 0 past each trial's end."""
    rng = np.random.default_rng(seed)
    n_trials = 16
    condition = np.arange(n_trials) % 2
    lengths = rng.integers(20, N_BINS + 1, size=n_trials)
    lengths[0] = N_BINS
    mask = np.arange(N_BINS)[None, :] < lengths[:, None]
    t = (np.arange(N_BINS) + 0.5) * BIN
    rate = 0.3 + 0.2 * np.sin(2 * np.pi * t[None, :, None] / 0.8 + condition[:, None, None]
                              + np.arange(N_UNITS)[None, None, :])
    counts = rng.poisson(rate * np.ones((n_trials, 1, 1))) * mask[:, :, None]
    return BinnedTrials(
        counts=counts.astype(np.int64), bin_size=BIN, time=t, condition=condition,
        condition_table=pd.DataFrame({"direction": [0.0, 90.0]}),
        is_test=np.zeros(n_trials, dtype=bool),
        unit_ids=np.array([f"u{i}" for i in range(N_UNITS)]), source="hand", mask=mask)


def spec(**fit) -> GLMSpec:
    return GLMSpec(stimulus={"n_basis": K_S}, history={"n_basis": K_H, "duration": 0.06},
                   penalty={"l2": 0.0, "stimulus_l2": 0.0},
                   fit={"tol": 1e-12, **fit})


def statsmodels_on_valid_rows(data: BinnedTrials, history_basis: np.ndarray) -> np.ndarray:
    """(n_units, 2 * K_S + K_H) coefficients of statsmodels' Poisson GLM on the valid rows."""
    sm = pytest.importorskip("statsmodels.api")
    S = raised_cosine_linear(N_BINS, K_S)
    n_lags = history_basis.shape[0]
    out = []
    for u in range(N_UNITS):
        rows, ys = [], []
        for b in range(len(data.counts)):
            y = data.counts[b, :, u]
            for t in np.flatnonzero(data.mask[b]):
                stim = np.zeros(2 * K_S)
                stim[data.condition[b] * K_S:(data.condition[b] + 1) * K_S] = S[t]
                past = [y[t - lag] if t - lag >= 0 else 0.0 for lag in range(1, n_lags + 1)]
                rows.append(np.r_[stim, np.asarray(past) @ history_basis])
                ys.append(y[t])
        res = sm.GLM(np.array(ys), np.array(rows), family=sm.families.Poisson()).fit(
            tol=1e-13, maxiter=200)
        out.append(res.params)
    return np.array(out)


def test_masked_fit_equals_statsmodels_on_the_valid_rows():
    data = masked_data()
    assert (~data.mask).sum() > 200  # many bins past the shorter trials' ends
    model = GLM(spec()).fit(data, progress=False)
    assert model.solver() == "newton"
    ref = statsmodels_on_valid_rows(data, model.history_basis(BIN))
    got = np.concatenate([model.params_["beta"].reshape(N_UNITS, -1), model.params_["h"]],
                         axis=1)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    # the unmasked fit of the same zero-padded counts is a different model
    unmasked = GLM(spec()).fit(BinnedTrials(**{**data.__dict__, "mask": None}),
                               progress=False)
    assert np.abs(unmasked.params_["beta"] - model.params_["beta"]).max() > 0.1


def test_masked_bins_do_not_count():
    """Counts written into the masked bins change nothing (they are after each trial's end,
    so no valid bin's history reads them either)."""
    data = masked_data()
    junk = data.counts.copy()
    junk[~data.mask] = 7
    a = GLM(spec()).fit(data, progress=False)
    b = GLM(spec()).fit(BinnedTrials(**{**data.__dict__, "counts": junk}), progress=False)
    for k in ("beta", "h"):
        np.testing.assert_allclose(a.params_[k], b.params_[k], rtol=0, atol=1e-8)


@pytest.mark.slow
def test_masked_lbfgs_reaches_the_newton_optimum():
    """The L-BFGS objective is the masked mean too (its start, from mean counts, still
    reads every bin: only the path differs)."""
    data = masked_data()
    lbfgs = GLM(spec(solver="lbfgs", max_iter=2000, early_stopping=False)).fit(data, progress=False)
    newton = GLM(spec()).fit(data, progress=False)
    np.testing.assert_allclose(lbfgs.params_["beta"], newton.params_["beta"], atol=2e-3)
    np.testing.assert_allclose(lbfgs.params_["h"], newton.params_["h"], atol=2e-3)


def _recording(seed: int = 1):
    from neurorec.data import Recording

    rng = np.random.default_rng(seed)
    n_trials = 40
    start = np.arange(n_trials) * 2.0
    duration = np.round(rng.uniform(0.5, 1.0, n_trials), 2)
    direction = np.tile([0.0, 90.0], n_trials // 2)
    spikes = []
    for u in range(N_UNITS):
        times = []
        for s, d, c in zip(start, duration, direction, strict=True):
            n = rng.poisson((20 + 10 * u + (15 if c else 0)) * d)
            times.append(s + np.sort(rng.uniform(0.001, d - 0.001, n)))
        spikes.append(np.concatenate(times))
    trials = pd.DataFrame({"start_time": start, "stop_time": start + duration,
                           "direction": direction})
    return Recording(spike_times=spikes, unit_ids=np.array(["a", "b", "c"]), trials=trials,
                     stimulus_columns=("direction",), source="hand.nwb")


def test_pipeline_scores_the_valid_bins_and_refuses_other_kinds():
    from neurorec.spec import load_model_spec
    from neurorec.workflows.pipeline import fit_and_evaluate

    spec_ = load_model_spec("models/glm_v1.yaml", ["data.unequal=mask", "data.bin_size=0.02",
                                                    "coupling.enabled=false"])
    with pytest.warns(UserWarning, match=r"data\.unequal: mask: fp-bps"):
        result = fit_and_evaluate(spec_, _recording(), seed=0, progress=False,
                                  check_memory=False)
    test = result.test
    assert test.mask is not None and (~test.mask).any()
    want = bits_per_spike(test.counts[test.mask][None], result.test_rates[test.mask][None])
    assert result.metrics["bits_per_spike"] == want
    assert result.metrics["n_bins"] == int(test.mask.sum())
    everything = bits_per_spike(test.counts, result.test_rates)  # the padding would count
    assert abs(everything - want) > 0.01
    rglm = load_model_spec("models/rglm_v1.yaml", ["data.unequal=mask"])
    with pytest.raises(DataError, match=r"data\.unequal: mask is supported by kind glm"):
        fit_and_evaluate(rglm, _recording(), seed=0, progress=False, check_memory=False)
