"""Discrete-time tanh RNN classifying sequences (sequential MNIST: image rows as time steps).

``h_t = tanh(W h_{t-1} + U x_t + b)``, ``h_0 = 0``, logits ``V h_T + c`` read from the last
state; trained with Adam on cross-entropy (spec ``kind: rnn``). After the input ends the
network runs autonomously, ``h_{t+1} = tanh(W h_t + b)``: :meth:`SequenceRNN.autonomous_step`
and :meth:`SequenceRNN.autonomous_jacobian` give that map and its Jacobian for the Lyapunov
and limit-cycle analyses.
"""

from __future__ import annotations

import time
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from neurorec.core.errors import DataError
from neurorec.data.sequences import LabelledSequences
from neurorec.families.base import Estimator
from neurorec.families.rnn.spec import RNNSpec
from neurorec.fit.checkpoint import CHECKPOINT_NAME
from neurorec.fit.engine import Stepper, run_loop
from neurorec.fit.run import Run

VARIANTS = ("hidden", "cut", "extended")


def sequence_variant(x: np.ndarray, kind: str, n: int) -> np.ndarray:
    """A test variant of sequences ``x`` (batch, T, n_inputs).

    ``hidden``: the last ``n`` steps zeroed (length T); ``cut``: only the first ``n`` steps
    (length n); ``extended``: ``n`` blank steps appended (length T + n).
    """
    T = x.shape[1]
    if kind not in VARIANTS:
        raise DataError(f"variant: unknown kind {kind!r}; choose one of {list(VARIANTS)}")
    if kind == "extended":
        if n < 0:
            raise DataError(f"variant: extended needs n >= 0, got {n}")
        return np.concatenate([x, np.zeros((x.shape[0], n, x.shape[2]), x.dtype)], axis=1)
    if not 0 <= n <= T:
        raise DataError(f"variant: {kind} needs 0 <= n <= {T}, got {n}")
    if kind == "cut":
        return x[:, :n].copy()
    out = x.copy()
    out[:, T - n:] = 0
    return out


class TanhRNN(nn.Module):
    """The network itself; ``forward`` returns logits (batch, n_out) and states (batch, T, N)."""

    def __init__(self, n_inputs: int, n_units: int, n_outputs: int, init_gain: float,
                 generator: torch.Generator):
        super().__init__()
        bound_in = 1 / np.sqrt(n_inputs)
        self.W = nn.Parameter(torch.randn(n_units, n_units, generator=generator)
                              * init_gain / np.sqrt(n_units))
        self.U = nn.Parameter((torch.rand(n_units, n_inputs, generator=generator) * 2 - 1)
                              * bound_in)
        self.b = nn.Parameter(torch.zeros(n_units))
        self.V = nn.Parameter((torch.rand(n_outputs, n_units, generator=generator) * 2 - 1)
                              / np.sqrt(n_units))
        self.c = nn.Parameter(torch.zeros(n_outputs))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, T, _ = x.shape
        h = x.new_zeros(batch, self.W.shape[0])
        drive = x @ self.U.T + self.b  # (batch, T, N): input part of every step at once
        states = []
        for t in range(T):
            h = torch.tanh(h @ self.W.T + drive[:, t])
            states.append(h)
        if T == 0:  # a cut to zero rows: the readout sees h_0 = 0
            return h @ self.V.T + self.c, x.new_zeros(batch, 0, self.W.shape[0])
        hs = torch.stack(states, 1)
        return h @ self.V.T + self.c, hs


class _Pause(Exception):
    """Raised by an epoch past ``fit(epochs=...)``: the run stops there, resumable."""


