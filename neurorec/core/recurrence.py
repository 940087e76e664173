"""The linear recurrence ``x_t = u_t + R x_{t-1}`` (``x_{-1} = 0``) without a Python loop per bin.

``x_t = Σ_{s ≤ t} R^{t-s} u_s``: inside a chunk of ``C`` bins this is one matrix product with
the block-Toeplitz matrix of powers ``R^0 .. R^{C-1}`` (``(C·d) × (C·d)``), and chunks are
chained by carrying the last state: ``x_{t} = local_t + R^{t-t0+1} x_{t0-1}``. The cost is
``n_trials · n_bins · C · d²`` multiply-adds in a few large GEMMs instead of ``n_bins`` tiny
ones, and autograd differentiates it like any matmul. Agrees with the step-by-step loop to
rounding (tested at 1e-12, float64).
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor
STATE_MAX = 1e6  # |x| never nears this in a fitted model; keeps far line-search trials finite


def matrix_powers(R: Tensor, n: int) -> Tensor:
    """(n, d, d) ``R^0, R^1, ..., R^{n-1}``, by doubling (⌈log2 n⌉ batched products)."""
    d = R.shape[0]
    powers = torch.eye(d, dtype=R.dtype, device=R.device)[None]
    step = R  # R^(len(powers))
    while powers.shape[0] < n:
        powers = torch.cat([powers, powers @ step], dim=0)
        step = step @ step
    return powers[:n]


def linear_recurrence_loop(u: Tensor, R: Tensor) -> Tensor:
    """Reference: the step-by-step loop (states clamped to ±STATE_MAX).

    Args:
        u: (n_trials, n_bins, dim) inputs.
        R: (dim, dim) recurrence.
    Returns:
        (n_trials, n_bins, dim) states.
    """
    states = []
    x = torch.zeros_like(u[:, 0])
    for t in range(u.shape[1]):
        x = (u[:, t] + x @ R.T).clamp(-STATE_MAX, STATE_MAX)
        states.append(x)
    return torch.stack(states, dim=1)


def linear_recurrence(u: Tensor, R: Tensor, chunk: int = 64) -> Tensor:
    """States of ``x_t = u_t + R x_{t-1}`` from ``x_{-1} = 0``, chunked block-Toeplitz products.

    Args:
        u: (n_trials, n_bins, dim) inputs.
        R: (dim, dim) recurrence.
        chunk: bins per block-Toeplitz product (memory ``(chunk·dim)²``).
    Returns:
        (n_trials, n_bins, dim) states, each entry bounded by ``STATE_MAX`` (reached only by
        an absurd ``R``, e.g. a far line-search trial, where powers overflow).
    """
    n_trials, n_bins, d = u.shape
    c = max(1, min(chunk, n_bins))
    powers = matrix_powers(R, c + 1)  # R^0 .. R^c
    lag = torch.arange(c)[:, None] - torch.arange(c)[None, :]  # t - s
    # toeplitz[t, s] = R^{t-s} for s ≤ t else 0, laid out as (t, i, s, j) -> (c·d, c·d)
    toeplitz = powers[lag.clamp(min=0)] * (lag >= 0).to(R.dtype)[:, :, None, None]
    toeplitz = toeplitz.permute(0, 2, 1, 3).reshape(c * d, c * d)
    carry_powers = powers[1:]  # (c, d, d): R^{t-t0+1} for the carried state
    out = []
    x_last = None
    for start in range(0, n_bins, c):
        block = u[:, start:start + c]
        m = block.shape[1]
        local = (block.reshape(n_trials, m * d)
                 @ toeplitz[: m * d, : m * d].T).reshape(n_trials, m, d)
        if x_last is not None:
            local = local + torch.einsum("tij,bj->bti", carry_powers[:m], x_last)
        local = local.clamp(-STATE_MAX, STATE_MAX)
        out.append(local)
        x_last = local[:, -1]
    return torch.cat(out, dim=1)


__all__ = ["STATE_MAX", "linear_recurrence", "linear_recurrence_loop", "matrix_powers"]
