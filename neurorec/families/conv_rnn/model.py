"""Conv-encoder + RNN predicting movies ``delta_t`` frames ahead (spec ``kind: conv_rnn``).

Stage 1: a convolutional autoencoder (conv 3×3 + ReLU + max-pool (ceil) per stage, down to
``channels[-1]`` × 4 × 4 at 61 px; the mirror decoder upsamples (nearest) to the encoder's
sizes, conv 3×3 each) learns to reconstruct single frames (binary cross-entropy, ADADELTA).
Stage 2: with the autoencoder frozen, a fully connected tanh RNN reads the flattened code of
frame t and its linear + sigmoid readout, decoded, must give frame t + delta_t (binary
cross-entropy, ADADELTA, L1 on the RNN's weights). A fraction of the training movies is held
out for validation; each stage keeps the parameters of its best validation epoch.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from neurorec.core.errors import DataError
from neurorec.families.base import Estimator
from neurorec.families.conv_rnn.spec import ConvRNNSpec
from neurorec.fit.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from neurorec.fit.engine import Stepper, run_loop
from neurorec.fit.run import Run

bce = nn.functional.binary_cross_entropy_with_logits


def pooled_sizes(size: int, n_stages: int) -> list[int]:
    """Frame side after each ceil-mode 2×2 max-pool: 61 -> [31, 16, 8, 4]."""
    out = []
    for _ in range(n_stages):
        size = -(-size // 2)
        out.append(size)
    return out


class ConvAutoencoder(nn.Module):
    """Frames (batch, 1, S, S) -> code (batch, C, s, s) in [0, 1] -> logits (batch, 1, S, S)."""

    def __init__(self, size: int, channels: tuple[int, ...],
                 generator: torch.Generator | None = None):
        super().__init__()
        sizes = [size, *pooled_sizes(size, len(channels))]
        enc: list[nn.Module] = []
        prev = 1
        for i, c in enumerate(channels):
            last = i == len(channels) - 1
            # sigmoid on the code: bounded, like the RNN's sigmoid readout that replaces it
            enc += [nn.Conv2d(prev, c, 3, padding=1), nn.Sigmoid() if last else nn.ReLU(),
                    nn.MaxPool2d(2, ceil_mode=True)]
            prev = c
        dec: list[nn.Module] = []
        outs = [*reversed(channels[:-1]), 1]
        for i, c in enumerate(outs):
            dec += [nn.Upsample(size=(sizes[-2 - i],) * 2, mode="nearest"),
                    nn.Conv2d(prev, c, 3, padding=1)]
            if i < len(outs) - 1:
                dec.append(nn.ReLU())
            prev = c
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        self.code_shape = (channels[-1], sizes[-1], sizes[-1])
        if generator is not None:  # torch's default init draws from the global RNG: reseed
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    bound = 1 / np.sqrt(m.weight[0].numel())  # PyTorch's default range
                    with torch.no_grad():
                        m.weight.copy_((torch.rand(m.weight.shape, generator=generator) * 2 - 1)
                                       * bound)
                        m.bias.copy_((torch.rand(m.bias.shape, generator=generator) * 2 - 1)
                                     * bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class CodeRNN(nn.Module):
    """Codes (batch, T, D) -> hidden (batch, T, N) and predicted codes (batch, T, D) in [0, 1]."""

    def __init__(self, n_code: int, n_units: int, generator: torch.Generator):
        super().__init__()
        self.W = nn.Parameter(torch.randn(n_units, n_units, generator=generator)
                              / np.sqrt(n_units))
        self.U = nn.Parameter(torch.randn(n_units, n_code, generator=generator)
                              / np.sqrt(n_code))
        self.b = nn.Parameter(torch.zeros(n_units))
        self.V = nn.Parameter(torch.randn(n_code, n_units, generator=generator)
                              / np.sqrt(n_units))
        self.c = nn.Parameter(torch.zeros(n_code))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        drive = z @ self.U.T + self.b
        h = z.new_zeros(z.shape[0], self.W.shape[0])
        hs = []
        for t in range(z.shape[1]):
            h = torch.tanh(h @ self.W.T + drive[:, t])
            hs.append(h)
        hs = torch.stack(hs, 1)
        return hs, torch.sigmoid(hs @ self.V.T + self.c)

    def l1(self) -> torch.Tensor:
        return self.W.abs().sum() + self.U.abs().sum() + self.V.abs().sum()


def initial_modules(spec, size_px: int, generator: torch.Generator
                    ) -> tuple[ConvAutoencoder, CodeRNN]:
    """The untrained autoencoder for ``size_px`` × ``size_px`` frames and the RNN on its code,
    drawn from ``generator`` in that order (what :meth:`ConvRNN.fit` starts from; the same
    generator state gives the same weights). torch's default layer initialisation, which the
    generator's draws overwrite, runs on a fork of the global RNG: its state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        ae = ConvAutoencoder(size_px, spec.autoencoder.channels, generator)
    return ae, CodeRNN(int(np.prod(ae.code_shape)), spec.rnn.n_units, generator)


