"""Batched Newton (neurorec.fit.newton) against statsmodels, scipy and closed forms, on real V1
data (session 14: 128 training trials × 90 bins of 10 ms, 16 directions)."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import statsmodels.api as sm
import torch
from scipy.optimize import minimize
from scipy.special import expit, gammaln

from neurorec.core.bases import raised_cosine_linear
from neurorec.data.binning import bin_trials
from neurorec.datasets import load
from neurorec.fit.newton import StimulusBlock, _gram, fit_batched_glm

N_BASIS = 4  # 16 directions × 4 raised cosines = 64 stimulus columns
MIN_SUPPORT = 5  # basis-weighted spikes per column for a finite MLE


def rel(a, b) -> float:
    """Norm-wise relative difference."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def v1():
    data = bin_trials(load("v1_gratings:14"), 0.01, test_fraction=0.2, seed=0)
    train = data.subset(~data.is_test)
    n_trials, n_bins, n_units = train.counts.shape
    basis = raised_cosine_linear(n_bins, N_BASIS)
    block = StimulusBlock(train.condition, basis, train.n_conditions)
    X = block.design()  # rows trial-major: trial * n_bins + bin
    counts = torch.as_tensor(train.counts.reshape(-1, n_units), dtype=torch.float64)
    keep = ((X.T @ counts) > MIN_SUPPORT).all(0)
    binary = counts.clamp(max=1.0)
    keep_b = keep & ((X.T @ binary) > MIN_SUPPORT).all(0) & ((X.T @ (1 - binary)) > 5).all(0)
    assert int(keep.sum()) >= 3 and int(keep_b.sum()) >= 3
    return SimpleNamespace(X=X, block=block, Y=counts[:, keep], B=binary[:, keep_b],
                           others=counts[:, ~keep], condition=torch.as_tensor(train.condition),
                           n_trials=n_trials, n_bins=n_bins, n_cond=train.n_conditions)


def poisson_refs(X: torch.Tensor, Y: torch.Tensor, **kw) -> list:
    return [sm.GLM(Y[:, i].numpy(), X.numpy(), family=sm.families.Poisson(), **kw)
            .fit(tol=1e-12, maxiter=200) for i in range(Y.shape[1])]


def check_against(res, refs, coef_tol: float = 1e-6, ll_tol: float = 1e-8) -> None:
    assert bool(res.converged.all()), res.converged
    for i, ref in enumerate(refs):
        assert ref.converged
        assert rel(res.coef[i], ref.params) < coef_tol
        # with l2 = 0 our objective is the exact NLL (log y! included) = -llf
        assert -float(res.objective[i]) == pytest.approx(ref.llf, rel=ll_tol)


@pytest.fixture(scope="module")
def poisson_fit(v1):
    res = fit_batched_glm(v1.X, v1.Y, blocks=v1.block)
    return res, poisson_refs(v1.X, v1.Y)


def test_poisson_matches_statsmodels(poisson_fit):
    res, refs = poisson_fit
    check_against(res, refs)
    assert res.history[-1] <= res.history[0]
    assert np.all(np.diff(res.history) <= 1e-9 * abs(res.history[0]))  # monotone
    assert res.n_iter < 20


def test_dense_path_matches_block_path(v1, poisson_fit):
    dense = fit_batched_glm(v1.X, v1.Y)
    res, _ = poisson_fit
    assert rel(dense.coef, res.coef) < 1e-9
    torch.testing.assert_close(dense.objective, res.objective, rtol=1e-13, atol=0)


def lagged(counts: torch.Tensor, n_trials: int, n_bins: int, lags: int) -> torch.Tensor:
    """(rows, units, lags) counts ``1..lags`` bins earlier in the same trial (0 before it)."""
    c = counts.reshape(n_trials, n_bins, -1)
    out = torch.zeros(n_trials, n_bins, c.shape[2], lags, dtype=c.dtype)
    for k in range(1, lags + 1):
        out[:, k:, :, k - 1] = c[:, :-k]
    return out.reshape(n_trials * n_bins, c.shape[2], lags)


