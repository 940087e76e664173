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

averaged over clips and frames, applied with momentum; W's columns are renormalised. With
``recurrence.self_connections: false`` the diagonal of ``∂/∂R`` is zeroed, so ``R_jj`` stays
at its initial 0. The update is not an optimiser step on a loss (``R`` follows the STDP-like
rule at the greedily inferred ``z``), so the loop is :func:`neurorec.fit.engine.run_loop`
with this body and no ``Stepper``: its checkpoints (parameters, momenta, the clip-order
generator, the curves) resume bitwise on CPU.

**Score** (``score="reconstruction"``): the mean squared error per whitened pixel,
``mean |y_t − W z_t|²``, of held-out clips at their greedily filtered ``z``. Lower is better;
``mean y²`` (≈ 1 for whitened pixels) is the error of ``z = 0``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.nn.functional import logsigmoid

from neurorec.core.errors import DataError, DivergenceError
from neurorec.families.base import Estimator
from neurorec.fit.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from neurorec.fit.engine import run_loop
from neurorec.fit.run import Run

LOG_2PI = math.log(2 * math.pi)


# ---------------------------------------------------------------- the slice and its solver
def slab_log_norm(tau_x: float, slab: str = "gaussian") -> float:
    """log of the slab density's normaliser: ``−½ log 2π − log τx``, plus ``log 2`` for the
    half-normal slab (``x ≥ 0``)."""
    return -0.5 * LOG_2PI - math.log(tau_x) + (math.log(2.0) if slab == "nonnegative" else 0.0)


def slice_log_likelihood(z: torch.Tensor, y: torch.Tensor, W: torch.Tensor,
                         logits: torch.Tensor, tau_x: float, tau_y: float,
                         slab: str = "gaussian") -> torch.Tensor:
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
    prior = (h * (logsigmoid(logits) - z**2 / (2 * tau_x**2) + slab_log_norm(tau_x, slab))
             + (1 - h) * logsigmoid(-logits)).sum(-1)
    return (-(resid**2).sum(-1) / (2 * tau_y**2) - 0.5 * D * (LOG_2PI + 2 * math.log(tau_y))
            + prior)