class SequenceRNN(Estimator):
    """sklearn-like estimator: ``fit(x, y)`` returns self; learned ``net_`` (the network),
    ``init_state_`` (its parameters at initialisation) and ``history_`` (per epoch: loss,
    train accuracy, seconds); ``score`` is the classification accuracy.

    Args:
        spec: the ``kind: rnn`` spec.
        device: ``"cpu"`` or ``"cuda"``.
    """

    fitted_attribute: ClassVar[str] = "net_"

    def __init__(self, spec: RNNSpec, *, device: str = "cpu", seed: int = 0):
        self.spec = spec
        self.device = device
        self.seed = seed

    # ---------------------------------------------------------------- training
    def fit(self, x: np.ndarray | LabelledSequences, *, progress: bool = True,
            run: Run | None = None, y: np.ndarray | None = None,
            epochs: int | None = None) -> SequenceRNN:
        """Adam on cross-entropy through :func:`neurorec.fit.engine.run_loop` (one iteration
        an epoch of minibatches), drawing from the constructor's ``seed``; x (n, T, n_inputs)
        float with ``y`` (n,) int, or one :class:`LabelledSequences`.

        ``run`` (:class:`~neurorec.fit.run.Run`): with a checkpoint folder, ``checkpoint.pt``
        there is saved after every epoch, and ``run.resume`` continues from it (bitwise).
        ``epochs``: stop after this many epochs (default ``spec.fit.epochs``); a later call
        resuming the same run continues from there.
        """
        x, y = _labelled(x, y)
        if x.ndim != 3 or x.shape[2] != self.spec.n_inputs or len(x) != len(y):
            raise DataError(f"fit: x must be (n, T, {self.spec.n_inputs}) and y (n,), got "
                            f"{x.shape} and {np.shape(y)}")
        seed = self.seed
        fs = self.spec.fit
        stop_after = fs.epochs if epochs is None else epochs
        gen = torch.Generator().manual_seed(seed)
        net = TanhRNN(self.spec.n_inputs, self.spec.n_units, self.spec.n_outputs,
                      self.spec.init_gain, gen).to(self.device)
        init_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        opt = torch.optim.Adam(net.parameters(), lr=fs.lr)
        stepper = Stepper(net.parameters(), opt, grad_clip=fs.grad_clip, name="rnn fit")
        xt = torch.as_tensor(x, dtype=torch.float32, device=self.device)
        yt = torch.as_tensor(y, dtype=torch.long, device=self.device)
        history: list[dict] = []

        def epoch(i: int) -> dict[str, float]:
            if i > stop_after:
                raise _Pause
            order = torch.randperm(len(xt), generator=gen).to(self.device)
            total, correct = 0.0, 0
            t0 = time.perf_counter()
            for s in range(0, len(xt), fs.batch_size):
                idx = order[s:s + fs.batch_size]
                logits, _ = net(xt[idx])
                loss = stepper.step(nn.functional.cross_entropy(logits, yt[idx]),
                                    where=f"epoch {i}")
                total += loss * len(idx)
                correct += int((logits.argmax(1) == yt[idx]).sum())
            history.append({"epoch": i, "loss": total / len(xt),
                            "train_accuracy": correct / len(xt),
                            "seconds": time.perf_counter() - t0})
            return {"loss": history[-1]["loss"], "train_accuracy": correct / len(xt)}

        def get_state() -> dict:
            return {"net": net.state_dict(), "optimizer": opt.state_dict(),
                    "init_state": init_state, "history": history}

        def set_state(state: dict) -> None:
            net.load_state_dict(state["net"])
            opt.load_state_dict(state["optimizer"])
            init_state.update(state["init_state"])
            history[:] = state["history"]

        checkpoint = None if run is None else run.path(CHECKPOINT_NAME)
        resume = run is not None and run.resumes(checkpoint)
        try:
            run_loop(max(fs.epochs, stop_after), epoch, get_state=get_state,
                     set_state=set_state, torch_generator=gen, checkpoint=checkpoint,
                     resume=resume, progress=progress, desc="rnn", unit="epoch")
        except _Pause:
            pass
        self.net_, self.init_state_, self.history_ = net, init_state, history
        return self

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def forward(self, x: np.ndarray, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """Logits (n, n_out) and hidden states (n, T, N) for sequences x (n, T, n_inputs)."""
        self.check_fitted()
        if np.ndim(x) != 3 or np.shape(x)[2] != self.spec.n_inputs:
            raise DataError(f"x: expected (n, T, {self.spec.n_inputs}), got {np.shape(x)}")
        logits, states = [], []
        for i in range(0, len(x), batch_size):
            lo, hs = self.net_(torch.as_tensor(x[i:i + batch_size], dtype=torch.float32,
                                               device=self.device))
            logits.append(lo.cpu().numpy())
            states.append(hs.cpu().numpy())
        return np.concatenate(logits), np.concatenate(states)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n,) predicted class of each sequence."""
        return self.forward(x)[0].argmax(1)

    def score(self, x: np.ndarray | LabelledSequences, y: np.ndarray | None = None) -> float:
        """Classification accuracy in [0, 1] (higher is better)."""
        x, y = _labelled(x, y)
        return float((self.predict(x) == np.asarray(y)).mean())

    # ---------------------------------------------------------------- autonomous dynamics
    def recurrent_params(self, initial: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(W (N, N), b (N,)) float64 after training, or at initialisation (``initial``)."""
        return self._param("W", initial), self._param("b", initial)

    def input_weights(self, initial: bool = False) -> np.ndarray:
        """U (N, n_inputs) float64 after training, or at initialisation (``initial``): the
        autonomous map with an input x held is ``tanh(W h + U x + b)``."""
        return self._param("U", initial)

    def _param(self, name: str, initial: bool) -> np.ndarray:
        self.check_fitted()
        state = self.init_state_ if initial else self.net_.state_dict()
        return state[name].detach().cpu().double().numpy()


def _labelled(x: np.ndarray | LabelledSequences, y: np.ndarray | None
              ) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` from one :class:`LabelledSequences` or the two arrays."""
    if isinstance(x, LabelledSequences):
        if y is not None:
            raise TypeError("pass LabelledSequences alone, or x and y")
        return x.x, x.y
    if y is None:
        raise TypeError("y is required with an array x")
    return np.asarray(x), np.asarray(y)


def autonomous_step(W: np.ndarray, b: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``tanh(W h + b)`` for h (..., N): the network without input."""
    return np.tanh(h @ W.T + b)


def autonomous_jacobian(W: np.ndarray, b: np.ndarray, h: np.ndarray) -> np.ndarray:
    """(N, N) Jacobian of :func:`autonomous_step` at h (N,): ``diag(1 − tanh²(W h + b)) W``."""
    return (1 - np.tanh(W @ h + b) ** 2)[:, None] * W
