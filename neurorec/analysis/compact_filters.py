"""The compact-filter view: a bank of spatiotemporal filters as powers of a recurrent matrix.

A bank of K filters ``F_τ`` (K × D pixels, lags τ = 0..T−1) applied feed-forward costs
``K·D·T`` multiply-adds per frame (``u_t = Σ_τ F_τ y_{t−τ}``). If ``F_τ ≈ R^τ W0`` the same
output comes from the recurrence ``x_t = R x_{t−1} + W0 y_t`` (then ``x_t = Σ_τ R^τ W0 y_{t−τ}``)
at ``K·D + K²`` per frame, or ``K·D + ρK²`` with an R of density ρ stored as CSR. This module
fits ``R`` and ``W0`` by least squares on the filter bank, prunes R to a given density and
refits on the kept entries, and counts and times the three ways of filtering.
"""

from __future__ import annotations

import itertools
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from neurorec.stimuli.gabors import gabor


def drifting_gabor_bank(patch_px: int = 12, n_lags: int = 30, n_directions: int = 8,
                        speeds_px: tuple[float, ...] = (0.25, 0.5),
                        spatial_frequency_cpp: float = 0.15, sigma_px: float = 2.0,
                        n_positions: int = 3, phases: tuple[float, ...] = (0.0, np.pi / 2),
                        decay_frames: float = 10.0, rigid: bool = False
                        ) -> tuple[np.ndarray, list[dict]]:
    """A bank of motion-energy-like filters: Gabors drifting during the filter's lags.

    ``F_k(τ) = exp(−τ / decay) · gabor(θ_k, v_k, f, p_k, σ, t = τ)`` in pixel units (speed in
    pixels per frame, frequency in cycles per pixel), on an ``n_positions²`` grid of centres.
    With ``rigid=False`` only the carrier drifts under a fixed envelope: lag τ+1 is a rotation
    of the quadrature pair at lag τ, so the bank is exactly ``R^τ W0`` with a block-diagonal R.
    With ``rigid=True`` the whole Gabor translates (envelope centre ``p_k + v_k τ u_k``), which
    no small R reproduces exactly.

    Returns:
        F (K, n_lags, patch_px²) and the parameters of each filter.
    """
    grid = (np.linspace(-1, 1, n_positions) * patch_px / 4) if n_positions > 1 else [0.0]
    params, filters = [], []
    taus = np.arange(n_lags, dtype=float)
    for d, v, (x0, y0), ph in itertools.product(np.arange(n_directions) * 360 / n_directions,
                                                speeds_px, itertools.product(grid, grid),
                                                phases):
        if rigid:
            u = np.array([np.cos(np.deg2rad(d)), np.sin(np.deg2rad(d))])
            f = np.concatenate([gabor(d, 0.0, spatial_frequency_cpp, tuple(np.array([x0, y0])
                                      + v * tau * u), sigma_px, np.zeros(1), patch_px, 1.0,
                                      phase_rad=ph) for tau in taus])
        else:
            f = gabor(d, v, spatial_frequency_cpp, (x0, y0), sigma_px, taus, patch_px, 1.0,
                      phase_rad=ph)
        filters.append(np.exp(-taus / decay_frames)[:, None, None] * f)
        params.append({"direction": float(d), "speed_px": v, "x": x0, "y": y0, "phase": ph})
    F = np.stack(filters).reshape(len(filters), n_lags, patch_px * patch_px)
    return F.astype(np.float64), params


def powers_times(R: torch.Tensor, W0: torch.Tensor, n_lags: int) -> torch.Tensor:
    """(K, n_lags, D): ``R^τ W0`` for τ = 0..n_lags−1."""
    out, cur = [], W0
    for _ in range(n_lags):
        out.append(cur)
        cur = R @ cur
    return torch.stack(out, dim=1)


def relative_error(R: np.ndarray, W0: np.ndarray, F: np.ndarray) -> float:
    """``Σ_τ |R^τ W0 − F_τ|² / Σ_τ |F_τ|²``."""
    approx = powers_times(torch.as_tensor(R), torch.as_tensor(W0), F.shape[1]).numpy()
    return float(((approx - F) ** 2).sum() / (F**2).sum())


@dataclass(frozen=True)
class CompactFit:
    """``R`` (K, K) and ``W0`` (K, D) with ``R^τ W0 ≈ F_τ``; ``error`` is the relative squared
    error; ``density`` the fraction of non-zero entries of R; ``losses`` per optimiser step."""

    R: np.ndarray
    W0: np.ndarray
    error: float
    density: float
    losses: np.ndarray


