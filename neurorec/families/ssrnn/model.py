"""Spike-and-slab recurrent network of image patches (Pachitariu & Sahani 2012), in torch.

Generative model, for whitened patches ``y_t`` (D pixels) and ``n`` latent units:

    h_t ~ Bernoulli(π_t),  π_t = σ(R z_{t-1} + b),  x_t ~ N(0, τx² I),  z_t = h_t∘x_t,
    y_t ~ N(W z_t, τy² I)

**Greedy filtering.** Frame by frame, given the past's ``z_{t-1}``, ``z_t`` maximises the slice

    L_t(z) = −|y_t − W z|² / 2τy² − (D/2) log 2πτy²
             + Σ_j [h_j (log π_j − z_j² / 2τx² − ½ log 2πτx²) + (1 − h_j) log(1 − π_j)]

(``h_j = [z_j ≠ 0]``; an off unit's slab integrates to one). One coordinate at a time the
maximum is closed-form: with ``B_j = w_j·r_j / τy²`` (``r_j`` the residual without unit j) and
``A_j = |w_j|² / τy² + 1/τx²``, the best "on" value is ``x = B_j / A_j`` scoring
``B_j² / 2A_j + log π_j − ½ log 2πτx²`` against ``log(1 − π_j)`` for "off". Inference starts
from ``z = 0`` and repeatedly makes the single-coordinate move with the largest gain
(Gauss-Southwell; the first moves are matching pursuit), until no move gains more than ``tol``:
at the end no single-coordinate change improves ``L_t`` by more than ``tol``.

**Learning** at the inferred ``z`` (gradients of ``Σ_t L_t``):

    ∂/∂W = Σ_t (y_t − W z_t) z_tᵀ / τy²            (sparse coding)
    ∂/∂R_jk = Σ_t (h_j^t − π_j^t) z_k^{t-1}          (STDP-like: pre before post)
    ∂/∂b_j = Σ_t (h_j^t − π_j^t)

averaged over clips and frames, applied with momentum; W's columns are renormalised.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.functional import logsigmoid
from tqdm.auto import tqdm

from neurorec.core.errors import DataError, NotFittedError
from neurorec.fit.checkpoint import (
    generator_states,
    load_checkpoint,
    restore_generators,
    save_checkpoint,
)

LOG_2PI = math.log(2 * math.pi)


# ---------------------------------------------------------------- the slice and its solver
def slice_log_likelihood(z: torch.Tensor, y: torch.Tensor, W: torch.Tensor,
                         logits: torch.Tensor, tau_x: float, tau_y: float) -> torch.Tensor:
    """``L_t(z)`` per batch row.

    Args:
        z: (batch, n) latent values (0 = off).  y: (batch, D) patches.  W: (D, n).
        logits: (batch, n) ``R z_{t-1} + b``.
    Returns:
        (batch,) log p(y_t, z_t | z_{t-1}) with the slabs of off units integrated out.
    """
    D = y.shape[-1]
    resid = y - z @ W.T
    h = (z != 0).to(z.dtype)
    prior = (h * (logsigmoid(logits) - z**2 / (2 * tau_x**2) - 0.5 * LOG_2PI
                  - math.log(tau_x))
             + (1 - h) * logsigmoid(-logits)).sum(-1)
    return (-(resid**2).sum(-1) / (2 * tau_y**2) - 0.5 * D * (LOG_2PI + 2 * math.log(tau_y))
            + prior)


def single_moves(z: torch.Tensor, c: torch.Tensor, g: torch.Tensor, logits: torch.Tensor,
                 tau_x: float, tau_y: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The best value of each coordinate with the others fixed, and its gain.

    Args:
        z: (batch, n) current values.  c: (batch, n) ``Wᵀ (y − W z)``.  g: (n,) ``|w_j|²``.
        logits: (batch, n).
    Returns:
        best (batch, n) and gain (batch, n) ≥ 0 (nats; up to rounding).
    """
    A = g / tau_y**2 + 1 / tau_x**2
    B = (c + g * z) / tau_y**2
    on_const = logsigmoid(logits) - 0.5 * LOG_2PI - math.log(tau_x)
    off = logsigmoid(-logits)
    on = B**2 / (2 * A) + on_const
    current = torch.where(z != 0, B * z - 0.5 * A * z**2 + on_const, off)
    best = torch.where(on > off, B / A, torch.zeros_like(z))
    return best, torch.maximum(on, off) - current