@pytest.fixture(scope="module")
def mixed(v1):
    """Stimulus block after 3 shared dense columns, plus 2 per-unit history columns."""
    hist = lagged(v1.Y, v1.n_trials, v1.n_bins, 2)  # (rows, units, 2)
    # 3 units not fitted here (so no column repeats a unit's own history), lag 1
    others = lagged(v1.others[:, :3], v1.n_trials, v1.n_bins, 1)[:, :, 0]
    X = torch.cat([others, v1.X], 1)
    block = StimulusBlock(v1.block.condition, v1.block.basis, v1.n_cond, start=3)
    return SimpleNamespace(X=X, block=block, UX=hist)


def test_block_gram_equals_dense_gram(mixed):
    gen = torch.Generator().manual_seed(0)
    n, p = mixed.X.shape
    units = mixed.UX.shape[1]
    c = torch.rand(units, n, generator=gen, dtype=torch.float64)
    q = p + mixed.UX.shape[2]
    dense = _gram(c, mixed.X, mixed.UX, None, torch.arange(q))
    # the block path's column order: [block, rest, extra]
    b = StimulusBlock(mixed.block.condition, mixed.block.basis.double(),
                      mixed.block.n_conditions, mixed.block.start)
    rest = torch.tensor([0, 1, 2])
    order = torch.cat([torch.arange(3, p), rest, torch.arange(p, q)])
    fast = _gram(c, mixed.X[:, rest], mixed.UX, b, torch.argsort(order))
    assert float((fast - dense).abs().max() / dense.abs().max()) < 1e-12
    # and by hand for one unit
    Z = torch.cat([mixed.X, mixed.UX[:, 1]], 1)
    by_hand = Z.T @ (c[1, :, None] * Z)
    assert float((fast[1] - by_hand).abs().max() / by_hand.abs().max()) < 1e-12


def test_mixed_design_block_equals_dense_and_statsmodels(v1, mixed):
    fast = fit_batched_glm(mixed.X, v1.Y, unit_X=mixed.UX, blocks=mixed.block)
    dense = fit_batched_glm(mixed.X, v1.Y, unit_X=mixed.UX)
    assert bool(fast.converged.all()) and bool(dense.converged.all())
    assert rel(fast.coef, dense.coef) < 1e-9
    torch.testing.assert_close(fast.objective, dense.objective, rtol=1e-13, atol=0)
    for u in (0, 1):  # unit_X: the unit's own columns appended after X's
        Z = torch.cat([mixed.X, mixed.UX[:, u]], 1)
        ref = poisson_refs(Z, v1.Y[:, u:u + 1])[0]
        assert rel(fast.coef[u], ref.params) < 1e-6
        assert -float(fast.objective[u]) == pytest.approx(ref.llf, rel=1e-8)


def test_block_must_match_design(v1):
    wrong = StimulusBlock(v1.block.condition.roll(1), v1.block.basis, v1.n_cond)
    with pytest.raises(ValueError, match="one-hot"):
        fit_batched_glm(v1.X, v1.Y, blocks=wrong)
    with pytest.raises(ValueError, match="observation/link"):
        fit_batched_glm(v1.X, v1.Y, link="identity")


def test_bernoulli_matches_statsmodels(v1):
    res = fit_batched_glm(v1.X, v1.B, observation="bernoulli", link="logistic", blocks=v1.block)
    refs = [sm.GLM(v1.B[:, i].numpy(), v1.X.numpy(), family=sm.families.Binomial())
            .fit(tol=1e-12, maxiter=200) for i in range(v1.B.shape[1])]
    check_against(res, refs)