def single_moves(z: torch.Tensor, c: torch.Tensor, g: torch.Tensor, logits: torch.Tensor,
                 tau_x: float, tau_y: float, slab: str = "gaussian"
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The best value of each coordinate with the others fixed, and its gain.

    With the non-negative slab a unit can only be on at ``x = B/A > 0``; where ``B ≤ 0`` it
    stays off (the supremum of the "on" score there is at ``x → 0+``, a cause that explains
    nothing, and ``z = 0`` is "off").

    Args:
        z: (batch, n) current values.  c: (batch, n) ``Wᵀ (y − W z)``.  g: (n,) ``|w_j|²``.
        logits: (batch, n).
    Returns:
        best (batch, n) and gain (batch, n) ≥ 0 (nats; up to rounding).
    """
    A = g / tau_y**2 + 1 / tau_x**2
    B = (c + g * z) / tau_y**2
    on_const = logsigmoid(logits) + slab_log_norm(tau_x, slab)
    off = logsigmoid(-logits)
    on = B**2 / (2 * A) + on_const
    if slab == "nonnegative":
        on = torch.where(B > 0, on, torch.full_like(on, -torch.inf))
    current = torch.where(z != 0, B * z - 0.5 * A * z**2 + on_const, off)
    best = torch.where(on > off, B / A, torch.zeros_like(z))
    return best, torch.maximum(on, off) - current


def solve_slice(y: torch.Tensor, W: torch.Tensor, logits: torch.Tensor, tau_x: float,
                tau_y: float, max_steps: int = 400, tol: float = 1e-4,
                gram: torch.Tensor | None = None, slab: str = "gaussian"
                ) -> tuple[torch.Tensor, int]:
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
        best, gain = single_moves(z, c, g, logits, tau_x, tau_y, slab)
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
                  tol: float = 1e-4, slab: str = "gaussian"
                  ) -> tuple[torch.Tensor, torch.Tensor, float]:
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
        Z[:, t], k = solve_slice(Y[:, t], W, logits[:, t], tau_x, tau_y, max_steps, tol, G,
                                 slab)
        moves += k
        prev = Z[:, t]
    return Z, logits, moves / max(T, 1)


def clip_log_likelihood(Y: torch.Tensor, Z: torch.Tensor, W: torch.Tensor, R: torch.Tensor,
                        b: torch.Tensor, tau_x: float, tau_y: float,
                        slab: str = "gaussian") -> torch.Tensor:
    """``Σ_t L_t`` per clip (batch,): the log-likelihood the learning rules climb."""
    prev = torch.cat([Z.new_zeros(Z.shape[0], 1, Z.shape[2]), Z[:, :-1]], dim=1)
    logits = prev @ R.T + b
    B, T, D = Y.shape
    ll = slice_log_likelihood(Z.reshape(B * T, -1), Y.reshape(B * T, D), W,
                              logits.reshape(B * T, -1), tau_x, tau_y, slab)
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


_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(TrainingRecord))


def _records(rows: list[dict[str, float]]) -> list[TrainingRecord]:
    """The engine's curves (``FitLog.history``) as training records."""
    return [TrainingRecord(**{k: row[k] for k in _RECORD_FIELDS}) for row in rows]


class SpikeSlabRNN(Estimator):
    """Spike-and-slab RNN trained on natural-movie clips.

    ``fit`` returns self and learns ``W_`` (D, n), ``R_`` (n, n), ``b_`` (n,) and
    ``history_`` (one :class:`TrainingRecord` per iteration). ``score(clips)`` is the held-out
    reconstruction error: mean squared error per whitened pixel of ``W z`` at the greedily
    filtered ``z`` (**lower is better**). Inference is deterministic; ``sample`` draws clips
    from the generative model, reproducibly in its seed. ``save(dir)`` / ``load(dir)`` round-trip
    (:class:`~neurorec.families.base.Estimator`); :meth:`from_checkpoint` reads a training
    checkpoint.

    Args:
        spec: an :class:`~neurorec.families.ssrnn.spec.SSRNNSpec`.
        device: "cpu" or "cuda".  seed: initial weights and the order of clips.
    """

    kind = "ssrnn"
    fitted_attribute: ClassVar[str] = "W_"

    def __init__(self, spec, *, device: str = "cpu", seed: int = 0):
        self.spec = spec
        self.device = device
        self.seed = seed

    # -- helpers
    @property
    def dtype(self) -> torch.dtype:
        return torch.float64 if self.spec.learning.dtype == "float64" else torch.float32

    def _tensor(self, a, device: str | None = None) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=self.dtype, device=device or self.device)

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

    def _checkpoint_to_resume(self, checkpoint: Path, n_pixels: int) -> bool:
        """Whether ``checkpoint`` exists and is resumed; checks it fits this model, and lets a
        finished run that stopped short of ``n_iterations`` continue to the new total."""
        if not checkpoint.is_file():
            return False
        saved = load_checkpoint(checkpoint)
        params = saved.get("state", {}).get("params") if isinstance(saved, dict) else None
        if params is None:
            raise DataError(f"{checkpoint}: not an ssrnn training checkpoint of this version "
                            "(delete it to train from scratch)")
        expected = (n_pixels, self.spec.n_units)
        if tuple(params["W"].shape) != expected:
            raise DataError(f"{checkpoint}: checkpoint W has shape {tuple(params['W'].shape)}, "
                            f"expected {expected}")
        if saved.get("finished") and saved["iteration"] < self.spec.learning.n_iterations:
            save_checkpoint(checkpoint, {**saved, "finished": False})
        return True

    # -- public API
    def fit(self, clips: np.ndarray, *, progress: bool = True, run: Run | None = None,
            callback: Callable[[int, dict[str, float]], None] | None = None) -> SpikeSlabRNN:
        """Learn W, R, b on ``clips`` (n_clips, n_frames, h, w) or (n_clips, n_frames, D).

        With ``run`` (:class:`~neurorec.fit.run.Run`) a checkpoint folder, the state is saved
        in its ``checkpoint.pt`` every ``checkpoint_every`` iterations and at the end, and
        ``run.resume`` continues from an existing one (bitwise on CPU; a finished shorter run
        continues to ``n_iterations``). ``callback(i, row)`` runs after every iteration
        (:func:`~neurorec.fit.engine.run_loop`).
        """
        s, lr = self.spec, self.spec.learning
        Y = self._flatten(clips)
        checkpoint = None if run is None else run.path(CHECKPOINT_NAME)
        resume = run is not None and run.resume and self._checkpoint_to_resume(checkpoint,
                                                                               Y.shape[-1])
        gen = torch.Generator().manual_seed(self.seed)
        params = self._init_params(Y, gen)
        velocity = {k: torch.zeros_like(v) for k, v in params.items()}
        Yt = self._tensor(Y)
        scale = {"W": lr.lr_w * s.tau_y**2, "R": lr.lr_r, "b": lr.lr_b}

        def get_state() -> dict[str, Any]:
            return {"params": {k: v.cpu() for k, v in params.items()},
                    "velocity": {k: v.cpu() for k, v in velocity.items()},
                    "spec": s.model_dump(mode="json"), "seed": self.seed}

        def set_state(state: dict[str, Any]) -> None:
            for name, into in (("params", params), ("velocity", velocity)):
                for k, v in state[name].items():
                    into[k] = v.to(self.device, self.dtype)

        def body(it: int) -> dict[str, float]:
            idx = torch.randint(len(Yt), (min(lr.batch_clips, len(Yt)),), generator=gen)
            batch = Yt[idx.to(self.device)]
            with torch.no_grad():
                Z, _, moves = greedy_filter(batch, params["W"], params["R"], params["b"],
                                            s.tau_x, s.tau_y, s.inference.max_steps,
                                            s.inference.tol, s.slab)
                ll = clip_log_likelihood(batch, Z, params["W"], params["R"], params["b"],
                                         s.tau_x, s.tau_y, s.slab)
                n_frames = batch.shape[0] * batch.shape[1]
                ll_frame = float(ll.sum()) / n_frames
                if not math.isfinite(ll_frame):
                    raise DivergenceError(f"ssrnn: the log-likelihood became {ll_frame} at "
                                          f"iteration {it}; lower the learning rates (the last "
                                          "good checkpoint is kept)")
                grads = dict(zip("WRb", learning_gradients(batch, Z, params["W"], params["R"],
                                                           params["b"], s.tau_y), strict=True))
                grads["R"] = grads["R"] / n_frames - lr.l2_r * params["R"]
                if not s.recurrence.self_connections:  # R starts at 0: its diagonal stays 0
                    grads["R"].fill_diagonal_(0.0)
                for k in ("W", "b"):
                    grads[k] = grads[k] / n_frames
                for k in params:
                    velocity[k].mul_(lr.momentum).add_(scale[k] * grads[k])
                    params[k].add_(velocity[k])
                if lr.normalise_w:
                    params["W"] /= params["W"].norm(dim=0, keepdim=True).clamp_min(1e-12)
            mse = float(((batch - Z @ params["W"].T) ** 2).mean())
            return {"log_likelihood_per_frame": ll_frame, "mse_per_pixel": mse,
                    "fraction_active": float((Z != 0).float().mean()),
                    "moves_per_frame": float(moves)}

        log = run_loop(lr.n_iterations, body, get_state=get_state, set_state=set_state,
                       torch_generator=gen, checkpoint=checkpoint,
                       checkpoint_every=lr.checkpoint_every, resume=resume, progress=progress,
                       desc="ssrnn", callback=callback)
        self.W_, self.R_, self.b_ = (params[k].cpu().numpy() for k in "WRb")
        self.history_ = _records(log.history)
        return self

    def initial_params(self, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(W, R, b) as :meth:`fit` initialises them on ``clips`` with this seed: the untrained
        network, for controls."""
        gen = torch.Generator().manual_seed(self.seed)
        params = self._init_params(self._flatten(clips), gen)
        return tuple(params[k].cpu().numpy() for k in "WRb")

    def infer(self, clips: np.ndarray, batch_size: int = 256, R: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """Greedy filtering of ``clips``: (z, logits), each (n_clips, n_frames, n_units).

        ``R`` replaces the learned recurrent weights for this call (the controls of a probe:
        ``R = 0``, ``R`` with shuffled entries)."""
        self.check_fitted()
        Y = self._flatten(clips)
        if Y.shape[-1] != self.W_.shape[0]:
            raise DataError(f"clips: {Y.shape[-1]} pixels per frame, the model has "
                            f"{self.W_.shape[0]}")
        W, R, b = (self._tensor(a) for a in (self.W_, self.R_ if R is None else R, self.b_))
        zs, ls = [], []
        with torch.no_grad():
            for i in range(0, len(Y), batch_size):
                Z, L, _ = greedy_filter(self._tensor(Y[i:i + batch_size]), W, R, b,
                                        self.spec.tau_x, self.spec.tau_y,
                                        self.spec.inference.max_steps, self.spec.inference.tol,
                                        self.spec.slab)
                zs.append(Z.cpu().numpy())
                ls.append(L.cpu().numpy())
        return np.concatenate(zs), np.concatenate(ls)

    def log_likelihood(self, clips: np.ndarray) -> float:
        """``Σ_clips Σ_t L_t`` at the greedily filtered ``z`` (nats)."""
        z, _ = self.infer(clips)
        Y = self._tensor(self._flatten(clips))
        W, R, b = (self._tensor(a) for a in (self.W_, self.R_, self.b_))
        return float(clip_log_likelihood(Y, self._tensor(z), W, R, b, self.spec.tau_x,
                                         self.spec.tau_y, self.spec.slab).sum())

    def score(self, clips: np.ndarray) -> float:
        """Reconstruction error of ``clips``: ``mean |y_t − W z_t|²`` per whitened pixel at the
        greedily filtered ``z`` — **lower is better** (``mean y²``, ≈ 1 on whitened patches, is
        the error of ``z = 0``)."""
        z, _ = self.infer(clips)
        Y = self._flatten(clips).astype(np.float64)
        return float(np.mean((Y - z.astype(np.float64) @ self.W_.T.astype(np.float64)) ** 2))

    def sample(self, n: int, *, seed: int, like: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``n`` clips drawn ancestrally from the generative model (``z_0 = 0`` before the first
        frame), on CPU from a generator seeded by ``seed``.

        Args:
            like: clips (n_clips, n_frames, h, w) or (n_clips, n_frames, D) whose frame count
                the draws take (the model has no clip length of its own, so it is required;
                None is a DataError).

        Returns:
            y (n, n_frames, D) whitened patches and z (n, n_frames, n_units).
        """
        self.check_fitted()
        if like is None or np.ndim(like) not in (3, 4):
            raise DataError(f"{self.spec.name}: sample: like: clips (n_clips, n_frames, ...) "
                            f"whose frame count the draws take, got "
                            f"{None if like is None else np.shape(like)}")
        n_clips, n_frames = int(n), int(np.shape(like)[1])
        gen = torch.Generator().manual_seed(seed)
        W, R, b = (self._tensor(a, "cpu") for a in (self.W_, self.R_, self.b_))
        n, D = W.shape[1], W.shape[0]
        Z = torch.zeros(n_clips, n_frames, n, dtype=self.dtype)
        prev = torch.zeros(n_clips, n, dtype=self.dtype)
        for t in range(n_frames):
            on = torch.rand(n_clips, n, generator=gen, dtype=self.dtype) < torch.sigmoid(
                prev @ R.T + b)
            x = self.spec.tau_x * torch.randn(n_clips, n, generator=gen, dtype=self.dtype)
            prev = Z[:, t] = on * (x.abs() if self.spec.slab == "nonnegative" else x)
        noise = torch.randn(n_clips, n_frames, D, generator=gen, dtype=self.dtype)
        return (Z @ W.T + self.spec.tau_y * noise).numpy(), Z.numpy()

    def n_parameters(self) -> int:
        self.check_fitted()
        return int(self.W_.size + self.R_.size + self.b_.size)

    @classmethod
    def from_checkpoint(cls, spec, checkpoint: str | Path, *,
                        device: str = "cpu") -> SpikeSlabRNN:
        """A model with the parameters and curves of a training checkpoint of :meth:`fit`."""
        saved = load_checkpoint(checkpoint)
        state = saved.get("state") if isinstance(saved, dict) else None
        if not isinstance(state, dict) or "params" not in state:
            raise DataError(f"{checkpoint}: not an ssrnn training checkpoint of this version")
        model = cls(spec, device=device, seed=state.get("seed", 0))
        model.W_, model.R_, model.b_ = (state["params"][k].numpy() for k in "WRb")
        model.history_ = _records(saved["log"]["history"])
        return model
