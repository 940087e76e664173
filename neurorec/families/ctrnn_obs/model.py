"""Data-constrained continuous-time rate RNN (``kind: ctrnn_obs``), fitted to spike counts by
maximum likelihood with BPTT.

The network is a :class:`~neurorec.families.ctrnn.CTRNN` (noise-free Euler step, ``α = Δt/τ``)::

    r_s = (1-α) r_{s-1} + α f(W_rec r_{s-1} + W_in u_s + b),   r_{-1} = r0[trial]
    y_i(t) ~ Poisson(link(c_i · r_{s(t)} + d_i))   (or Bernoulli(sigmoid(...)))

``s(t)`` is the last Euler step inside bin ``t`` (``dt`` divides the bin); ``c = W_out``.
Input ``u_s``: the trial's condition (one-hot, or cos/sin of a grating direction), on between
``input.onset`` and ``input.offset``.

Initial state. ``condition``: one learned ``r0`` per condition. Trials of one condition then
get the same rates: the model is a dynamical PSTH model, and in co-smoothing its held-out
predictions use no spike at all. ``encoder``: ``r0 = r0[c] + E_r z`` and a constant extra
input ``E_u z`` (``encoder_dim`` channels), ``z`` the trial's held-in counts (log(1 + mean
count per bin), standardised over the training trials): a linear, amortised estimate of the
trial's state (gain, excitability) from held-in neurons only — the cheapest encoder that lets
single-trial variability of held-in units inform held-out predictions, with few parameters
(trials per session are 160-2000; a GRU encoder as in LFADS would need more). It reads a
whole trial of held-in spikes, so it is allowed only in co-smoothing mode (without a held-out
set it would read the very spikes it predicts).

Training: Adam on the mean NLL per bin and unit plus ``l2 · mean(W_rec²)``, minibatches of
trials, gradient clipping; with early stopping a stratified share of the training trials is
held back and the parameters with the best held-back NLL are kept. The loop is the shared
engine's (:mod:`neurorec.fit.engine`); given a :class:`~neurorec.fit.run.Run` with a
checkpoint folder (``neurorec fit`` passes ``OUT.partial/``) it checkpoints to its
``adam-<i>.pt`` every ``validate_every`` steps, and ``--resume`` continues bitwise on CPU.
"""

from __future__ import annotations

import copy
import math
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from neurorec.core.errors import DataError
from neurorec.core.metrics import bits_per_spike
from neurorec.core.rng import forked_global_rng
from neurorec.data.binning import split_trials
from neurorec.data.recording import BinnedTrials, TrialLayout, sample_layout
from neurorec.data.session import BinnedSession
from neurorec.data.session_inputs import CovariateScaler, segments, windows
from neurorec.families.base import Model
from neurorec.families.ctrnn.model import CTRNN, DTYPES
from neurorec.families.ctrnn.spec import CTRNNSpec
from neurorec.families.ctrnn_obs.spec import CTRNNObsSpec
from neurorec.fit import interrupt
from neurorec.fit.engine import Stepper, run_loop
from neurorec.fit.run import FitLog, Run

Tensor = torch.Tensor


def network_spec(spec: CTRNNObsSpec) -> CTRNNSpec:
    """The ``ctrnn`` spec of the network inside ``spec`` (noise-free, all weights trained)."""
    net = spec.network
    return CTRNNSpec(name=f"{spec.name}.network", n_units=net.n_units, tau=net.tau, dt=net.dt,
                     sigma=0.0, nonlinearity=net.nonlinearity, leak_angle=net.leak_angle,
                     train=("w_rec", "w_in", "w_out", "b"), zero_diagonal=net.zero_diagonal,
                     density=net.density, dale=net.dale, init=net.init)