def test_offset_matches_statsmodels(v1):
    t = torch.arange(v1.X.shape[0], dtype=torch.float64)
    off = 0.3 * torch.sin(t / 7.0)[:, None].expand(-1, 2).clone()
    res = fit_batched_glm(v1.X, v1.Y[:, :2], offset=off, blocks=v1.block)
    refs = [sm.GLM(v1.Y[:, i].numpy(), v1.X.numpy(), family=sm.families.Poisson(),
                   offset=off[:, i].numpy()).fit(tol=1e-12, maxiter=200) for i in range(2)]
    check_against(res, refs)


def test_mask_fixes_columns_and_matches_reduced_fit(v1):
    p = v1.X.shape[1]
    mask = torch.ones(2, p, dtype=torch.bool)
    mask[0, ::3] = False  # every third column off for unit 0
    mask[1, 5:20] = False  # a contiguous run for unit 1
    res = fit_batched_glm(v1.X, v1.Y[:, :2], mask=mask, blocks=v1.block)
    assert bool(res.converged.all())
    assert bool((res.coef[~mask] == 0).all())
    for u in range(2):
        ref = poisson_refs(v1.X[:, mask[u]], v1.Y[:, u:u + 1])[0]
        assert rel(res.coef[u, mask[u]], ref.params) < 1e-6
        assert -float(res.objective[u]) == pytest.approx(ref.llf, rel=1e-8)


def penalised_poisson(X: np.ndarray, y: np.ndarray, lam: np.ndarray, link: str = "exp"):
    """Objective (sum NLL incl. log y! + sum lam w^2) and gradient, for scipy."""
    const = gammaln(y + 1).sum()

    def fun(w):
        eta = X @ w
        if link == "exp":
            mu = np.exp(eta)
            r = mu - y
        else:
            mu = np.logaddexp(0.0, eta)
            r = expit(eta) * (1 - y / mu)
        nll = mu.sum() - y @ np.log(mu) + const
        return nll + lam @ (w * w), X.T @ r + 2 * lam * w

    return fun


def test_separation_with_l2_is_finite_and_optimal(v1):
    K = N_BASIS
    y = v1.Y[:, 0].clone().reshape(v1.n_trials, v1.n_bins)
    y[v1.condition == 3] = 0  # the unit never fires in direction 3
    y = y.reshape(-1, 1)
    cols = slice(3 * K, 4 * K)
    lam = 1.0
    res = fit_batched_glm(v1.X, y, l2=lam, blocks=v1.block)
    assert bool(res.converged.all())
    assert bool(torch.isfinite(res.coef).all())
    assert float(res.coef[0, cols].abs().max()) < 10
    fun = penalised_poisson(v1.X.numpy(), y[:, 0].numpy(), np.full(v1.X.shape[1], lam))
    assert np.abs(fun(res.coef[0].numpy())[1]).max() < 1e-7
    ref = minimize(fun, np.zeros(v1.X.shape[1]), jac=True, method="L-BFGS-B",
                   options={"maxiter": 20000, "gtol": 1e-11, "ftol": 1e-16, "maxcor": 50})
    assert rel(res.coef[0], ref.x) < 1e-6
    assert float(res.objective[0]) <= ref.fun + 1e-9 * abs(ref.fun)
    # statsmodels on the same data (no penalty): fails or runs off to huge coefficients
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sm_res = sm.GLM(y[:, 0].numpy(), v1.X.numpy(), family=sm.families.Poisson()).fit(
                tol=1e-12, maxiter=200)
            extreme = (not sm_res.converged) or np.abs(sm_res.params[cols]).max() > 10
        except Exception:  # PerfectSeparationError, LinAlgError, ...
            extreme = True
    assert extreme


