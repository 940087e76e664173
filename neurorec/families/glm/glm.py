"""Poisson / Bernoulli GLM of binned spike trains (Pillow et al. 2008).

For unit ``i`` in bin ``t`` of a trial of condition ``c``::

    drive_i(t) = Σ_k β[i, c, k] S_k(t)                     stimulus (raised cosines over the trial)
               + Σ_k h[i, k]    Σ_l H_k(l) y_i(t - l)      spike history
               + Σ_j Σ_k J[i, j, k] Σ_l H_k(l) y_j(t - l)  coupling (j ≠ i)
               + Σ_c Σ_k κ[i, c, k] Σ_l K_k(l) s_c(t - l)  stimulus filter on a time series
             + Σ_{j before i} A[i, j] y_j(t)              correlations inside the bin
    y_i(t) ~ Poisson(link(drive_i(t))), Bernoulli(sigmoid(drive_i(t))) or N(drive_i(t), σ_i²)

With ``correlated.enabled`` units are predicted in sequence (``unit_order_``) and ``A`` is
strictly lower triangular in that order: ``p(y_t) = Π_i p(y_i(t) | y_{before i}(t), past)`` is
the exact likelihood, and sampling goes unit by unit inside each bin.

There is no separate intercept while the stimulus drive is on: the per-condition basis
spans the baseline, and a second constant would make the design rank-deficient. The history
starts empty at every trial start. Subclasses add drive terms through ``_extra_*`` hooks.

Co-smoothing mode (``model.heldout`` a (n_units,) bool mask, set before ``fit``): held-out
units are outputs only. Every predictor (history, coupling, in-bin ``A``, the R-GLM's
``W0 y``) reads the counts through :meth:`GLM._inputs`, which zeroes the held-out columns, so
their spikes enter no unit's drive; their own history and the weights from them are fixed
at zero. With ``heldout`` None (the default) nothing changes.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from neurorec.core.bases import raised_cosine_linear, raised_cosine_log
from neurorec.core.errors import DataError, DivergenceError, SpecError
from neurorec.core.observations import make_observation
from neurorec.data.binning import split_trials
from neurorec.data.recording import BinnedTrials
from neurorec.families.base import Model
from neurorec.families.glm.spec import GLMSpec
from neurorec.fit.lbfgs import FitReport, fit_lbfgs
from neurorec.fit.newton import StimulusBlock, fit_batched_glm

Tensor = torch.Tensor
MAX_RATE_HZ = 10_000.0  # beyond any neuron: a sample this high means runaway excitation
_L1_SMOOTHING = 1e-6  # |w| ≈ sqrt(w² + ε²) - ε keeps the objective smooth for L-BFGS


def history_features(y: Tensor, basis: Tensor, first_lag: int = 1) -> Tensor:
    """Past values filtered by a lag basis.

    Args:
        y: (n_trials, n_bins, n_channels) counts (or a stimulus series).
        basis: (n_lags, n_basis); row ``l`` weighs lag ``l + first_lag``.
        first_lag: 1 for spike history (the current bin is what is predicted), 0 for a
            stimulus filter (the stimulus in the current bin acts at once).
    Returns:
        (n_trials, n_bins, n_channels, n_basis):
        ``out[b, t, j, k] = Σ_l basis[l, k] y[b, t - l - first_lag, j]``, zeros before the
        trial start.
    """
    n_lags = basis.shape[0]
    n_trials, n_bins, n_units = y.shape
    padded = torch.cat([y.new_zeros(n_trials, n_lags, n_units), y], dim=1)
    out = y.new_zeros(n_trials, n_bins, n_units, basis.shape[1])
    for row in range(n_lags):
        lag = row + first_lag
        past = padded[:, n_lags - lag: n_lags - lag + n_bins]
        out += past[..., None] * basis[row]
    return out


class GLM(Model):
    """GLM with stimulus drive, spike history and coupling, fitted by penalised ML (L-BFGS).

    Args:
        spec: validated model spec.
        device: ``"cpu"`` or ``"cuda"``.
        seed: seeds initialisation and the early-stopping split.

    Learned attributes: ``params_`` (dict of numpy arrays), ``fit_report_``, ``n_bins_``,
    ``n_units_``, ``n_conditions_``, ``bin_size_``, ``unit_order_`` (units in prediction order).
    ``heldout``: None, or the (n_units,) bool mask of co-smoothing's held-out units.
    """

    heldout: np.ndarray | None = None
    saved_options = ("heldout",)
    #: parameters the batched Newton path starts from (e.g. the neighbouring strength on a CV
    #: path); None: the default start. L-BFGS fits start as usual.
    warm_start_params: dict[str, np.ndarray] | None = None

    def __init__(self, spec: GLMSpec, device: str = "cpu", seed: int = 0):
        self.spec = spec
        self.device = torch.device(device)
        self.seed = seed
        self.obs = make_observation(spec.observation, spec.link)
        self.observation_name = spec.observation

    # ---------------------------------------------------------------- bases and design
    @property
    def dtype(self) -> torch.dtype:
        return torch.float64 if self.spec.fit.dtype == "float64" else torch.float32

    def _tensor(self, array: np.ndarray) -> Tensor:
        return torch.as_tensor(np.ascontiguousarray(array), dtype=self.dtype, device=self.device)

    def stimulus_basis(self, n_bins: int) -> np.ndarray:
        """(n_bins, n_basis) raised cosines tiling the trial."""
        return raised_cosine_linear(n_bins, self.spec.stimulus.n_basis)

    def history_basis(self, bin_size: float) -> np.ndarray:
        """(n_lags, n_basis) log-stretched raised cosines over the history window."""
        return self._lag_basis("history", bin_size)

    def coupling_basis(self, bin_size: float) -> np.ndarray:
        """(n_lags, n_basis) log-stretched raised cosines over the coupling window."""
        return self._lag_basis("coupling", bin_size)

    def stimulus_filter_basis(self, bin_size: float) -> np.ndarray:
        """(n_lags, n_basis) log-stretched raised cosines over lags 0 .. duration."""
        return self._lag_basis("stimulus_filter", bin_size)

    def _lag_basis(self, which: str, bin_size: float) -> np.ndarray:
        filt = getattr(self.spec, which)
        n_lags = max(1, round(filt.duration / bin_size))
        if filt.n_basis > n_lags:
            raise DataError(f"{self.spec.name}: {which}.n_basis: {filt.n_basis} basis functions "
                            f"need ≥ {filt.n_basis} lags, but {which}.duration "
                            f"{filt.duration * 1e3:g} ms is {n_lags} bins of "
                            f"{bin_size * 1e3:g} ms (lengthen it or use fewer functions)")
        return raised_cosine_log(n_lags, filt.n_basis)

    def _heldin(self) -> Tensor | None:
        """(n_units,) 1 for units whose spikes may predict, 0 for held-out; None: all may."""
        if self.heldout is None:
            return None
        return self._tensor((~np.asarray(self.heldout, dtype=bool)).astype(float))

    def _inputs(self, y: Tensor) -> Tensor:
        """The counts as predictors see them: held-out units' columns zeroed."""
        keep = self._heldin()
        return y if keep is None else y * keep

    def _design(self, data: BinnedTrials) -> dict[str, Tensor]:
        y = self.obs.prepare(self._tensor(data.counts))
        if self.heldout is not None and len(self.heldout) != y.shape[2]:
            raise DataError(f"{data.source}: units: held-out mask has {len(self.heldout)} "
                            f"entries, the data {y.shape[2]} units")
        design = {"y": y, "condition": torch.as_tensor(data.condition, device=self.device)}
        x = self._inputs(y)
        if self.spec.stimulus.enabled:
            design["S"] = self._tensor(self.stimulus_basis(y.shape[1]))
        if self.spec.history.enabled:
            design["H"] = history_features(x, self._tensor(self.history_basis(data.bin_size)))
        if self.spec.coupling.enabled:
            design["C"] = history_features(x, self._tensor(self.coupling_basis(data.bin_size)))
        if self.spec.stimulus_filter.enabled:
            design["X"] = self._stimulus_features(data.stimulus, data.bin_size, data.source)
        return design

    def _stimulus_features(self, stimulus: np.ndarray | None, bin_size: float,
                           source: str) -> Tensor:
        """(n_trials, n_bins, n_channels, n_basis) stimulus series filtered by the lag basis."""
        if stimulus is None:
            raise DataError(f"{source}: stimulus: stimulus_filter.enabled needs a stimulus time "
                            "series (an NWB stimulus TimeSeries); this data has none")
        basis = self._tensor(self.stimulus_filter_basis(bin_size))
        return history_features(self._tensor(stimulus), basis, first_lag=0)

    # ---------------------------------------------------------------- parameters
    def _init_params(self, data: BinnedTrials, gen: torch.Generator) -> dict[str, Tensor]:
        n_units, n_cond = data.counts.shape[2], data.n_conditions
        mean = np.asarray(self.obs.prepare(torch.as_tensor(data.counts, dtype=torch.float64))
                          .mean(dim=(0, 1)))
        params: dict[str, Tensor] = {}
        if self.observation_name == "gaussian":
            base = mean
            std = data.counts.reshape(-1, n_units).std(axis=0)
            params["log_sigma"] = self._tensor(np.log(np.clip(std, 1e-3, None)))
        else:
            mean = np.clip(mean, 1e-3, 1 - 1e-3 if self.observation_name == "bernoulli" else None)
            base = np.log(mean) if self.observation_name == "poisson" else np.log(mean / (1 - mean))
            if self.spec.link == "softplus":
                base = np.log(np.expm1(mean))
        if self.spec.stimulus.enabled:
            basis = self.stimulus_basis(data.counts.shape[1])
            ones_coef = np.linalg.lstsq(basis, np.ones(len(basis)), rcond=None)[0]
            beta = base[:, None, None] * ones_coef[None, None, :] * np.ones((1, n_cond, 1))
            params["beta"] = self._tensor(beta)
        else:
            params["bias"] = self._tensor(base)
        if self.spec.history.enabled:
            params["h"] = self._tensor(np.zeros((n_units, self.spec.history.n_basis)))
        if self.spec.coupling.enabled:
            params["J"] = self._tensor(np.zeros((n_units, n_units, self.spec.coupling.n_basis)))
        if self.spec.stimulus_filter.enabled:
            n_channels = data.stimulus.shape[2]
            params["k"] = self._tensor(np.zeros((n_units, n_channels,
                                                 self.spec.stimulus_filter.n_basis)))
        if self.spec.correlated.enabled:
            params["A"] = self._tensor(np.zeros((n_units, n_units)))
        params.update(self._extra_init(data, gen))
        return params

    def _extra_init(self, data: BinnedTrials, gen: torch.Generator) -> dict[str, Tensor]:
        return {}

    def _warm_start(self, data: BinnedTrials, init: dict[str, Tensor]) -> dict[str, Tensor]:
        """Where L-BFGS starts (``init``: the values the preconditioner was built at)."""
        return init

    def _curvature(self, y: Tensor) -> Tensor:
        """(n_units,) second derivative of one bin's NLL in the drive, at the mean rate."""
        if self.observation_name == "gaussian":
            return 1.0 / y.var(dim=(0, 1)).clamp_min(1e-6)
        mean = y.mean(dim=(0, 1)).clamp(1e-3, 1 - 1e-3 if self.observation_name == "bernoulli"
                                        else None)
        return mean * (1 - mean) if self.observation_name == "bernoulli" else mean

    def _grams(self, d: dict[str, Tensor], n_conditions: int) -> dict[str, Tensor]:
        """Gauss-Newton blocks of the summed NLL for the linear weights, at the mean rates.

        ``beta`` (n_units, n_conditions, K, K); ``h`` (n_units, K, K); ``J``, ``A`` and the
        stimulus filter ``k`` (n_units, d, d) over the flattened presynaptic (or channel) ×
        basis weights. Weights the model does
        not use (J's diagonal, A outside the unit order's lower triangle) get identity rows.
        """
        y = d["y"]
        n_units = y.shape[2]
        w = self._curvature(y)
        grams: dict[str, Tensor] = {}
        if "S" in d:
            n_c = torch.bincount(d["condition"], minlength=n_conditions).to(y.dtype)
            grams["beta"] = (w[:, None, None, None] * n_c[None, :, None, None]
                             * (d["S"].T @ d["S"])[None, None])
        keep = self._heldin()
        if "H" in d:
            grams["h"] = w[:, None, None] * torch.einsum("btik,btil->ikl", d["H"], d["H"])
            if keep is not None:  # a held-out unit's own history is fixed at zero
                eye = torch.eye(grams["h"].shape[-1], dtype=y.dtype, device=y.device)
                grams["h"] = grams["h"] * keep[:, None, None] + eye * (1 - keep)[:, None, None]
        blocks = []
        if "C" in d:
            k = d["C"].shape[3]
            features = d["C"].reshape(-1, n_units * k)
            used = 1 - torch.eye(n_units, dtype=y.dtype, device=y.device)
            if keep is not None:
                used = used * keep[None, :]
            blocks.append(("J", features, used.repeat_interleave(k, dim=1)))
        if self.spec.correlated.enabled:
            blocks.append(("A", self._inputs(y).reshape(-1, n_units), self._order_mask()))
        if "X" in d:
            features = d["X"].reshape(-1, d["X"].shape[2] * d["X"].shape[3])
            blocks.append(("k", features, features.new_ones(n_units, features.shape[1])))
        for name, features, used in blocks:  # used: (n_units, d) 1 where the weight acts
            gram = w[:, None, None] * (features.T @ features)[None]
            keep = used[:, :, None] * used[:, None, :]
            eye = torch.eye(gram.shape[-1], dtype=y.dtype, device=y.device)
            grams[name] = gram * keep + eye * (1 - used)[:, :, None]
        return grams

    def _preconditioner(self, data: BinnedTrials, d: dict[str, Tensor],
                        init: dict[str, Tensor]):
        """Maps between model parameters and the coordinates L-BFGS works in.

        Overlapping raised cosines are nearly collinear and units' rates differ a hundredfold,
        so the likelihood is badly conditioned in the raw weights. Every block of weights that
        enters the drive linearly (stimulus, history, coupling, in-bin coupling) is optimised
        as ``z`` with ``w = L⁻ᵀ z``, ``L Lᵀ`` the block's Gauss-Newton matrix at the mean rates
        (:meth:`_grams`); every other tensor (R-GLM's ``W0``, ``R``, ``B``; a bias; a noise
        scale) as ``w = z / sqrt(g)``, ``g`` its mean Gauss-Newton diagonal at the initial
        values (a Hutchinson estimate from forward-mode products). The summed NLL's Hessian in
        ``z`` is then close to the identity for all blocks alike, which suits L-BFGS's single
        scalar initial Hessian. The model, its optimum and the reported weights are unchanged.
        """
        weight = self._curvature(d["y"])  # (n_units,) per-bin curvature in the drive
        maps: dict[str, tuple[Tensor, Tensor]] = {}
        for name, gram in self._grams(d, data.n_conditions).items():
            eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
            ridge = 1e-6 * gram.diagonal(dim1=-2, dim2=-1).mean() + 1e-12
            chol = torch.linalg.cholesky(gram + ridge * eye)
            inv_t = torch.linalg.solve_triangular(chol, eye.expand_as(chol), upper=False).mT
            maps[name] = (inv_t, chol.mT)
        scalars: dict[str, Tensor] = {}
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        base = {k: v.detach() for k, v in init.items()}
        for name, value in base.items():
            if name in maps or name == "log_sigma":
                continue
            probe = (torch.randint(0, 2, value.shape, generator=gen) * 2 - 1).to(value)

            def drive_of(v: Tensor, name: str = name) -> Tensor:
                return self._drive({**base, name: v}, d)

            _, tangent = torch.func.jvp(drive_of, (value,), (probe,))
            mean_diag = float((weight * tangent**2).sum()) / value.numel()
            if mean_diag > 0:
                scalars[name] = torch.as_tensor(mean_diag**-0.5, dtype=value.dtype,
                                                device=value.device)

        def to_model(p: dict[str, Tensor]) -> dict[str, Tensor]:
            out = {k.removesuffix("_z"): v for k, v in p.items()}
            for name, (inv_t, _) in maps.items():
                flat = out[name].reshape(inv_t.shape[:-1])
                out[name] = torch.einsum("...dk,...k->...d", inv_t, flat).reshape(out[name].shape)
            for name, scale in scalars.items():
                out[name] = out[name] * scale
            return out

        def to_internal(p: dict[str, Tensor]) -> dict[str, Tensor]:
            out = dict(p)
            for name, (_, chol_t) in maps.items():
                flat = out[name].reshape(chol_t.shape[:-1])
                out[name] = torch.einsum("...dk,...k->...d", chol_t, flat).reshape(out[name].shape)
            for name, scale in scalars.items():
                out[name] = out[name] / scale
            return {(k + "_z" if k in maps or k in scalars else k): v for k, v in out.items()}

        return to_model, to_internal

    def penalised_names(self) -> tuple[str, ...]:
        """Parameters under the L1/L2 penalty: all weights but the stimulus drive / bias."""
        return ("h", "J", "A")

    # ---------------------------------------------------------------- the model
    def _drive(self, p: dict[str, Tensor], d: dict[str, Tensor]) -> Tensor:
        """(n_trials, n_bins, n_units) linear predictor."""
        y = d["y"]
        if "beta" in p:
            drive = torch.einsum("tk,ibk->bti", d["S"], p["beta"][:, d["condition"]])
        else:
            drive = p["bias"].expand_as(y)
        if "h" in p:
            drive = drive + torch.einsum("btik,ik->bti", d["H"], p["h"])
        if "J" in p:
            eye = torch.eye(y.shape[2], dtype=y.dtype, device=y.device)
            drive = drive + torch.einsum("btjk,ijk->bti", d["C"], p["J"] * (1 - eye)[..., None])
        if "k" in p:
            drive = drive + torch.einsum("btck,ick->bti", d["X"], p["k"])
        if "A" in p:
            drive = drive + self._inputs(y) @ (p["A"] * self._order_mask()).T
        return drive + self._extra_drive(p, d)

    def _order_mask(self) -> Tensor:
        """(n_units, n_units) 1 where unit j comes before unit i in ``unit_order_`` (and, in
        co-smoothing mode, j is held in)."""
        rank = np.empty(len(self.unit_order_), dtype=np.int64)
        rank[self.unit_order_] = np.arange(len(self.unit_order_))
        mask = rank[None, :] < rank[:, None]
        if self.heldout is not None:
            mask = mask & ~np.asarray(self.heldout, dtype=bool)[None, :]
        return self._tensor(mask.astype(float))

    def _choose_order(self, data: BinnedTrials) -> np.ndarray:
        n_units = data.counts.shape[2]
        how = self.spec.correlated.order
        if how == "given" or not self.spec.correlated.enabled:
            return np.arange(n_units)
        if how == "random":
            return np.random.default_rng(self.spec.correlated.order_seed).permutation(n_units)
        # descending rate, ties by index: well-estimated units first condition the others
        return np.argsort(-data.counts.mean(axis=(0, 1)), kind="stable")

    def _nll(self, p: dict[str, Tensor], d: dict[str, Tensor]) -> Tensor:
        """Elementwise NLL (n_trials, n_bins, n_units) of ``d["y"]``."""
        return self.obs.nll(d["y"], self._drive(p, d), p.get("log_sigma"))

    def _extra_drive(self, p: dict[str, Tensor], d: dict[str, Tensor]) -> Tensor | float:
        return 0.0

    def _objective(self, p: dict[str, Tensor], d: dict[str, Tensor]) -> Tensor:
        nll = self._nll(p, d).mean()
        pen = self.spec.penalty
        if pen.stimulus_l2:
            if "beta" in p:  # towards each unit's mean rate, not towards a rate of 1 per bin
                centre = self._tensor(self.stimulus_centre_)  # set by fit from the data
                nll = nll + pen.stimulus_l2 * ((p["beta"] - centre) ** 2).sum()
            if "k" in p:
                nll = nll + pen.stimulus_l2 * (p["k"] ** 2).sum()
        for name in self.penalised_names():
            if name in p:
                w = p[name]
                if name == "J":
                    w = w * (1 - torch.eye(w.shape[0], dtype=w.dtype, device=w.device))[..., None]
                    if self._heldin() is not None:
                        w = w * self._heldin()[None, :, None]
                if name == "h" and self._heldin() is not None:
                    w = w * self._heldin()[:, None]
                if name == "A":
                    w = w * self._order_mask()
                if pen.l2:
                    nll = nll + pen.l2 * (w**2).sum()
                if pen.l1:
                    nll = nll + pen.l1 * (torch.sqrt(w**2 + _L1_SMOOTHING**2) - _L1_SMOOTHING).sum()
        return nll

    # ---------------------------------------------------------------- public API
    def fit(self, data: BinnedTrials, progress: bool = True) -> GLM:
        """Fit on all trials of ``data`` (pass training trials only).

        With ``fit.early_stopping`` a stratified ``fit.validation_fraction`` of these trials is
        held back and the parameters with the best held-back likelihood are kept.
        """
        if data.counts.ndim != 3 or data.counts.shape[0] < 2:
            raise DataError(f"{data.source}: counts: expected ≥ 2 trials × bins × units, "
                            f"got shape {data.counts.shape}")
        if self.spec.correlated.enabled and data.counts.shape[2] < 2:
            raise DataError(f"{data.source}: units: correlated observations need ≥ 2 units "
                            "(a lower-triangular coupling of one unit is empty)")
        self.unit_order_ = self._choose_order(data)
        fit = self._fit_newton if self.solver() == "newton" else self._fit_lbfgs
        self.fit_report_ = fit(data, progress)
        self.n_bins_, self.n_units_ = data.counts.shape[1], data.counts.shape[2]
        self.n_conditions_ = data.n_conditions
        self.bin_size_ = data.bin_size
        return self

    def _fit_lbfgs(self, data: BinnedTrials, progress: bool) -> FitReport:
        """L-BFGS on the penalised objective (early stopping on held-back trials); sets
        ``params_`` and returns the report."""
        gen = torch.Generator().manual_seed(self.seed)
        train, val = data, None
        if self.spec.fit.early_stopping:
            is_val = split_trials(pd.DataFrame(index=range(len(data.condition))),
                                  data.condition, self.spec.fit.validation_fraction, self.seed)
            if is_val.any() and (~is_val).any():
                train, val = data.subset(~is_val), data.subset(is_val)
        d_train = self._design(train)
        init = self._init_params(train, gen)
        if "beta" in init:
            self.stimulus_centre_ = init["beta"].detach().cpu().numpy()
        to_model, to_internal = self._preconditioner(train, d_train, init)
        start = self._warm_start(train, init)
        internal = {k: v.detach().requires_grad_() for k, v in to_internal(start).items()}
        d_val = self._design(val) if val is not None else None

        def validation_nll() -> float:
            with torch.no_grad():
                return float(self._nll(to_model(internal), d_val).sum())

        report: FitReport = fit_lbfgs(
            internal, lambda: self._objective(to_model(internal), d_train), self.spec.fit,
            validation_nll if d_val is not None else None, progress=progress,
            desc=f"fit {self.spec.name}")
        with torch.no_grad():
            self.params_ = {k: v.detach().cpu().numpy() for k, v in to_model(internal).items()}
        return report

    # ---------------------------------------------------------------- batched Newton
    def solver(self) -> str:
        """``newton`` or ``lbfgs``: what :meth:`fit` uses for this spec (``fit.solver``)."""
        convex = (self.spec.kind == "glm" and self.observation_name in ("poisson", "bernoulli")
                  and not self.spec.penalty.l1)
        choice = self.spec.fit.solver
        if choice == "newton" and not convex:
            raise SpecError(f"{self.spec.name}: fit.solver: newton needs a convex model (kind "
                            "glm, poisson or bernoulli observations, penalty.l1 = 0)")
        return "newton" if choice == "newton" or (choice == "auto" and convex) else "lbfgs"

    def newton_design(self, data: BinnedTrials) -> dict[str, object]:
        """The fit as per-unit regressions on one shared design (given the data, every term
        of a GLM without a latent is linear in fixed features).

        Returns ``X`` (n_rows, P) shared columns ``[stimulus | coupling | in-bin A |
        stimulus filter]`` (a bias column instead of the stimulus block when it is off),
        ``unit_X`` (n_rows, n_units, K_h) each unit's own history features or None,
        ``Y`` (n_rows, n_units), ``mask`` (n_units, P + K_h), ``l2`` (n_units, P + K_h) on
        the summed NLL (``penalty.l2`` or ``penalty.stimulus_l2`` times ``n_rows · n_units``:
        the objective is the mean NLL over bins and units), the
        :class:`~neurorec.fit.newton.StimulusBlock` and ``slices`` {param name: column
        slice}. Rows are trial-major.
        """
        d = self._design(data)
        y = d["y"]
        n_trials, n_bins, n_units = y.shape
        rows = n_trials * n_bins
        cols: list[Tensor] = []
        masks: list[Tensor] = []
        slices: dict[str, slice] = {}
        block = None
        ones = y.new_ones(n_units, 1)

        def add(name: str, features: Tensor, mask: Tensor) -> None:
            start = sum(c.shape[1] for c in cols)
            cols.append(features)
            masks.append(mask)
            slices[name] = slice(start, start + features.shape[1])

        if "S" in d:
            block = StimulusBlock(d["condition"].cpu(), d["S"].cpu(), data.n_conditions, 0)
            add("beta", block.design(y.dtype, y.device), ones.expand(-1, block.n_cols))
        else:
            add("bias", y.new_ones(rows, 1), ones)
        keep = self._heldin()
        if "C" in d:
            k = d["C"].shape[3]
            used = 1 - torch.eye(n_units, dtype=y.dtype, device=y.device)
            if keep is not None:
                used = used * keep[None, :]
            add("J", d["C"].reshape(rows, n_units * k), used.repeat_interleave(k, dim=1))
        if self.spec.correlated.enabled:
            add("A", self._inputs(y).reshape(rows, n_units), self._order_mask())
        if "X" in d:
            feats = d["X"].reshape(rows, -1)
            add("k", feats, ones.expand(-1, feats.shape[1]))
        X = torch.cat(cols, dim=1)
        unit_X = None
        if "H" in d:
            kh = d["H"].shape[3]
            unit_X = d["H"].reshape(rows, n_units, kh)
            own = ones.expand(-1, kh) if keep is None else keep[:, None].expand(-1, kh)
            masks.append(own)
            slices["h"] = slice(X.shape[1], X.shape[1] + kh)
        mask = torch.cat(masks, dim=1) > 0
        penalty = self.spec.penalty
        stim = {"beta", "k"}  # ridge `stimulus_l2`; the bias is never penalised
        weight = torch.zeros(mask.shape[1], dtype=y.dtype, device=y.device)
        for name, sl in slices.items():
            weight[sl] = (penalty.stimulus_l2 if name in stim else
                          0.0 if name == "bias" else penalty.l2)
        l2 = (weight * rows * n_units)[None].expand(n_units, -1)
        return {"X": X, "unit_X": unit_X, "Y": y.reshape(rows, n_units), "mask": mask,
                "l2": l2, "block": block, "slices": slices}

    def _params_from_coef(self, coef: Tensor, slices: dict[str, slice],
                          data: BinnedTrials) -> dict[str, np.ndarray]:
        """Parameter arrays of the model from the stacked per-unit coefficients."""
        n_units = coef.shape[0]
        c = coef.detach().cpu().numpy()
        out: dict[str, np.ndarray] = {}
        for name, sl in slices.items():
            w = c[:, sl]
            if name == "beta":
                w = w.reshape(n_units, data.n_conditions, -1)
            elif name == "J":
                w = w.reshape(n_units, n_units, -1)
            elif name == "k":
                w = w.reshape(n_units, data.stimulus.shape[2], -1)
            elif name == "bias":
                w = w[:, 0]
            out[name] = np.ascontiguousarray(w)
        return out

    def _coef_from_params(self, params: dict[str, np.ndarray], slices: dict[str, slice],
                          n_cols: int) -> Tensor:
        """(n_units, n_cols) stacked coefficients of ``params`` (the inverse of
        :meth:`_params_from_coef`)."""
        n_units = len(next(iter(params.values())))
        coef = torch.zeros(n_units, n_cols, dtype=torch.float64, device=self.device)
        for name, sl in slices.items():
            coef[:, sl] = torch.as_tensor(np.asarray(params[name]).reshape(n_units, -1),
                                          dtype=torch.float64, device=self.device)
        return coef

    def _fit_newton(self, data: BinnedTrials, progress: bool) -> FitReport:
        start = time.perf_counter()
        prob = self.newton_design(data)
        X = prob["X"].to(torch.float64)
        unit_X = None if prob["unit_X"] is None else prob["unit_X"].to(torch.float64)
        n_cols = prob["mask"].shape[1]
        offset = None
        centre = None
        if "beta" in prob["slices"]:
            # the stimulus ridge is centred on each unit's mean rate: solve for the deviation
            # v = β - β₀ with the fixed drive X β₀ as an offset
            init = self._init_params(data, torch.Generator().manual_seed(self.seed))
            self.stimulus_centre_ = init["beta"].detach().cpu().numpy()
            sl = prob["slices"]["beta"]
            centre = self._coef_from_params({"beta": self.stimulus_centre_}, {"beta": sl},
                                            n_cols)
            offset = X[:, sl] @ centre[:, sl].T
        coef0 = None
        if self.warm_start_params is not None:
            coef0 = self._coef_from_params(self.warm_start_params, prob["slices"], n_cols)
            if centre is not None:
                coef0 = coef0 - centre
        link = "logistic" if self.observation_name == "bernoulli" else self.spec.link
        res = fit_batched_glm(X, prob["Y"].to(torch.float64), observation=self.observation_name,
                              link=link, l2=prob["l2"].to(torch.float64), mask=prob["mask"],
                              unit_X=unit_X, blocks=prob["block"], offset=offset, coef0=coef0,
                              tol=min(self.spec.fit.tol, 1e-10),
                              max_iter=min(self.spec.fit.max_iter, 200))
        coef = res.coef if centre is None else res.coef + centre
        self.params_ = self._params_from_coef(coef, prob["slices"], data)
        n_el = prob["Y"].numel()
        converged = bool(res.converged.all())
        return FitReport(
            converged=converged,
            reason="newton: converged" if converged else
            f"newton: {int((~res.converged).sum())} unit(s) not converged",
            n_iter=res.n_iter, n_evals=res.n_iter, final_objective=float(res.objective.sum())
            / n_el, max_abs_grad=float(res.grad_norm.max()) / n_el, best_validation_nll=None,
            fit_time_s=time.perf_counter() - start,
            history=[{"iter": i, "objective": v / n_el}
                     for i, v in enumerate(res.history)])

    def _fitted_tensors(self) -> dict[str, Tensor]:
        self._check_fitted()
        return {k: self._tensor(v) for k, v in self.params_.items()}

    def _check_shape(self, data: BinnedTrials) -> None:
        self._check_fitted()
        got = data.counts.shape[1:]
        if got != (self.n_bins_, self.n_units_) or data.n_conditions != self.n_conditions_:
            raise DataError(f"{data.source}: counts: model was fitted to {self.n_bins_} bins × "
                            f"{self.n_units_} units × {self.n_conditions_} conditions, got "
                            f"{got[0]} × {got[1]} × {data.n_conditions}")
        channels = 0 if data.stimulus is None else data.stimulus.shape[2]
        if "k" in self.params_ and channels != self.params_["k"].shape[1]:
            raise DataError(f"{data.source}: stimulus: model was fitted to "
                            f"{self.params_['k'].shape[1]} stimulus channel(s), got {channels}")

    def predict_rate(self, data: BinnedTrials) -> np.ndarray:
        self._check_shape(data)
        with torch.no_grad():
            drive = self._drive(self._fitted_tensors(), self._design(data))
            return self.obs.mean(drive).cpu().numpy()

    def noise_scale(self) -> np.ndarray | None:
        self._check_fitted()
        return np.exp(self.params_["log_sigma"]) if "log_sigma" in self.params_ else None

    def n_parameters(self) -> int:
        self._check_fitted()
        n = sum(v.size for v in self.params_.values())
        if "J" in self.params_:
            n -= self.n_units_ * self.params_["J"].shape[2]  # the unused diagonal
        if "A" in self.params_:
            n -= self.n_units_ * (self.n_units_ + 1) // 2  # only the strict lower triangle
        if self.heldout is not None:  # weights fixed at zero in co-smoothing mode
            ho = np.asarray(self.heldout, dtype=bool)
            n_ho = int(ho.sum())
            if "h" in self.params_:
                n -= n_ho * self.params_["h"].shape[1]
            if "J" in self.params_:
                n -= n_ho * (self.n_units_ - 1) * self.params_["J"].shape[2]
            if "A" in self.params_:
                order = self._order_mask().cpu().numpy()
                n -= self.n_units_ * (self.n_units_ - 1) // 2 - int(order.sum())
            if "W0" in self.params_:
                n -= n_ho * self.params_["W0"].shape[0]
        return int(n)

    def sample(self, condition: np.ndarray, n_bins: int | None = None, seed: int = 0,
               stimulus: np.ndarray | None = None) -> np.ndarray:
        """Exact ancestral sample: bin by bin, and unit by unit (in ``unit_order_``) inside a bin
        when observations are correlated; sampled spikes feed back through every term.

        ``stimulus`` (n_trials, n_bins, n_channels) drives a model with a stimulus filter
        (binned like the training data's ``stimulus``); others ignore it.
        """
        p = self._fitted_tensors()
        n_bins = n_bins or self.n_bins_
        gen = torch.Generator(device=self.device).manual_seed(seed)
        cond = torch.as_tensor(np.asarray(condition), device=self.device)
        y = torch.zeros(len(cond), n_bins, self.n_units_, dtype=self.dtype, device=self.device)
        design = {"y": y, "condition": cond}
        if "beta" in p:
            design["S"] = self._tensor(self.stimulus_basis(n_bins))
        if "k" in p:
            got = None if stimulus is None else np.shape(stimulus)
            if got is None or got[:2] != (len(cond), n_bins):
                raise DataError(f"{self.spec.name}: stimulus: a model with a stimulus filter "
                                f"samples given a stimulus of shape ({len(cond)}, {n_bins}, "
                                f"n_channels), got {got}")
            design["X"] = self._stimulus_features(np.asarray(stimulus), self.bin_size_,
                                                  self.spec.name)
        bases = {"H": self.history_basis(self.bin_size_) if "h" in p else None,
                 "C": self.coupling_basis(self.bin_size_) if "J" in p else None}
        with torch.no_grad():
            for t in range(n_bins):
                # drive at t depends only on y[:, :t]; recomputing on the prefix keeps one
                # definition of the model for fitting and sampling
                prefix = {**design, "y": y[:, : t + 1]}
                if "S" in design:
                    prefix["S"] = design["S"][: t + 1]
                if "X" in design:
                    prefix["X"] = design["X"][:, : t + 1]
                for key, basis in bases.items():
                    if basis is not None:
                        prefix[key] = history_features(self._inputs(y[:, : t + 1]),
                                                       self._tensor(basis))
                # y[:, t] is still zero here, so this is the drive without the in-bin term
                drive_t = self._drive(p, prefix)[:, t]
                if "A" not in p:
                    self._check_runaway(drive_t, t)
                    y[:, t] = self.obs.sample(drive_t, gen, p.get("log_sigma"))
                    continue
                A = p["A"] * self._order_mask()
                for i in self.unit_order_:
                    scale = p["log_sigma"][i] if "log_sigma" in p else None
                    drive_i = drive_t[:, i] + self._inputs(y[:, t]) @ A[i]
                    self._check_runaway(drive_i[:, None], t, unit=int(i))
                    y[:, t, i] = self.obs.sample(drive_i, gen, scale)
        return y.cpu().numpy()

    def _check_runaway(self, drive: Tensor, t: int, unit: int | None = None) -> None:
        """Stop a closed-loop sample whose expected count leaves any physiological range.

        One-step-ahead fits can hold positive feedback (history, coupling, recurrence) that
        explodes in closed loop with an exponential link; failing loudly beats sampling
        garbage (torch.poisson wraps to negative counts beyond 2^63).
        """
        if self.observation_name != "poisson":
            return
        mean = self.obs.mean(drive)
        ceiling = MAX_RATE_HZ * self.bin_size_
        worst = float(mean.max())
        if not worst <= ceiling:
            trial, col = np.unravel_index(int(torch.argmax(torch.nan_to_num(mean, nan=np.inf))),
                                          tuple(mean.shape))
            which = unit if unit is not None else int(col)
            raise DivergenceError(
                f"simulation diverged: unit {which} expected {worst:.3g} spikes in one "
                f"{self.bin_size_ * 1e3:g} ms bin (trial {trial}, bin {t}; more than "
                f"{MAX_RATE_HZ:g} Hz): positive feedback through history/coupling/recurrence "
                "runs away in closed loop (try link: softplus, or a stronger penalty)")

    # ---------------------------------------------------------------- interpretable views
    def stimulus_drive(self) -> np.ndarray | None:
        """(n_units, n_conditions, n_bins) stimulus part of the drive, or None."""
        self._check_fitted()
        if "beta" not in self.params_:
            return None
        return np.einsum("ick,tk->ict", self.params_["beta"], self.stimulus_basis(self.n_bins_))

    def stimulus_filters(self) -> np.ndarray | None:
        """(n_units, n_channels, n_lags) stimulus filters (drive per stimulus unit at lags
        0 .. duration, in bins), or None."""
        self._check_fitted()
        if "k" not in self.params_:
            return None
        return self.params_["k"] @ self.stimulus_filter_basis(self.bin_size_).T

    def history_filters(self) -> np.ndarray | None:
        """(n_units, n_lags) self-history filters (log-gain per past spike), or None."""
        self._check_fitted()
        if "h" not in self.params_:
            return None
        return self.params_["h"] @ self.history_basis(self.bin_size_).T

    def coupling_filters(self) -> np.ndarray | None:
        """(n_units, n_units, n_lags) coupling filters ``[post, pre, lag]``, diagonal zero."""
        self._check_fitted()
        if "J" not in self.params_:
            return None
        filters = self.params_["J"] @ self.coupling_basis(self.bin_size_).T
        filters[np.arange(self.n_units_), np.arange(self.n_units_)] = 0.0
        return filters
