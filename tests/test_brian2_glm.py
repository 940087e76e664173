"""The Brian 2 network of a GLM / R-GLM against the model's own definition and torch sampler.

Exact checks: fed given counts, or on its own closed-loop sample, the network's drive equals
``model._drive`` on those counts to 1e-10. Statistical checks: Brian 2 and the torch ancestral
sampler draw many trials (different seeds); PSTHs over time windows agree within 5 standard
errors and trial-count correlations within 4 Fisher-z standard errors, and the same statistics
tell a model with a different recurrence apart.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_models import make_data, set_fitted

from neurorec.backends import simulate_brian2
from neurorec.core.errors import DataError, DivergenceError
from neurorec.data.recording import TrialLayout
from neurorec.families import GLM, RGLM
from neurorec.families.glm.brian2 import _brian2_settings, _run, drive_brian2
from neurorec.families.glm.spec import GLMSpec, RGLMSpec

pytest.importorskip("brian2")

N_UNITS, N_COND, N_BINS, DIM = 5, 2, 40, 2
N_PER_COND = 2000  # trials per condition and backend
WINDOW = 10  # bins per PSTH window


def _softplus_inv(rate: float) -> float:
    return float(np.log(np.expm1(rate)))


def make_rglm(link: str = "softplus", kind: str = "rglm", seed: int = 0,
              correlated: bool = False) -> GLM:
    """Stimulus drive (rates ~0.15-0.25 spikes/bin), refractory self-history, coupling and a
    2-D rotating latent shared by all units (``correlated``: with the in-bin term, whose
    ``A`` the caller sets)."""
    rng = np.random.default_rng(seed)
    common = {"link": link, "stimulus": {"n_basis": 4},
              "history": {"n_basis": 3, "duration": 0.05},
              "coupling": {"enabled": True, "n_basis": 2, "duration": 0.03},
              "correlated": {"enabled": correlated}}
    base = _softplus_inv(0.35) if link == "softplus" else np.log(0.35)
    params = {"beta": base + 0.4 * rng.standard_normal((N_UNITS, N_COND, 4)),
              "h": np.array([-1.0, -0.4, -0.1]) + 0.1 * rng.standard_normal((N_UNITS, 3)),
              "J": 0.4 * rng.standard_normal((N_UNITS, N_UNITS, 2))}
    if kind == "glm":
        return set_fitted(GLM(GLMSpec(**common)), params, N_BINS, N_UNITS, N_COND)
    angle = 0.4
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    params.update(W0=0.3 * np.abs(rng.standard_normal((DIM, N_UNITS))), R=0.8 * rot,
                  B=0.6 * np.abs(rng.standard_normal((N_UNITS, DIM))))
    model = RGLM(RGLMSpec(**common, recurrent={"dim": DIM}))
    return set_fitted(model, params, N_BINS, N_UNITS, N_COND)


def model_drive(model: GLM, counts: np.ndarray, condition: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        design = model._design(make_data(counts, condition, N_COND))
        return model._drive(model._fitted_tensors(), design).numpy()


@pytest.fixture(scope="module")
def samples():
    """The R-GLM, its condition labels, torch samples, Brian 2 samples and Brian's drive."""
    model = make_rglm()
    condition = np.repeat(np.arange(N_COND), N_PER_COND)
    torch_counts = model.sample(len(condition), seed=1, like=TrialLayout(condition, model.n_bins_))
    with _brian2_settings():
        brian_counts, brian_drive = _run(model, condition, seed=2, record_drive=True)
    return model, condition, torch_counts, brian_counts, brian_drive


# ---------------------------------------------------------------------- exact
@pytest.mark.parametrize(("kind", "link"), [("rglm", "softplus"), ("glm", "exp")])
def test_drive_on_given_counts_equals_model_drive(kind, link):
    model = make_rglm(link, kind)
    rng = np.random.default_rng(7)
    condition = np.array([0, 1, 1, 0, 1, 0, 0])
    counts = rng.poisson(0.4, size=(len(condition), N_BINS, N_UNITS)).astype(float)
    counts[0, 5, 2] = 4.0  # several spikes in one bin count as several
    got = drive_brian2(model, counts, condition)
    expected = model_drive(model, counts, condition)
    assert got.shape == expected.shape == counts.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)
    # the history, coupling and latent terms are really there
    stimulus_only = np.einsum("ibk,tk->bti", model.params_["beta"][:, condition],
                              model.stimulus_basis(N_BINS))
    assert np.abs(expected - stimulus_only).max() > 0.5