def test_separation_without_l2_does_not_crash(v1):
    K = N_BASIS
    y = v1.Y[:, :2].clone().reshape(v1.n_trials, v1.n_bins, 2)
    y[v1.condition == 3, :, 0] = 0
    y = y.reshape(-1, 2)
    res = fit_batched_glm(v1.X, y, blocks=v1.block, max_iter=40)
    assert res.n_iter <= 40
    assert bool(torch.isfinite(res.coef).all()) and bool(torch.isfinite(res.objective).all())
    assert float(res.coef[0, 3 * K:4 * K].max()) < -5  # drifting towards -inf
    ref = poisson_refs(v1.X, y[:, 1:2])[0]  # the other unit is unaffected
    assert rel(res.coef[1], ref.params) < 1e-6 and bool(res.converged[1])


def test_softplus_matches_scipy(v1):
    y = v1.Y[:, :1]
    res = fit_batched_glm(v1.X, y, link="softplus", blocks=v1.block)
    assert bool(res.converged.all())
    fun = penalised_poisson(v1.X.numpy(), y[:, 0].numpy(), np.zeros(v1.X.shape[1]), "softplus")
    ref = minimize(fun, np.full(v1.X.shape[1], -3.0), jac=True, method="L-BFGS-B",
                   options={"maxiter": 50000, "gtol": 1e-11, "ftol": 1e-16, "maxcor": 50})
    assert rel(res.coef[0], ref.x) < 1e-6
    assert float(res.objective[0]) == pytest.approx(ref.fun, rel=1e-10)
    assert np.abs(fun(res.coef[0].numpy())[1]).max() < 1e-7


def test_l2_stationarity(v1):
    units, p = v1.Y.shape[1], v1.X.shape[1]
    gen = torch.Generator().manual_seed(1)
    lam = 5.0 * torch.rand(units, p, generator=gen, dtype=torch.float64)
    lam[:, ::N_BASIS] = 0.0  # some columns unpenalised
    res = fit_batched_glm(v1.X, v1.Y, l2=lam, blocks=v1.block)
    assert bool(res.converged.all())
    X, Y, W = v1.X.numpy(), v1.Y.numpy(), res.coef.numpy()
    mu = np.exp(X @ W.T)
    lhs = X.T @ (Y - mu)  # (p, units)
    scale = np.abs(X.T @ Y).max()
    assert np.abs(lhs - 2 * lam.numpy().T * W.T).max() / scale < 1e-8
    # a shared (n_cols,) l2 vector broadcasts to every unit
    shared = fit_batched_glm(v1.X, v1.Y, l2=lam[0], blocks=v1.block)
    per_unit = fit_batched_glm(v1.X, v1.Y, l2=lam[0].expand(units, p), blocks=v1.block)
    torch.testing.assert_close(shared.coef, per_unit.coef, rtol=0, atol=0)


def test_coef0_start_reaches_same_optimum(v1, poisson_fit):
    res, _ = poisson_fit
    warm = fit_batched_glm(v1.X, v1.Y, coef0=res.coef, blocks=v1.block)
    assert warm.n_iter <= 2 and bool(warm.converged.all())
    assert rel(warm.coef, res.coef) < 1e-9
    cold = fit_batched_glm(v1.X, v1.Y, coef0=torch.zeros_like(res.coef), blocks=v1.block)
    assert rel(cold.coef, res.coef) < 1e-9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(v1, mixed, poisson_fit):
    res, _ = poisson_fit
    gpu = fit_batched_glm(v1.X.cuda(), v1.Y.cuda(), blocks=v1.block)
    assert gpu.coef.device.type == "cuda"
    assert rel(gpu.coef.cpu(), res.coef) < 1e-9
    cpu_mixed = fit_batched_glm(mixed.X, v1.Y, unit_X=mixed.UX, blocks=mixed.block)
    gpu_mixed = fit_batched_glm(mixed.X.cuda(), v1.Y.cuda(), unit_X=mixed.UX.cuda(),
                                blocks=mixed.block, mask=torch.ones(v1.Y.shape[1],
                                mixed.X.shape[1] + 2, dtype=torch.bool, device="cuda"))
    assert rel(gpu_mixed.coef.cpu(), cpu_mixed.coef) < 1e-9
