"""Spike-and-slab RNN: the greedy-filtering step solves its slice, the learning rules are
autograd's gradients, training checkpoints resume bitwise; compact filters."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from neurorec.analysis.compact_filters import (
    fit_compact_filters,
    flops_per_frame,
    powers_times,
    prune_mask,
    relative_error,
    time_per_frame,
)
from neurorec.core.errors import DataError, NotFittedError
from neurorec.families.ssrnn.model import (
    SpikeSlabRNN,
    clip_log_likelihood,
    greedy_filter,
    learning_gradients,
    slice_log_likelihood,
    solve_slice,
)
from neurorec.families.ssrnn.spec import SSRNNSpec
from neurorec.fit.run import Run

TAU_X, TAU_Y = 1.3, 0.6


def _problem(seed: int, batch: int = 4, D: int = 6, n: int = 5):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(D, n, generator=g, dtype=torch.float64)
    z_true = torch.randn(batch, n, generator=g, dtype=torch.float64) * \
        (torch.rand(batch, n, generator=g, dtype=torch.float64) < 0.4)
    y = z_true @ W.T + 0.3 * torch.randn(batch, D, generator=g, dtype=torch.float64)
    logits = torch.randn(batch, n, generator=g, dtype=torch.float64) - 0.5
    return y, W, logits


@pytest.mark.parametrize("seed", range(5))
def test_inference_step_cannot_be_improved_by_any_single_coordinate_move(seed):
    y, W, logits = _problem(seed)
    z, steps = solve_slice(y, W, logits, TAU_X, TAU_Y, max_steps=100_000, tol=1e-13)
    assert steps < 100_000
    base = slice_log_likelihood(z, y, W, logits, TAU_X, TAU_Y)
    grid = torch.linspace(-6, 6, 4001, dtype=torch.float64)
    for j in range(W.shape[1]):
        # every value on a fine grid, zero (off) and the closed-form best "on" value
        r = y - z @ W.T + z[:, j:j + 1] * W[:, j]
        A = W[:, j] @ W[:, j] / TAU_Y**2 + 1 / TAU_X**2
        x_star = (r @ W[:, j]) / TAU_Y**2 / A
        for b in range(len(y)):
            values = torch.cat([grid, torch.tensor([0.0, float(x_star[b])],
                                                    dtype=torch.float64)])
            trial = z[b].repeat(len(values), 1)
            trial[:, j] = values
            ll = slice_log_likelihood(trial, y[b].expand(len(values), -1), W,
                                      logits[b].expand(len(values), -1), TAU_X, TAU_Y)
            assert float(ll.max()) <= float(base[b]) + 1e-10
    assert bool((base >= slice_log_likelihood(torch.zeros_like(z), y, W, logits, TAU_X,
                                              TAU_Y)).all())


def test_inference_on_its_support_is_the_exact_ridge_solution_and_batching_is_exact():
    y, W, logits = _problem(11, batch=6)
    z, _ = solve_slice(y, W, logits, TAU_X, TAU_Y, max_steps=100_000, tol=1e-14)
    for b in range(len(y)):
        s = z[b] != 0
        Ws = W[:, s]
        ridge = torch.linalg.solve(Ws.T @ Ws / TAU_Y**2 + torch.eye(int(s.sum()),
                                                                     dtype=torch.float64)
                                   / TAU_X**2, Ws.T @ y[b] / TAU_Y**2)
        torch.testing.assert_close(z[b, s], ridge, atol=1e-6, rtol=0)
        alone, _ = solve_slice(y[b:b + 1], W, logits[b:b + 1], TAU_X, TAU_Y, 100_000, 1e-14)
        torch.testing.assert_close(alone[0], z[b], atol=1e-9, rtol=0)
    # and it found the best support in most problems (exhaustive over all 2^5 supports)
    best = []
    for b in range(len(y)):
        vals = []
        for mask in itertools.product([0, 1], repeat=W.shape[1]):
            s = torch.tensor(mask, dtype=torch.bool)
            zz = torch.zeros(W.shape[1], dtype=torch.float64)
            if s.any():
                Ws = W[:, s]
                zz[s] = torch.linalg.solve(Ws.T @ Ws / TAU_Y**2 + torch.eye(int(s.sum()),
                                           dtype=torch.float64) / TAU_X**2,
                                           Ws.T @ y[b] / TAU_Y**2)
            vals.append(float(slice_log_likelihood(zz[None], y[b:b + 1], W, logits[b:b + 1],
                                                   TAU_X, TAU_Y)))
        best.append(max(vals))
    got = slice_log_likelihood(z, y, W, logits, TAU_X, TAU_Y).numpy()
    assert np.all(got <= np.array(best) + 1e-9)
    assert np.mean(np.isclose(got, best, atol=1e-8)) >= 0.5


def test_learning_rules_equal_autograd_gradient_of_the_log_likelihood():
    g = torch.Generator().manual_seed(3)
    B, T, D, n = 3, 7, 8, 5
    Y = torch.randn(B, T, D, generator=g, dtype=torch.float64)
    Z = torch.randn(B, T, n, generator=g, dtype=torch.float64) * \
        (torch.rand(B, T, n, generator=g, dtype=torch.float64) < 0.5)
    W = torch.randn(D, n, generator=g, dtype=torch.float64).requires_grad_(True)
    R = (0.3 * torch.randn(n, n, generator=g, dtype=torch.float64)).requires_grad_(True)
    b = torch.randn(n, generator=g, dtype=torch.float64).requires_grad_(True)
    clip_log_likelihood(Y, Z, W, R, b, TAU_X, TAU_Y).sum().backward()
    dW, dR, db = learning_gradients(Y, Z, W.detach(), R.detach(), b.detach(), TAU_Y)
    torch.testing.assert_close(dW, W.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dR, R.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(db, b.grad, rtol=1e-12, atol=1e-12)
    # the STDP-like form, entry by entry: pre (k at t-1) times post (j at t) minus prediction
    pi = torch.sigmoid(Z[:, :-1] @ R.detach().T + b.detach())
    j, k = 2, 4
    manual = ((Z[:, 1:, j] != 0).double() - pi[:, :, j]) * Z[:, :-1, k]
    first = ((Z[:, 0, j] != 0).double() - torch.sigmoid(b.detach()[j])) * 0.0
    assert float(dR[j, k]) == pytest.approx(float(manual.sum() + first.sum()), abs=1e-12)


def test_greedy_filter_uses_the_previous_frame():
    y, W, _ = _problem(5, batch=2)
    Y = y[:, None].repeat(1, 3, 1)
    R = torch.eye(W.shape[1], dtype=torch.float64) * 2.0
    b = torch.full((W.shape[1],), -3.0, dtype=torch.float64)
    Z, logits, _ = greedy_filter(Y, W, R, b, TAU_X, TAU_Y, 10_000, 1e-12)
    torch.testing.assert_close(logits[:, 0], b.expand(2, -1))
    torch.testing.assert_close(logits[:, 1], Z[:, 0] @ R.T + b)
    z1, _ = solve_slice(Y[:, 1], W, logits[:, 1], TAU_X, TAU_Y, 10_000, 1e-12)
    torch.testing.assert_close(Z[:, 1], z1)


def _clips(seed=0, n=12, T=5, p=4):
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((6, p * p))
    coef = rng.standard_normal((n, T, 6)) * (rng.random((n, T, 6)) < 0.3)
    return (coef @ basis + 0.1 * rng.standard_normal((n, T, p * p))).reshape(n, T, p, p)


def test_fit_improves_likelihood_and_resumes_bitwise(tmp_path):
    clips = _clips()
    spec = SSRNNSpec(n_units=6, learning={"n_iterations": 6, "batch_clips": 4,
                                          "checkpoint_every": 3, "dtype": "float64"})
    full = SpikeSlabRNN(spec, seed=1).fit(clips, progress=False)
    assert full.W_.shape == (16, 6) and full.R_.shape == (6, 6)
    np.testing.assert_allclose(np.linalg.norm(full.W_, axis=0), 1.0)
    ck = tmp_path / "run"
    half = spec.model_copy(update={"learning": spec.learning.model_copy(
        update={"n_iterations": 3})})
    SpikeSlabRNN(half, seed=1).fit(clips, progress=False, run=Run(ck, resume=True))
    resumed = SpikeSlabRNN(spec, seed=1).fit(clips, progress=False, run=Run(ck, resume=True))
    for a in ("W_", "R_", "b_"):
        np.testing.assert_array_equal(getattr(resumed, a), getattr(full, a))
    loaded = SpikeSlabRNN.from_checkpoint(spec, ck / "checkpoint.pt")
    np.testing.assert_array_equal(loaded.R_, full.R_)
    z, _logits = loaded.infer(clips[:3])
    assert z.shape == (3, 5, 6) and np.isfinite(loaded.log_likelihood(clips[:3]))
    longer = SpikeSlabRNN(spec.model_copy(update={"learning": spec.learning.model_copy(
        update={"n_iterations": 40})}), seed=1).fit(clips, progress=False)
    assert longer.log_likelihood(clips) > SpikeSlabRNN(
        spec.model_copy(update={"learning": spec.learning.model_copy(
            update={"n_iterations": 0})}), seed=1).fit(clips, progress=False).log_likelihood(clips)


def test_model_errors():
    spec = SSRNNSpec(n_units=3)
    with pytest.raises(NotFittedError, match="fit"):
        SpikeSlabRNN(spec).infer(_clips())
    with pytest.raises(DataError, match="clips: expected"):
        SpikeSlabRNN(spec).fit(np.zeros(5), progress=False)


# ----------------------------------------------------------------------- compact filters
def test_compact_filters_recover_an_exact_recurrent_bank():
    rng = np.random.default_rng(0)
    K, D, T = 8, 10, 12
    q, _ = np.linalg.qr(rng.standard_normal((K, K)))
    R = 0.9 * q
    W0 = rng.standard_normal((K, D))
    F = powers_times(torch.as_tensor(R), torch.as_tensor(W0), T).numpy()
    fit = fit_compact_filters(F, n_steps=5)
    assert fit.error < 1e-10
    np.testing.assert_allclose(fit.R, R, atol=1e-5)
    assert relative_error(R, W0, F) == 0.0


def test_sparse_mask_and_costs():
    rng = np.random.default_rng(1)
    R = rng.standard_normal((20, 20))
    mask = prune_mask(R, 0.05)
    assert mask.sum() == 20 and np.abs(R[mask]).min() >= np.abs(R[~mask]).max()
    assert flops_per_frame(256, 144, 30, 0.05) == {
        "feed_forward": 2 * 256 * 144 * 30, "recurrent_dense": 2 * (256 * 144 + 256**2),
        "recurrent_sparse": 2 * (256 * 144 + 3277)}
    F = rng.standard_normal((20, 4, 9))
    t = time_per_frame(F, R, rng.standard_normal((20, 9)), R * mask, batch=2, n_frames=5,
                       repeats=1)
    assert set(t) == {"feed_forward", "recurrent_dense", "recurrent_sparse"}
    assert all(v > 0 for v in t.values())
    Rs = torch.as_tensor(R * mask).to_sparse_csr()
    x = torch.as_tensor(rng.standard_normal((20, 3)))
    torch.testing.assert_close(torch.sparse.mm(Rs, x), torch.as_tensor(R * mask) @ x)