def fit_compact_filters(F: np.ndarray, mask: np.ndarray | None = None, n_steps: int = 500,
                        lr: float = 1e-3, init: tuple[np.ndarray, np.ndarray] | None = None
                        ) -> CompactFit:
    """Fit ``R``, ``W0`` so that ``R^τ W0 ≈ F_τ``.

    Starts from ``W0 = F_0`` and the one-step least-squares predictor ``F_τ ≈ R F_{τ−1}``
    (or from ``init``), then minimises the relative squared error over all lags with Adam
    (float64). ``mask`` (K, K) boolean: R is constrained to its non-zero pattern.
    """
    Ft = torch.as_tensor(F, dtype=torch.float64)
    K, T, _ = Ft.shape
    if init is None:
        prev = Ft[:, :-1].reshape(K, -1)
        nxt = Ft[:, 1:].reshape(K, -1)
        gram = prev @ prev.T + 1e-6 * torch.eye(K, dtype=torch.float64) * prev.pow(2).mean()
        R0 = torch.linalg.solve(gram, prev @ nxt.T).T
        W00 = Ft[:, 0].clone()
    else:
        R0, W00 = (torch.as_tensor(a, dtype=torch.float64).clone() for a in init)
    m = torch.ones(K, K, dtype=torch.float64) if mask is None else torch.as_tensor(
        mask, dtype=torch.float64)
    R = (R0 * m).requires_grad_(True)
    W0 = W00.requires_grad_(True)
    norm = Ft.pow(2).sum()
    opt = torch.optim.Adam([R, W0], lr=lr)
    losses: list[float] = []
    best = (np.inf, None, None)
    for _ in range(n_steps + 1):
        opt.zero_grad()
        loss = (powers_times(R * m, W0, T) - Ft).pow(2).sum() / norm
        losses.append(float(loss.detach()))
        if losses[-1] < best[0]:  # Adam's steps are not monotone: keep the best iterate
            best = (losses[-1], (R * m).detach().clone(), W0.detach().clone())
        if len(losses) > n_steps:
            break
        loss.backward()
        opt.step()
    Rf, W0f = best[1].numpy(), best[2].numpy()
    return CompactFit(Rf, W0f, relative_error(Rf, W0f, F), float((Rf != 0).mean()),
                      np.array(losses))


def prune_mask(R: np.ndarray, density: float) -> np.ndarray:
    """Boolean mask keeping the ``density`` fraction of R's entries largest in magnitude."""
    k = max(1, round(density * R.size))
    thresh = np.partition(np.abs(R).ravel(), R.size - k)[R.size - k]
    return np.abs(R) >= thresh


def flops_per_frame(n_filters: int, n_pixels: int, n_lags: int, density: float
                    ) -> dict[str, int]:
    """Floating-point operations (2 per multiply-add) to filter one frame of one stream."""
    return {"feed_forward": 2 * n_filters * n_pixels * n_lags,
            "recurrent_dense": 2 * (n_filters * n_pixels + n_filters**2),
            "recurrent_sparse": 2 * (n_filters * n_pixels + round(density * n_filters**2))}


def time_per_frame(F: np.ndarray, R: np.ndarray, W0: np.ndarray, R_sparse: np.ndarray,
                   batch: int = 64, n_frames: int = 200, repeats: int = 3,
                   device: str = "cpu") -> dict[str, float]:
    """Measured seconds per frame (``batch`` streams, float32, best of ``repeats``) of the
    feed-forward bank, the dense recurrence and the CSR-sparse recurrence."""
    K, T, D = F.shape
    dev = torch.device(device)
    f32 = dict(dtype=torch.float32, device=dev)
    g = torch.Generator().manual_seed(0)
    Y = torch.randn(n_frames, D, batch, generator=g).to(**f32)
    Fm = torch.as_tensor(F.reshape(K, T * D)).to(**f32)  # column τ·D + d: lag τ, pixel d
    Rd = torch.as_tensor(R).to(**f32)
    W = torch.as_tensor(W0).to(**f32)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": measured fine here
        warnings.simplefilter("ignore", UserWarning)
        Rs = torch.as_tensor(R_sparse).to(**f32).to_sparse_csr()

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def feed_forward() -> None:
        buf = torch.zeros(T, D, batch, **f32)  # buf[τ] = y_{t−τ}
        for t in range(n_frames):
            buf = torch.roll(buf, 1, dims=0)
            buf[0] = Y[t]
            Fm @ buf.reshape(T * D, batch)

    def recurrent(mat) -> None:
        x = torch.zeros(K, batch, **f32)
        for t in range(n_frames):
            x = (torch.sparse.mm(mat, x) if mat.layout == torch.sparse_csr else mat @ x) \
                + W @ Y[t]

    out = {}
    for name, fn in (("feed_forward", feed_forward), ("recurrent_dense", lambda: recurrent(Rd)),
                     ("recurrent_sparse", lambda: recurrent(Rs))):
        best = np.inf
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            with torch.no_grad():
                fn()
            sync()
            best = min(best, time.perf_counter() - t0)
        out[name] = best / n_frames
    return out