class _Stop(Exception):
    """Raised after an epoch when ``should_stop`` says so: the fit ends there, resumable."""


def _reopen(checkpoint: Path, n_iter: int) -> None:
    """Let a checkpoint of a run that ran to its last epoch continue to ``n_iter`` epochs
    (a spec with more epochs; run_loop takes every finished checkpoint as final)."""
    saved = load_checkpoint(checkpoint)
    if "state" not in saved:
        raise DataError(f"{checkpoint}: a checkpoint of an older neurorec (not resumable "
                        "here); delete it to train afresh")
    if saved.get("finished") and saved["log"]["reason"] == "n_iter" and (
            saved["iteration"] < n_iter):
        save_checkpoint(checkpoint, {**saved, "finished": False})


class ConvRNN(Estimator):
    """The two-stage model; ``fit(movies)`` returns self. Learned: ``autoencoder_``, ``rnn_``,
    ``history_`` (per stage and epoch: train / validation loss, seconds),
    ``validation_movies_``, ``stopped_early_``. ``score`` is the held-out reconstruction
    error of the predicted frames (mean binary cross-entropy, nats per pixel; lower is
    better)."""

    fitted_attribute: ClassVar[str] = "rnn_"

    def __init__(self, spec: ConvRNNSpec, *, device: str = "cpu", seed: int = 0):
        self.spec = spec
        self.device = device
        self.seed = seed

    # ---------------------------------------------------------------- training
    def fit(self, frames: np.ndarray, *, progress: bool = True, run: Run | None = None,
            should_stop: Callable[[], bool] | None = None) -> ConvRNN:
        """Train on movies ``frames`` (n_movies, T, S, S) in [0, 1].

        One :func:`neurorec.fit.engine.run_loop` over ``autoencoder.epochs + rnn.epochs``
        epochs: the first ones train stage 1, the rest stage 2 (the autoencoder frozen at its
        best validation epoch), drawing from the constructor's ``seed``. ``run``
        (:class:`~neurorec.fit.run.Run`): with a checkpoint folder, ``checkpoint.pt`` there
        is written after every epoch, and ``run.resume`` continues from it (bitwise).
        ``should_stop`` (asked after every epoch but the last) and ``run.budget_s`` (seconds
        since this call started) are wall-clock budgets: when one is spent the running stage
        keeps its best epoch so far and training ends (stopped in stage 1, the RNN keeps its
        initial weights), resumable from the checkpoint. ``stopped_early_`` says whether that
        happened; ``history_`` has the epochs that ran.
        """
        seed = self.seed
        started = time.perf_counter()
        if frames.ndim != 4 or frames.shape[2] != frames.shape[3]:
            raise DataError(f"fit: frames must be (n_movies, T, S, S), got {frames.shape}")
        dt = self.spec.rnn.delta_t
        if frames.shape[1] <= dt:
            raise DataError(f"fit: movies of {frames.shape[1]} frames are too short to predict "
                            f"{dt} frames ahead")
        ae_spec, rs = self.spec.autoencoder, self.spec.rnn
        gen = torch.Generator().manual_seed(seed)
        rng = np.random.default_rng(seed)
        n = len(frames)
        n_val = round(self.spec.validation_fraction * n)
        perm = rng.permutation(n)
        val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        ae, rnn = initial_modules(self.spec, frames.shape[2], gen)
        ae, rnn = ae.to(self.device), rnn.to(self.device)
        x = torch.as_tensor(frames, dtype=torch.float32, device=self.device)
        tr_frames = x[torch.as_tensor(train)].reshape(-1, 1, *x.shape[2:])
        va_frames = x[torch.as_tensor(val)].reshape(-1, 1, *x.shape[2:])
        opts = {"autoencoder": torch.optim.Adadelta(ae.parameters(), lr=ae_spec.lr),
                "rnn": torch.optim.Adadelta(rnn.parameters(), lr=rs.lr)}
        steppers = {"autoencoder": Stepper(ae.parameters(), opts["autoencoder"],
                                           name="conv_rnn fit (autoencoder)"),
                    "rnn": Stepper(rnn.parameters(), opts["rnn"], grad_clip=rs.grad_clip,
                                   name="conv_rnn fit (rnn)")}
        # the running stage's best validation epoch (its parameters and loss)
        state: dict = {"history": [], "best": None, "best_loss": np.inf}
        codes: list[torch.Tensor] = []  # stage 2's inputs, encoded once

        def ae_loss(frames_: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            return bce(ae(frames_[idx]), frames_[idx])

        def pred_loss(movies: np.ndarray, idx: torch.Tensor) -> torch.Tensor:
            if not codes:
                for p in ae.parameters():
                    p.requires_grad_(False)
                ae.eval()
                with torch.no_grad():
                    codes.append(torch.cat([ae.encoder(x[i].unsqueeze(1)).flatten(1)[None]
                                            for i in range(n)]))  # (n, T, D)
            sel = torch.as_tensor(movies, device=self.device)[idx]
            _, zhat = rnn(codes[0][sel])
            zhat = zhat[:, :-dt].reshape(-1, *ae.code_shape)
            target = x[sel][:, dt:].reshape(-1, 1, *x.shape[2:])
            return bce(ae.decoder(zhat), target)

        def keep_best(module: nn.Module) -> None:
            if state["best"] is not None:
                module.load_state_dict(state["best"])

        def epoch(i: int) -> dict[str, float]:
            t0 = time.perf_counter()
            if i <= ae_spec.epochs:
                stage, module = "autoencoder", ae
                loss = self._epoch(lambda idx: ae_loss(tr_frames, idx), len(tr_frames),
                                   ae_spec.batch_size, steppers[stage], gen, ae, i)
                vloss = self._eval(lambda idx: ae_loss(va_frames, idx), len(va_frames),
                                   256) if n_val else loss
            else:
                stage, module = "rnn", rnn
                loss = self._epoch(lambda idx: pred_loss(train, idx) + rs.l1 * rnn.l1(),
                                   len(train), rs.batch_size, steppers[stage], gen, rnn, i)
                vloss = (self._eval(lambda idx: pred_loss(val, idx), len(val), rs.batch_size)
                         if n_val else loss)
            stage_epoch = i if stage == "autoencoder" else i - ae_spec.epochs
            state["history"].append({"stage": stage, "epoch": stage_epoch, "loss": loss,
                                     "val_loss": vloss, "seconds": time.perf_counter() - t0})
            if vloss < state["best_loss"]:
                state["best"], state["best_loss"] = copy.deepcopy(module.state_dict()), vloss
            if i == ae_spec.epochs:  # stage 1 done: its best epoch is the frozen autoencoder
                keep_best(ae)
                state.update(best=None, best_loss=np.inf)
            return {"loss": loss, "val_loss": vloss}

        def get_state() -> dict:
            return {**state, "ae": ae.state_dict(), "rnn": rnn.state_dict(),
                    "optimizers": {k: o.state_dict() for k, o in opts.items()}}

        def set_state(saved: dict) -> None:
            ae.load_state_dict(saved["ae"])
            rnn.load_state_dict(saved["rnn"])
            for k, o in opts.items():
                o.load_state_dict(saved["optimizers"][k])
            state.update(history=saved["history"], best=saved["best"],
                         best_loss=saved["best_loss"])

        def ask(i: int, row: dict) -> None:
            if i < n_iter and ((should_stop is not None and should_stop()) or (
                    budget is not None and time.perf_counter() - started > budget)):
                raise _Stop

        n_iter = ae_spec.epochs + rs.epochs
        budget = None if run is None else run.budget_s
        checkpoint = None if run is None else run.path(CHECKPOINT_NAME)
        resume = run is not None and run.resumes(checkpoint)
        if resume:
            _reopen(checkpoint, n_iter)
        stop = False
        try:
            run_loop(n_iter, epoch, get_state=get_state, set_state=set_state,
                     torch_generator=gen, checkpoint=checkpoint, resume=resume,
                     progress=progress, desc="conv_rnn", unit="epoch", callback=ask)
        except _Stop:
            stop = True
        done = len(state["history"])
        keep_best(ae if done < ae_spec.epochs else rnn)
        for p in ae.parameters():
            p.requires_grad_(False)
        ae.eval()
        self.autoencoder_, self.rnn_, self.history_ = ae, rnn, state["history"]
        self.validation_movies_ = val
        self.stopped_early_ = stop
        return self

    def _epoch(self, loss_fn, n: int, batch_size: int, stepper: Stepper,
               gen: torch.Generator, module: nn.Module, i: int) -> float:
        module.train()
        order = torch.randperm(n, generator=gen).to(self.device)
        total = 0.0
        for s in range(0, n, batch_size):
            idx = order[s:s + batch_size]
            total += stepper.step(loss_fn(idx), where=f"epoch {i}") * len(idx)
        return total / n

    @torch.no_grad()
    def _eval(self, loss_fn, n: int, batch_size: int) -> float:
        total = 0.0
        for i in range(0, n, batch_size):
            idx = torch.arange(i, min(n, i + batch_size), device=self.device)
            total += loss_fn(idx).item() * len(idx)
        return total / n

    # ---------------------------------------------------------------- inference
    def n_parameters(self) -> dict[str, int]:
        """Trainable parameters of the autoencoder and of the RNN."""
        self.check_fitted()
        return {"autoencoder": sum(p.numel() for p in self.autoencoder_.parameters()),
                "rnn": sum(p.numel() for p in self.rnn_.parameters())}

    @torch.no_grad()
    def transform(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """Everything the analyses read, for movies (n, T, S, S):

        ``code`` (n, T, D) encoder representation; ``hidden`` (n, T, N) RNN states;
        ``reconstruction`` (n, T, S, S) autoencoder output; ``prediction`` (n, T, S, S) the
        frame predicted for t + delta_t from frames ≤ t.
        """
        self.check_fitted()
        ae, rnn = self.autoencoder_, self.rnn_
        size = [m for m in ae.decoder if isinstance(m, nn.Upsample)][-1].size[0]
        if np.ndim(frames) != 4 or np.shape(frames)[2:] != (size, size):
            raise DataError(f"frames: expected (n_movies, T, {size}, {size}), got "
                            f"{np.shape(frames)}")
        out: dict[str, list[np.ndarray]] = {k: [] for k in
                                            ("code", "hidden", "reconstruction", "prediction")}
        for movie in frames:
            x = torch.as_tensor(movie, dtype=torch.float32, device=self.device).unsqueeze(1)
            code = ae.encoder(x)
            hs, zhat = rnn(code.flatten(1).unsqueeze(0))
            out["code"].append(code.flatten(1).cpu().numpy())
            out["hidden"].append(hs[0].cpu().numpy())
            out["reconstruction"].append(torch.sigmoid(ae.decoder(code))[:, 0].cpu().numpy())
            pred = ae.decoder(zhat[0].reshape(-1, *ae.code_shape))
            out["prediction"].append(torch.sigmoid(pred)[:, 0].cpu().numpy())
        return {k: np.stack(v) for k, v in out.items()}


    def score(self, frames: np.ndarray) -> float:
        """Reconstruction error of the predicted frames of movies ``frames`` (n, T, S, S):
        mean binary cross-entropy (nats per pixel, :func:`frame_bce`) of every frame
        ``t + delta_t`` predicted from frames ``<= t``. Lower is better."""
        dt = self.spec.rnn.delta_t
        pred = self.transform(frames)["prediction"]
        return frame_bce(np.asarray(frames)[:, dt:], pred[:, :-dt])


def frame_bce(target: np.ndarray, predicted: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy (nats per pixel) of predicted intensities in (0, 1)."""
    p = np.clip(predicted, eps, 1 - eps)
    return float(-np.mean(target * np.log(p) + (1 - target) * np.log(1 - p)))