def test_closed_loop_drive_uses_only_the_past(samples):
    """The drive Brian used in its own sample equals the model's one-step-ahead drive on the
    finished sample: no bin saw its own or a future count, the trials stay separate."""
    model, condition, _, brian_counts, brian_drive = samples
    np.testing.assert_allclose(brian_drive, model_drive(model, brian_counts, condition),
                               rtol=0, atol=1e-10)


# ---------------------------------------------------------------------- statistics
def window_counts(counts: np.ndarray) -> np.ndarray:
    """(n_trials, n_windows, n_units) counts summed over windows of WINDOW bins."""
    n_trials, n_bins, n_units = counts.shape
    return counts.reshape(n_trials, n_bins // WINDOW, WINDOW, n_units).sum(axis=2)


def psth_z(a: np.ndarray, b: np.ndarray, condition: np.ndarray) -> np.ndarray:
    """(n_conditions, n_windows, n_units) difference of mean window counts in standard errors."""
    out = []
    for c in range(N_COND):
        wa, wb = window_counts(a[condition == c]), window_counts(b[condition == c])
        se = np.sqrt(wa.var(axis=0, ddof=1) / len(wa) + wb.var(axis=0, ddof=1) / len(wb))
        out.append((wa.mean(axis=0) - wb.mean(axis=0)) / se)
    return np.array(out)


def correlations(counts: np.ndarray) -> np.ndarray:
    """Pairwise correlations (upper triangle) of the trials' total counts."""
    r = np.corrcoef(counts.sum(axis=1), rowvar=False)
    return r[np.triu_indices(counts.shape[2], k=1)]


def correlation_z(a: np.ndarray, b: np.ndarray, condition: np.ndarray) -> np.ndarray:
    """(n_conditions, n_pairs) Fisher-z difference of count correlations in standard errors."""
    out = []
    for c in range(N_COND):
        n = (condition == c).sum()  # trials of the condition in each sample
        se = np.sqrt(2 / (n - 3))
        out.append((np.arctanh(correlations(a[condition == c]))
                    - np.arctanh(correlations(b[condition == c]))) / se)
    return np.array(out)


def test_rates_match_torch_sampler(samples):
    """40 window means (2 conditions × 4 windows × 5 units): within 5 standard errors."""
    _, condition, torch_counts, brian_counts, _ = samples
    assert brian_counts.shape == torch_counts.shape == (len(condition), N_BINS, N_UNITS)
    assert (brian_counts == np.round(brian_counts)).all() and brian_counts.min() >= 0
    assert brian_counts.max() >= 2  # counts above 1 per bin are drawn
    rate = brian_counts.mean(axis=(0, 1))
    assert ((rate > 0.05) & (rate < 0.5)).all(), rate
    assert np.abs(psth_z(brian_counts, torch_counts, condition)).max() < 5.0


def test_count_correlations_match_torch_sampler(samples):
    _, condition, torch_counts, brian_counts, _ = samples
    r = correlations(torch_counts[condition == 0])
    assert np.abs(r).max() > 0.1  # coupling and the shared latent do correlate the units
    assert np.abs(correlation_z(brian_counts, torch_counts, condition)).max() < 4.0


def test_statistics_tell_a_different_recurrence_apart(samples):
    """The checks above have power: against a model whose latent feeds back half as strongly
    the same statistics leave their tolerance."""
    _, condition, _, brian_counts, _ = samples
    weaker = make_rglm()
    weaker.params_["B"] = 0.5 * weaker.params_["B"]
    other = weaker.sample(len(condition), seed=3, like=TrialLayout(condition, weaker.n_bins_))
    worst = max(np.abs(psth_z(brian_counts, other, condition)).max(),
                np.abs(correlation_z(brian_counts, other, condition)).max())
    assert worst > 8.0


def test_substeps_give_the_same_counts_in_distribution(samples):
    """Three clock steps per bin, Poisson(λ/3) each: the bin counts keep their distribution."""
    model, _, torch_counts, _, _ = samples
    few = np.repeat(np.arange(N_COND), 600)
    counts = simulate_brian2(model, few, seed=4, dt_substeps=3)
    assert np.abs(psth_z(counts, torch_counts[np.r_[:600, N_PER_COND:N_PER_COND + 600]],
                         few)).max() < 5.0


# ---------------------------------------------------------------------- seeds and errors
def test_seeds_and_global_state():
    model = make_rglm()
    condition = np.array([0, 1, 0])
    np.random.seed(123)  # noqa: NPY002 (Brian draws from numpy's global generator)
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    a = simulate_brian2(model, condition, seed=5)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    np.testing.assert_array_equal(a, simulate_brian2(model, condition, seed=5))
    assert not np.array_equal(a, simulate_brian2(model, condition, seed=6))
    assert simulate_brian2(model, np.array([], dtype=int), seed=0).shape == (0, N_BINS, N_UNITS)


def test_runaway_is_a_divergence_error():
    model = make_rglm("exp", "glm")
    model.params_["h"] = np.full_like(model.params_["h"], 3.0)  # self-excitation, exp link
    with pytest.raises(DivergenceError, match=r"simulation diverged: unit \d+ expected more "
                                              r"than 100 spikes in one 10 ms bin \(trial \d+"):
        simulate_brian2(model, np.array([0, 1]), seed=0)


def in_bin_correlations(counts: np.ndarray) -> np.ndarray:
    """Pairwise correlations (upper triangle) of same-bin counts over all trials and bins."""
    r = np.corrcoef(counts.reshape(-1, counts.shape[2]), rowvar=False)
    return r[np.triu_indices(counts.shape[2], k=1)]


def test_in_bin_correlations_match_torch_sampler():
    """Units drawn in sequence inside each bin (strictly lower-triangular A in a shuffled
    order): same-bin correlations and PSTHs of Brian 2 and torch agree, and differ from the
    same model without A."""
    model = make_rglm("softplus", "glm", correlated=True)
    rng = np.random.default_rng(7)
    model.unit_order_ = rng.permutation(N_UNITS)
    mask = model._order_mask().numpy()
    model.params_["A"] = mask * rng.choice([-0.8, 0.8], size=(N_UNITS, N_UNITS))
    condition = np.repeat(np.arange(N_COND), 1000)
    torch_counts = model.sample(len(condition), seed=1, like=TrialLayout(condition, model.n_bins_))
    brian_counts = simulate_brian2(model, condition, seed=2)
    n = torch_counts.shape[0] * torch_counts.shape[1]
    z = (np.arctanh(in_bin_correlations(brian_counts))
         - np.arctanh(in_bin_correlations(torch_counts))) / np.sqrt(2 / (n - 3))
    assert np.abs(in_bin_correlations(torch_counts)).max() > 0.05  # A does correlate
    assert np.abs(z).max() < 5.0
    assert np.abs(psth_z(brian_counts, torch_counts, condition)).max() < 5.0
    model.params_["A"] = np.zeros_like(model.params_["A"])
    without = model.sample(len(condition), seed=3, like=TrialLayout(condition, model.n_bins_))
    z_without = (np.arctanh(in_bin_correlations(brian_counts))
                 - np.arctanh(in_bin_correlations(without))) / np.sqrt(2 / (n - 3))
    assert np.abs(z_without).max() > 8.0
    with pytest.raises(DataError, match="dt_substeps"):
        model.params_["A"] = mask * 0.5
        simulate_brian2(model, condition[:2], seed=0, dt_substeps=2)


def test_bad_arguments_are_data_errors():
    model = make_rglm()
    with pytest.raises(DataError, match=r"condition: expected values in 0\.\.1, got 0\.\.2$"):
        simulate_brian2(model, np.array([0, 2]), seed=0)
    with pytest.raises(DataError, match=r"dt_substeps: expected an integer ≥ 1, got 0$"):
        simulate_brian2(model, np.array([0]), seed=0, dt_substeps=0)
