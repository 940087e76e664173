"""The ladder's headroom features (``analyses/rglm_ladder/headroom.py``, issue 20) against numpy
loops written out here, and the Newton fit that crashed on them (v1_gratings:13: a step where no
unit's line search was accepted)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "analyses" / "rglm_ladder"))
from headroom import (  # noqa: E402
    RATE_SCALE_HZ,
    TAUS_S,
    OracleTrialGain,
    PopulationTrace,
    run_headroom,
    with_previous_trials,
)

BIN = 0.01


def _counts(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).poisson(0.2, size=(3, 40, 4)).astype(float)


def test_population_trace_is_a_causal_exponential_filter():
    y = _counts()
    got = PopulationTrace().features(torch.as_tensor(y), BIN).numpy()
    pop = y.sum(axis=2) / BIN
    for k, tau in enumerate(TAUS_S):
        a = np.exp(-BIN / tau)
        for b in range(y.shape[0]):
            trace = 0.0
            for t in range(y.shape[1]):
                # Σ_{l≥1} (1 - a) a^l rate(t - l): a times the unit-area recursion below
                want = np.log1p(a * trace / RATE_SCALE_HZ)
                np.testing.assert_allclose(got[b, t, k], want, rtol=1e-12, atol=1e-12)
                trace = a * trace + (1 - a) * pop[b, t]


def test_oracle_gain_is_the_trial_rate_in_every_bin():
    y = _counts(1)
    got = OracleTrialGain().features(torch.as_tensor(y), BIN).numpy()
    rate = y.sum(axis=(1, 2)) / (y.shape[1] * BIN)
    np.testing.assert_allclose(got[..., 0], np.log1p(rate / RATE_SCALE_HZ)[:, None]
                               * np.ones(y.shape[1]), rtol=1e-12)


def test_previous_trials_feature_reads_only_earlier_trials():
    from neurorec.families.glm.conformance import v1_small

    train, _ = v1_small()
    out = with_previous_trials(train, n_back=2)
    rate = train.counts.sum(axis=(1, 2)) / (train.counts.shape[1] * train.bin_size)
    for k in range(len(rate)):
        prev = rate.mean() if k == 0 else rate[k - 1]
        back = [rate.mean() if j < 0 else rate[j] for j in (k - 2, k - 1)]
        want = np.log1p(np.array([prev, np.mean(back)]) / RATE_SCALE_HZ)
        np.testing.assert_allclose(out.stimulus[k, 0], want, rtol=1e-12)
        np.testing.assert_array_equal(out.stimulus[k], out.stimulus[k, :1].repeat(
            train.counts.shape[1], axis=0))


def test_headroom_fits_the_session_whose_newton_step_crashed():
    """v1_gratings:13 with the previous-trial feature stalled every unit's line search in one
    Newton step, which crashed the blocked-design gradient; now the fit finishes and the
    feature-augmented models score within a few hundredths of GLM + corr."""
    row = run_headroom("v1_gratings:13", str(REPO / "models" / "ladder" / "4_glm_corr.yaml"), 0)
    values = np.array([row[k] for k in ("glm_corr", "pop_trace", "prev_trial", "oracle_gain")])
    assert np.all(np.isfinite(values))
    assert np.all(np.abs(values[1:] - values[0]) < 0.05)