def condition_inputs(spec: CTRNNObsSpec, condition_table: pd.DataFrame, n_bins: int,
                     first_edge: float) -> np.ndarray:
    """(n_conditions, n_bins · steps_per_bin, n_inputs) input per condition and Euler step.

    first_edge: time (s, from trial start) of the first bin's left edge; step ``s`` starts at
    ``first_edge + s · dt`` and the input is on where that lies in [onset, offset).
    """
    n_cond = len(condition_table)
    inp = spec.input
    if inp.encoding == "onehot":
        code = np.eye(n_cond)
    else:
        if inp.column not in condition_table.columns:
            raise DataError(f"{spec.name}: input.column: '{inp.column}' is not a condition "
                            f"column (have: {', '.join(map(str, condition_table.columns))})")
        theta = np.deg2rad(condition_table[inp.column].to_numpy(dtype=float))
        code = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    n_steps = n_bins * spec.steps_per_bin
    t = first_edge + np.arange(n_steps) * spec.network.dt
    on = t >= inp.onset - 1e-9
    if inp.offset is not None:
        on &= t < inp.offset - 1e-9
    return code[:, None, :] * on[None, :, None].astype(float)


class ObservedCTRNN(torch.nn.Module):
    """The CTRNN, its readout offsets ``d``, initial states and (optional) encoder."""

    def __init__(self, spec: CTRNNObsSpec, n_inputs: int, n_recorded: int, n_conditions: int,
                 n_encoded: int, seed: int, device: str | torch.device, dtype: torch.dtype):
        super().__init__()
        self.spec = spec
        self.steps_per_bin = spec.steps_per_bin
        self.encoded = spec.initial_state == "encoder"
        k = spec.encoder_dim if self.encoded else 0
        self.net = CTRNN(network_spec(spec), n_inputs + k, n_recorded, seed=seed,
                         device=device, dtype=dtype)
        n = spec.network.n_units
        gen = torch.Generator().manual_seed(seed + 7)
        kw = {"dtype": dtype, "device": device}
        self.d = torch.nn.Parameter(torch.zeros(n_recorded, **kw))
        self.r0 = torch.nn.Parameter(torch.full((n_conditions, n), spec.network.init.r0, **kw))
        if self.encoded:
            scale = 0.1 / math.sqrt(max(n_encoded, 1))
            self.enc_r0 = torch.nn.Parameter(
                (torch.randn(n, n_encoded, generator=gen, dtype=torch.float64) * scale).to(**kw))
            self.enc_in = torch.nn.Parameter(
                (torch.randn(k, n_encoded, generator=gen, dtype=torch.float64) * scale).to(**kw))

    def forward(self, inputs: Tensor, condition: Tensor, z: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
        """inputs (B, S, I) per Euler step; condition (B,); z (B, n_encoded) or None.
        Returns the drive (B, T, n_recorded) per bin and the network rates (B, S, N)."""
        r0 = self.r0[condition]
        if self.encoded:
            r0 = r0 + z @ self.enc_r0.T
            extra = (z @ self.enc_in.T)[:, None, :].expand(-1, inputs.shape[1], -1)
            inputs = torch.cat([inputs, extra], dim=-1)
        rates, outputs = self.net(inputs, r0=r0)
        k = self.steps_per_bin
        return outputs[:, k - 1::k] + self.d, rates


class CTRNNObs(Model):
    """Data-constrained ct-RNN fitted by maximum likelihood (see the module docstring).

    Args:
        spec: validated ``ctrnn_obs`` spec.
        device: ``"cpu"`` or ``"cuda"``.
        seed: seeds the weights, the minibatches and the early-stopping split.

    Learned attributes: ``params_`` (numpy: ``w_rec``, ``w_in``, ``w_out`` (= c), ``b``, ``d``,
    ``r0``; encoder: ``enc_r0``, ``enc_in``, ``enc_mean``, ``enc_std``), ``module_`` (the
    fitted torch module), ``fit_report_``, ``n_bins_``, ``n_units_``, ``n_conditions_``,
    ``bin_size_``, ``unit_order_``, ``condition_table_``, ``first_edge_``.
    ``heldout``: None, or the (n_units,) bool mask of co-smoothing's held-out units.
    """

    fitted_attribute: ClassVar[str] = "module_"

    def __init__(self, spec: CTRNNObsSpec, *, device: str = "cpu", seed: int = 0,
                 heldout: np.ndarray | None = None):
        self.spec = spec
        self.device = torch.device(device)
        self.seed = seed
        self.heldout = heldout

    # the constructor stores settings only; what follows from them is derived on use
    # (``obs`` and ``observation_name`` come from Model)
    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.spec.training.dtype]

    # ---------------------------------------------------------------- data → tensors
    def _heldin(self, n_units: int) -> np.ndarray:
        return np.ones(n_units, bool) if self.heldout is None else ~np.asarray(self.heldout, bool)

    def _features(self, counts: np.ndarray) -> np.ndarray | None:
        """(n_trials, n_heldin) raw encoder features: log(1 + mean count per bin)."""
        if self.spec.initial_state != "encoder":
            return None
        return np.log1p(counts[..., self._heldin(counts.shape[2])].mean(axis=1))

    def _tensors(self, data: BinnedTrials) -> dict[str, Tensor]:
        t = {"y": self.obs.prepare(torch.as_tensor(data.counts, dtype=self.dtype,
                                                   device=self.device)),
             "condition": torch.as_tensor(data.condition, dtype=torch.long, device=self.device)}
        feats = self._features(data.counts)
        if feats is not None:
            z = (feats - self.enc_mean_) / self.enc_std_
            t["z"] = torch.as_tensor(z, dtype=self.dtype, device=self.device)
        return t

    def _drive(self, module: ObservedCTRNN, t: dict[str, Tensor], index: Tensor | None = None
               ) -> Tensor:
        cond = t["condition"] if index is None else t["condition"][index]
        z = t.get("z")
        if z is not None and index is not None:
            z = z[index]
        if "inputs" in t:  # session windows: each its own input (the covariates)
            inputs = t["inputs"] if index is None else t["inputs"][index]
        else:
            inputs = self.inputs_[cond]
        drive, _ = module(inputs, cond, z)
        return drive

    # ---------------------------------------------------------------- fit
    def fit(self, data: BinnedTrials | BinnedSession, *, progress: bool = True,
            run: Run | None = None) -> CTRNNObs:
        """Fit on all trials of ``data`` (pass training trials only), or on the ``train``
        bins of a session (covariates as input channels: :meth:`_fit_session`).

        What draws from torch's global generator here (torch's default layer initialisation)
        draws from a fork of it seeded with ``seed``; the caller's state is given back."""
        with forked_global_rng(self.seed):
            if isinstance(data, BinnedSession):
                return self._fit_session(data, progress, run)
            return self._fit(data, progress, run)

    def _fit(self, data: BinnedTrials, progress: bool, run: Run | None) -> CTRNNObs:
        spec, tr = self.spec, self.spec.training
        if data.counts.ndim != 3 or data.counts.shape[0] < 2:
            raise DataError(f"{data.source}: counts: expected ≥ 2 trials × bins × units, "
                            f"got shape {data.counts.shape}")
        n_trials, n_bins, n_units = data.counts.shape
        if self.heldout is not None and len(self.heldout) != n_units:
            raise DataError(f"{data.source}: units: held-out mask has {len(self.heldout)} "
                            f"entries, the data {n_units} units")
        if spec.initial_state == "encoder" and self.heldout is None:
            raise DataError(f"{spec.name}: initial_state: 'encoder' reads the trial's held-in "
                            "spikes, so it needs --heldout-neurons (without a held-out set it "
                            "would read the spikes it predicts); use initial_state: condition")
        self.n_bins_, self.n_units_ = n_bins, n_units
        self.n_conditions_, self.bin_size_ = data.n_conditions, data.bin_size
        self.unit_order_ = np.arange(n_units)
        self.condition_table_ = data.condition_table
        self.first_edge_ = float(data.time[0] - data.bin_size / 2)
        self.inputs_ = torch.as_tensor(
            condition_inputs(spec, data.condition_table, n_bins, self.first_edge_),
            dtype=self.dtype, device=self.device)
        feats = self._features(data.counts)
        if feats is not None:
            self.enc_mean_ = feats.mean(axis=0)
            self.enc_std_ = np.clip(feats.std(axis=0), 1e-3, None)
        module = ObservedCTRNN(spec, self.inputs_.shape[2], n_units, data.n_conditions,
                               0 if feats is None else feats.shape[1], self.seed,
                               self.device, self.dtype)
        self._init_offsets(module, data.counts)

        is_val = np.zeros(n_trials, bool)
        if tr.early_stopping:
            is_val = split_trials(pd.DataFrame(index=range(n_trials)), data.condition,
                                  tr.validation_fraction, self.seed)
            if is_val.all() or not is_val.any():
                is_val[:] = False
        return self._train_and_keep(module, self._tensors(data), is_val, progress, run)

    def _train_and_keep(self, module: ObservedCTRNN, t_all: dict[str, Tensor],
                        is_val: np.ndarray, progress: bool, run: Run | None) -> CTRNNObs:
        """Train ``module`` on the trials (windows) of ``t_all`` not in ``is_val``, keep the
        best held-back state, and set ``module_``, ``fit_report_``, ``params_``."""
        tr = self.spec.training
        train_idx = torch.as_tensor(np.flatnonzero(~is_val), device=self.device)
        val_idx = torch.as_tensor(np.flatnonzero(is_val), device=self.device)
        log, best = self._train(module, t_all, train_idx, val_idx, progress, run)
        if best is not None:  # the parameters with the best held-back NLL
            module.load_state_dict(best["state"])
        module.eval()
        with torch.no_grad():
            final = float(self._objective(module, t_all, train_idx))
        val = dict(log.validation)
        history = [{"iter": row["iteration"], "objective": row["loss"]}
                   | ({"validation_nll": val[row["iteration"]]} if row["iteration"] in val else {})
                   for row in log.history
                   if row["iteration"] % tr.validate_every == 0 or row is log.history[-1]]
        stopped = log.reason == "early_stopping"
        self.module_ = module
        self.fit_report_ = FitLog(
            converged=stopped, n_iter=len(log.history), n_evals=len(log.history),
            reason=(f"early stopping (best held-back NLL at step {log.best_iteration})"
                    if stopped else f"{tr.n_steps} steps"),
            final_objective=final,
            max_abs_grad=log.history[-1]["max_abs_grad"] if log.history else 0.0,
            best_validation_nll=best["value"] if best is not None else None,
            fit_time_s=log.fit_time_s, history=history, optimizer="Adam")
        self.params_ = self._numpy_params()
        return self

    def _train(self, module: ObservedCTRNN, t_all: dict[str, Tensor], train_idx: Tensor,
               val_idx: Tensor, progress: bool, run: Run | None
               ) -> tuple[FitLog, dict | None]:
        """Adam through the engine: minibatch steps, held-back NLL every ``validate_every``
        steps with early stopping, checkpoints (in ``run``'s folder, as ``neurorec fit``
        runs it) and bitwise resume.

        Returns the loop's log and the best held-back state (None without held-back trials).
        """
        spec, tr = self.spec, self.spec.training
        params = [p for p in module.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=tr.learning_rate)
        stepper = Stepper(params, opt, grad_clip=tr.grad_clip, name=spec.name)
        gen = torch.Generator(device="cpu").manual_seed(self.seed + 1)
        best: dict = {"value": math.inf, "state": None}
        path, every, fingerprint = None, tr.validate_every, {}
        if run is not None and run.checkpoints:
            path = run.next_file("adam")
            every *= run.every
            fingerprint = dict(run.fingerprint)

        def body(step: int) -> dict[str, float]:
            pick = torch.randperm(len(train_idx), generator=gen)[:tr.batch_size]
            loss = self._objective(module, t_all, train_idx[pick.to(self.device)])
            value = stepper.step(loss, where=f"training step {step}")
            # the last step's (clipped) gradients, kept in the loop's log so that a resumed
            # run reports what the uninterrupted one does
            grads = [p.grad.abs().max() for p in module.parameters() if p.grad is not None]
            return {"loss": value, "max_abs_grad": float(max(grads)) if grads else 0.0}

        def validate() -> float:
            with torch.no_grad():
                value = float(self.obs.nll(t_all["y"][val_idx],
                                           self._drive(module, t_all, val_idx)).sum())
            if value < best["value"]:
                best.update(value=value, state=copy.deepcopy(module.state_dict()))
            return value

        def get_state() -> dict:
            return {"module": module.state_dict(), "optimizer": opt.state_dict(),
                    "best": best, "fingerprint": fingerprint}

        def set_state(state: dict) -> None:
            if state["fingerprint"] != fingerprint:
                differ = sorted(k for k in {*state["fingerprint"], *fingerprint}
                                if state["fingerprint"].get(k) != fingerprint.get(k))
                raise DataError(f"{path}: checkpoint of another run ({', '.join(differ)} "
                                "differ); resume with the same spec, data, seed and device, "
                                "or pass --overwrite to start over")
            module.load_state_dict(state["module"])
            opt.load_state_dict(state["optimizer"])
            best.update(copy.deepcopy(state["best"]))

        def stop_if_asked(step: int, row: dict[str, float]) -> None:
            if step % every == 0 or step == tr.n_steps:  # a checkpoint was just written
                interrupt.raise_if_requested(
                    f"at step {step}" + (f"; checkpoint saved in {path.parent}; run the same "
                                         "command with --resume to continue"
                                         if path is not None else " (no checkpointing)"))

        with interrupt.deferring():
            log = run_loop(tr.n_steps, body, get_state=get_state, set_state=set_state,
                           torch_generator=gen, checkpoint=path, checkpoint_every=every,
                           resume=run is not None and run.resumes(path),
                           validate=validate if len(val_idx) else None,
                           validate_every=tr.validate_every,
                           patience=tr.patience if len(val_idx) else None,
                           progress=progress, desc=f"fit {spec.name}", unit="step",
                           callback=stop_if_asked)
        return log, best if len(val_idx) else None

    def _objective(self, module: ObservedCTRNN, t: dict[str, Tensor], index: Tensor) -> Tensor:
        nll = self.obs.nll(t["y"][index], self._drive(module, t, index)).mean()
        l2 = self.spec.training.l2
        return nll + l2 * (module.net.w_rec ** 2).mean() if l2 else nll

    def _init_offsets(self, module: ObservedCTRNN, counts: np.ndarray) -> None:
        """``d`` at the inverse link of each unit's mean count (readout starts near the mean)."""
        y = self.obs.prepare(torch.as_tensor(counts, dtype=torch.float64))
        mean = y.mean(dim=(0, 1)).clamp(1e-3, 1 - 1e-3 if self.observation_name == "bernoulli"
                                        else None)
        if self.observation_name == "bernoulli":
            d = torch.log(mean / (1 - mean))
        elif self.spec.link == "exp":
            d = torch.log(mean)
        else:
            d = torch.log(torch.expm1(mean))
        with torch.no_grad():
            module.d.copy_(d.to(module.d))

    def _numpy_params(self) -> dict[str, np.ndarray]:
        m = self.module_
        out = dict(m.net.weights())
        with torch.no_grad():
            out["d"] = m.d.double().cpu().numpy()
            out["r0"] = m.r0.double().cpu().numpy()
            if m.encoded:
                out["enc_r0"] = m.enc_r0.double().cpu().numpy()
                out["enc_in"] = m.enc_in.double().cpu().numpy()
                out["enc_mean"], out["enc_std"] = self.enc_mean_, self.enc_std_
        return out

    # ---------------------------------------------------------------- sessions
    def _fit_session(self, session: BinnedSession, progress: bool,
                     run: Run | None = None) -> CTRNNObs:
        """Fit on the ``train`` bins of ``session``: its contiguous stretches cut into windows
        of ``training.window`` bins, each a trial from the one learned initial state, the
        covariates (standardised, held over each bin's Euler steps) as the input channels."""
        spec, tr = self.spec, self.spec.training
        if spec.initial_state == "encoder":
            raise DataError(f"{spec.name}: initial_state: 'encoder' reads whole trials; a "
                            "session is fitted with initial_state: condition")
        train = session.select(session.mask("train"))
        if self.heldout is not None and len(self.heldout) != train.n_units:
            raise DataError(f"{session.source}: units: held-out mask has {len(self.heldout)} "
                            f"entries, the data {train.n_units} units")
        self.inputs_scaler_ = CovariateScaler.of(train)
        cut = windows(train, tr.window)
        z = self.inputs_scaler_(train)
        counts = np.stack([train.counts[a:b] for a, b in cut])
        K, W, N = counts.shape
        self.n_bins_, self.n_units_, self.n_conditions_ = W, N, 1
        self.bin_size_, self.unit_order_ = session.bin_size, np.arange(N)
        self.condition_table_ = pd.DataFrame(index=range(1))
        self.first_edge_ = 0.0
        P = z.shape[1]
        # sampling without a session: the covariates at their training mean (z = 0)
        self.inputs_ = torch.zeros((1, W * spec.steps_per_bin, P), dtype=self.dtype,
                                   device=self.device)
        module = ObservedCTRNN(spec, P, N, 1, 0, self.seed, self.device, self.dtype)
        self._init_offsets(module, counts)
        is_val = np.zeros(K, bool)
        if tr.early_stopping:
            is_val = split_trials(pd.DataFrame(index=range(K)), np.zeros(K, int),
                                  tr.validation_fraction, self.seed)
            if is_val.all() or not is_val.any():
                is_val[:] = False
        inputs = np.stack([np.repeat(z[a:b], spec.steps_per_bin, axis=0) for a, b in cut])
        t_all = {"y": self.obs.prepare(torch.as_tensor(counts, dtype=self.dtype,
                                                       device=self.device)),
                 "condition": torch.zeros(K, dtype=torch.long, device=self.device),
                 "inputs": torch.as_tensor(inputs, dtype=self.dtype, device=self.device)}
        return self._train_and_keep(module, t_all, is_val, progress, run)

    def _session_rates(self, session: BinnedSession) -> np.ndarray:
        """(n_bins, n_units) expected counts of every bin: the network run along each
        contiguous stretch from its initial state, driven by the covariates."""
        self._check_session(session)
        z = self.inputs_scaler_(session)
        out = np.empty(session.counts.shape)
        cond = torch.zeros(1, dtype=torch.long, device=self.device)
        with torch.no_grad():
            for a, b in segments(session):
                u = torch.as_tensor(np.repeat(z[a:b], self.spec.steps_per_bin, axis=0)[None],
                                    dtype=self.dtype, device=self.device)
                drive, _ = self.module_(u, cond)
                out[a:b] = self.obs.mean(drive[0]).double().cpu().numpy()
        return out

    def score(self, data: BinnedTrials | BinnedSession, split: str = "test") -> float:
        """Bits per spike (NLB); of a session, its ``split`` bins."""
        if not isinstance(data, BinnedSession):
            return super().score(data)
        keep = data.mask(split)
        return bits_per_spike(data.counts[keep][None], self._session_rates(data)[keep][None],
                              self.observation_name)

    # ---------------------------------------------------------------- Model contract
    def predict_rate(self, data: BinnedTrials | BinnedSession) -> np.ndarray:
        """(n_trials, n_bins, n_units) expected counts; in co-smoothing mode from the held-in
        units' spikes (encoder) and the condition only. Of a session: (n_bins, n_units)."""
        if isinstance(data, BinnedSession):
            return self._session_rates(data)
        self._check_shape(data)
        with torch.no_grad():
            drive = self._drive(self.module_, self._tensors(data))
            return self.obs.mean(drive).double().cpu().numpy()

    def network_rates(self, data: BinnedTrials) -> np.ndarray:
        """(n_trials, n_bins · steps_per_bin, N) network rates r_s on ``data``'s trials."""
        self._check_shape(data)
        t = self._tensors(data)
        with torch.no_grad():
            _, rates = self.module_(self.inputs_[t["condition"]], t["condition"], t.get("z"))
        return rates.double().cpu().numpy()

    def condition_rates(self) -> np.ndarray:
        """(n_conditions, n_bins · steps_per_bin, N) network rates per condition for a typical
        trial (encoder input at the training mean, z = 0)."""
        self.check_fitted()
        cond = torch.arange(self.n_conditions_, device=self.device)
        z = None
        if self.module_.encoded:
            z = torch.zeros(self.n_conditions_, self.module_.enc_r0.shape[1], dtype=self.dtype,
                            device=self.device)
        with torch.no_grad():
            _, rates = self.module_(self.inputs_[cond], cond, z)
        return rates.double().cpu().numpy()

    def sample(self, n: int, *, seed: int,
               like: BinnedTrials | TrialLayout | None = None) -> np.ndarray:
        """(n, n_bins, n_units) counts drawn from the observation model around the
        deterministic network rates (encoder input at the training mean, z = 0); conditions
        and bins per trial (at most the fitted length) from ``like``'s first ``n`` trials, or
        conditions ``0, 1, …`` in turn and ``n_bins_`` bins
        (:func:`~neurorec.data.recording.sample_layout`)."""
        self.check_fitted()
        condition, n_bins, _ = sample_layout(n, like, self.n_conditions_, self.n_bins_,
                                             self.spec.name)
        if n_bins > self.n_bins_:
            raise DataError(f"{self.spec.name}: n_bins: the input is defined for "
                            f"{self.n_bins_} bins, got {n_bins}")
        cond = torch.as_tensor(np.asarray(condition), dtype=torch.long, device=self.device)
        z = None
        if self.module_.encoded:
            z = torch.zeros(len(cond), self.module_.enc_r0.shape[1], dtype=self.dtype,
                            device=self.device)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        with torch.no_grad():
            drive, _ = self.module_(self.inputs_[cond], cond, z)
            return self.obs.sample(drive[:, :n_bins], gen).cpu().numpy()

    def n_parameters(self) -> int:
        self.check_fitted()
        m = self.module_
        n = int(m.net.mask.sum().item())  # W_rec entries present
        n += sum(p.numel() for name, p in m.named_parameters()
                 if p.requires_grad and name != "net.w_rec_raw")
        return int(n)

    def stimulus_drive(self) -> None:
        return None

    def history_filters(self) -> None:
        return None

    def coupling_filters(self) -> None:
        return None

    def step_map(self, condition: int | None = None):
        """The noise-free Euler map ``F(r)`` (float64, CPU) under condition ``condition``'s
        input while it is on (None: input off), for the fixed-point tools."""
        from neurorec.analysis.fixed_points import ctrnn_step_map

        self.check_fitted()
        u = np.zeros(self.module_.net.n_inputs)
        if condition is not None:
            full = condition_inputs(self.spec, self.condition_table_, self.n_bins_,
                                    self.first_edge_)[condition]
            on = np.abs(full).sum(axis=1) > 0
            u[: full.shape[1]] = full[on][0] if on.any() else 0.0
        return ctrnn_step_map(self.module_.net, u)