def solve_slice(y: torch.Tensor, W: torch.Tensor, logits: torch.Tensor, tau_x: float,
                tau_y: float, max_steps: int = 400, tol: float = 1e-4,
                gram: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """Maximise ``L_t`` over ``z`` by greedy coordinate ascent from ``z = 0``, batched.

    Args:
        y: (batch, D).  W: (D, n).  logits: (batch, n).
        gram: ``WᵀW`` (n, n) if already computed.
    Returns:
        z (batch, n) and the number of moves made (the largest over the batch).
    """
    G = W.T @ W if gram is None else gram
    g = torch.diagonal(G)
    z = torch.zeros_like(logits)
    c = y @ W  # Wᵀ (y − W·0)
    rows = torch.arange(len(z), device=z.device)
    for step in range(max_steps):
        best, gain = single_moves(z, c, g, logits, tau_x, tau_y)
        top, j = gain.max(dim=1)
        moving = top > tol
        if not bool(moving.any()):
            return z, step
        delta = torch.where(moving, best[rows, j] - z[rows, j], torch.zeros_like(top))
        z[rows, j] += delta
        c -= delta[:, None] * G[j]
    return z, max_steps


def greedy_filter(Y: torch.Tensor, W: torch.Tensor, R: torch.Tensor, b: torch.Tensor,
                  tau_x: float, tau_y: float, max_steps: int = 400,
                  tol: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Greedy filtering of clips: each frame's slice solved given the previous frame's ``z``.

    Args:
        Y: (batch, T, D) whitened patches.  W: (D, n).  R: (n, n), ``R[j, k]`` from k to j.
        b: (n,).
    Returns:
        Z (batch, T, n), logits (batch, T, n) = ``R z_{t-1} + b`` (``z_0 = 0``), and the mean
        number of coordinate moves per frame.
    """
    batch, T, _ = Y.shape
    n = W.shape[1]
    G = W.T @ W
    Z = Y.new_zeros(batch, T, n)
    logits = Y.new_zeros(batch, T, n)
    prev = Y.new_zeros(batch, n)
    moves = 0
    for t in range(T):
        logits[:, t] = prev @ R.T + b
        Z[:, t], k = solve_slice(Y[:, t], W, logits[:, t], tau_x, tau_y, max_steps, tol, G)
        moves += k
        prev = Z[:, t]
    return Z, logits, moves / max(T, 1)


def clip_log_likelihood(Y: torch.Tensor, Z: torch.Tensor, W: torch.Tensor, R: torch.Tensor,
                        b: torch.Tensor, tau_x: float, tau_y: float) -> torch.Tensor:
    """``Σ_t L_t`` per clip (batch,): the log-likelihood the learning rules climb."""
    prev = torch.cat([Z.new_zeros(Z.shape[0], 1, Z.shape[2]), Z[:, :-1]], dim=1)
    logits = prev @ R.T + b
    B, T, D = Y.shape
    ll = slice_log_likelihood(Z.reshape(B * T, -1), Y.reshape(B * T, D), W,
                              logits.reshape(B * T, -1), tau_x, tau_y)
    return ll.reshape(B, T).sum(1)


def learning_gradients(Y: torch.Tensor, Z: torch.Tensor, W: torch.Tensor, R: torch.Tensor,
                       b: torch.Tensor, tau_y: float
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of ``Σ_clips Σ_t L_t`` at fixed ``Z``: the sparse-coding rule for W and the
    STDP-like rule for R and b.

    Args:
        Y: (batch, T, D).  Z: (batch, T, n).  W: (D, n).  R: (n, n).  b: (n,).
    Returns:
        dW (D, n), dR (n, n), db (n,).
    """
    prev = torch.cat([Z.new_zeros(Z.shape[0], 1, Z.shape[2]), Z[:, :-1]], dim=1)
    pi = torch.sigmoid(prev @ R.T + b)
    h = (Z != 0).to(Z.dtype)
    err = h - pi  # postsynaptic "spike minus prediction"
    resid = Y - Z @ W.T
    dW = torch.einsum("btd,btn->dn", resid, Z) / tau_y**2
    dR = torch.einsum("btj,btk->jk", err, prev)  # post j at t, pre k at t-1
    return dW, dR, err.sum((0, 1))


# ---------------------------------------------------------------------------- the model
@dataclass
class TrainingRecord:
    iteration: int
    log_likelihood_per_frame: float
    mse_per_pixel: float
    fraction_active: float
    moves_per_frame: float
    seconds: float


class SpikeSlabRNN:
    """Spike-and-slab RNN trained on natural-movie clips (sklearn-like: ``fit`` returns self;
    learned ``W_`` (D, n), ``R_`` (n, n), ``b_`` (n,), ``history_``).

    Args:
        spec: an :class:`~neurorec.families.ssrnn.spec.SSRNNSpec`.
        device: "cpu" or "cuda".  seed: initial weights and the order of clips.
    """

    kind = "ssrnn"

    def __init__(self, spec, device: str = "cpu", seed: int = 0):
        self.spec = spec
        self.device = device
        self.seed = seed

    # -- helpers
    @property
    def dtype(self) -> torch.dtype:
        return torch.float64 if self.spec.learning.dtype == "float64" else torch.float32

    def _tensor(self, a) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=self.dtype, device=self.device)

    def _check_fitted(self) -> None:
        if not hasattr(self, "W_"):
            raise NotFittedError("SpikeSlabRNN: call fit() (or load()) before using the model")

    @staticmethod
    def _flatten(clips: np.ndarray) -> np.ndarray:
        clips = np.asarray(clips)
        if clips.ndim == 4:
            clips = clips.reshape(*clips.shape[:2], -1)
        if clips.ndim != 3:
            raise DataError(f"clips: expected (n_clips, n_frames, h, w) or (n_clips, n_frames, "
                            f"D), got shape {clips.shape}")
        if not np.all(np.isfinite(clips)):
            raise DataError("clips: contain NaN or Inf")
        return clips

    def _init_params(self, Y: np.ndarray, gen: torch.Generator) -> dict[str, torch.Tensor]:
        s = self.spec
        D = Y.shape[-1]
        if s.learning.init_w == "data":
            flat = torch.as_tensor(Y.reshape(-1, D), dtype=self.dtype)
            pick = torch.randint(len(flat), (s.n_units,), generator=gen)
            W = flat[pick].T.clone() + 0.01 * torch.randn(D, s.n_units, generator=gen,
                                                          dtype=self.dtype)
        else:
            W = torch.randn(D, s.n_units, generator=gen, dtype=self.dtype)
        W = W / W.norm(dim=0, keepdim=True).clamp_min(1e-12)
        b = torch.full((s.n_units,), math.log(s.prior_p / (1 - s.prior_p)), dtype=self.dtype)
        R = torch.zeros(s.n_units, s.n_units, dtype=self.dtype)
        return {k: v.to(self.device) for k, v in {"W": W, "R": R, "b": b}.items()}

    # -- public API
    def fit(self, clips: np.ndarray, progress: bool = True,
            checkpoint: str | Path | None = None) -> SpikeSlabRNN:
        """Learn W, R, b on ``clips`` (n_clips, n_frames, h, w) or (n_clips, n_frames, D).

        With ``checkpoint`` a path, the state is saved there every ``checkpoint_every``
        iterations and at the end, and an existing checkpoint is resumed (bitwise on CPU).
        """
        s, lr = self.spec, self.spec.learning
        Y = self._flatten(clips)
        gen = torch.Generator().manual_seed(self.seed)
        state = None
        if checkpoint is not None and Path(checkpoint).is_file():
            state = load_checkpoint(checkpoint)
            if state["params"]["W"].shape != (Y.shape[-1], s.n_units):
                raise DataError(f"{checkpoint}: checkpoint W has shape "
                                f"{tuple(state['params']['W'].shape)}, expected "
                                f"{(Y.shape[-1], s.n_units)}")
        if state is None:
            params = self._init_params(Y, gen)
            velocity = {k: torch.zeros_like(v) for k, v in params.items()}
            start, history = 0, []
        else:
            params = {k: v.to(self.device, self.dtype) for k, v in state["params"].items()}
            velocity = {k: v.to(self.device, self.dtype) for k, v in state["velocity"].items()}
            start, history = state["iteration"], [TrainingRecord(**r) for r in state["history"]]
            restore_generators(state["generators"], torch_gen=gen)
        Yt = self._tensor(Y)
        bar = tqdm(range(start, lr.n_iterations), desc="ssrnn", disable=not progress,
                   initial=start, total=lr.n_iterations)
        scale = {"W": lr.lr_w * s.tau_y**2, "R": lr.lr_r, "b": lr.lr_b}

        def save(iteration: int) -> None:
            if checkpoint is not None:
                save_checkpoint(checkpoint, {
                    "params": {k: v.cpu() for k, v in params.items()},
                    "velocity": {k: v.cpu() for k, v in velocity.items()},
                    "iteration": iteration, "history": [r.__dict__ for r in history],
                    "generators": generator_states(torch_gen=gen),
                    "spec": s.model_dump(mode="json"), "seed": self.seed})

        for it in bar:
            t0 = time.perf_counter()
            idx = torch.randint(len(Yt), (min(lr.batch_clips, len(Yt)),), generator=gen)
            batch = Yt[idx.to(self.device)]
            with torch.no_grad():
                Z, _, moves = greedy_filter(batch, params["W"], params["R"], params["b"],
                                            s.tau_x, s.tau_y, s.inference.max_steps,
                                            s.inference.tol)
                ll = clip_log_likelihood(batch, Z, params["W"], params["R"], params["b"],
                                         s.tau_x, s.tau_y)
                grads = dict(zip("WRb", learning_gradients(batch, Z, params["W"], params["R"],
                                                           params["b"], s.tau_y), strict=False))
                n_frames = batch.shape[0] * batch.shape[1]
                grads["R"] = grads["R"] / n_frames - lr.l2_r * params["R"]
                for k in ("W", "b"):
                    grads[k] = grads[k] / n_frames
                for k in params:
                    velocity[k].mul_(lr.momentum).add_(scale[k] * grads[k])
                    params[k].add_(velocity[k])
                if lr.normalise_w:
                    params["W"] /= params["W"].norm(dim=0, keepdim=True).clamp_min(1e-12)
            mse = float(((batch - Z @ params["W"].T) ** 2).mean())
            rec = TrainingRecord(it + 1, float(ll.sum()) / n_frames, mse,
                                 float((Z != 0).float().mean()), float(moves),
                                 time.perf_counter() - t0)
            if not math.isfinite(rec.log_likelihood_per_frame):
                raise DataError(f"ssrnn: the log-likelihood became {rec.log_likelihood_per_frame}"
                                f" at iteration {it + 1}; lower the learning rates")
            history.append(rec)
            bar.set_postfix(ll=f"{rec.log_likelihood_per_frame:.1f}", mse=f"{mse:.3f}",
                            active=f"{rec.fraction_active:.3f}")
            if (it + 1) % lr.checkpoint_every == 0:
                save(it + 1)
        save(max(start, lr.n_iterations))
        self.W_, self.R_, self.b_ = (params[k].cpu().numpy() for k in "WRb")
        self.history_ = history
        return self

    def infer(self, clips: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Greedy filtering of ``clips``: (z, logits), each (n_clips, n_frames, n_units)."""
        self._check_fitted()
        Y = self._flatten(clips)
        if Y.shape[-1] != self.W_.shape[0]:
            raise DataError(f"clips: {Y.shape[-1]} pixels per frame, the model has "
                            f"{self.W_.shape[0]}")
        W, R, b = (self._tensor(a) for a in (self.W_, self.R_, self.b_))
        zs, ls = [], []
        with torch.no_grad():
            for i in range(0, len(Y), batch_size):
                Z, L, _ = greedy_filter(self._tensor(Y[i:i + batch_size]), W, R, b,
                                        self.spec.tau_x, self.spec.tau_y,
                                        self.spec.inference.max_steps, self.spec.inference.tol)
                zs.append(Z.cpu().numpy())
                ls.append(L.cpu().numpy())
        return np.concatenate(zs), np.concatenate(ls)

    def log_likelihood(self, clips: np.ndarray) -> float:
        """``Σ_clips Σ_t L_t`` at the greedily filtered ``z`` (nats)."""
        z, _ = self.infer(clips)
        Y = self._tensor(self._flatten(clips))
        W, R, b = (self._tensor(a) for a in (self.W_, self.R_, self.b_))
        return float(clip_log_likelihood(Y, self._tensor(z), W, R, b, self.spec.tau_x,
                                         self.spec.tau_y).sum())

    def n_parameters(self) -> int:
        self._check_fitted()
        return int(self.W_.size + self.R_.size + self.b_.size)

    @classmethod
    def load(cls, spec, checkpoint: str | Path, device: str = "cpu") -> SpikeSlabRNN:
        """A model with the parameters of a checkpoint written by :meth:`fit`."""
        state = load_checkpoint(checkpoint)
        model = cls(spec, device=device, seed=state.get("seed", 0))
        model.W_, model.R_, model.b_ = (state["params"][k].numpy() for k in "WRb")
        model.history_ = [TrainingRecord(**r) for r in state["history"]]
        return model
