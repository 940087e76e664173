"""The chunked block-Toeplitz linear recurrence against the step-by-step loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurorec.core.recurrence import linear_recurrence, linear_recurrence_loop, matrix_powers


def _random(n_trials=7, n_bins=150, d=5, radius=0.97, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    R = q * radius + 0.05 * torch.randn(d, d, generator=gen, dtype=torch.float64)
    u = torch.randn(n_trials, n_bins, d, generator=gen, dtype=torch.float64)
    return u, R


def test_powers_are_powers():
    _, R = _random()
    P = matrix_powers(R, 13)
    for k in range(13):
        np.testing.assert_allclose(P[k], np.linalg.matrix_power(R.numpy(), k), rtol=0,
                                   atol=1e-13)


@pytest.mark.parametrize("chunk", [1, 16, 64, 150, 1000])
def test_scan_equals_loop(chunk):
    u, R = _random()
    ref = linear_recurrence_loop(u, R)
    got = linear_recurrence(u, R, chunk=chunk)
    scale = ref.abs().max()
    assert float((got - ref).abs().max() / scale) < 1e-12


def test_gradients_equal_loop():
    u, R = _random(n_bins=70)
    u1, R1 = u.clone().requires_grad_(), R.clone().requires_grad_()
    u2, R2 = u.clone().requires_grad_(), R.clone().requires_grad_()
    w = torch.randn_like(u)
    (linear_recurrence(u1, R1, chunk=32) * w).sum().backward()
    (linear_recurrence_loop(u2, R2) * w).sum().backward()
    torch.testing.assert_close(R1.grad, R2.grad, rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(u1.grad, u2.grad, rtol=1e-11, atol=1e-11)


def test_absurd_recurrence_stays_finite():
    u, R = _random(n_bins=200)
    got = linear_recurrence(u, R * 30, chunk=64)
    assert torch.isfinite(got).all() and float(got.abs().max()) <= 1e6
