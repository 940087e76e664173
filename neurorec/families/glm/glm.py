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
starts empty at every trial start.

The model is built from parts (as nemos): an observation object
(:mod:`neurorec.core.observations`: likelihood, scores, Brian 2 draw) and a list of drive terms
(:mod:`neurorec.families.glm.terms`: features, penalty masks, parameter views, drive, Brian 2
code); the drive is the sum of the terms'. The penalty is computed from the terms' masks by a
:class:`~neurorec.fit.regularise.Regulariser`; the solvers (:mod:`neurorec.fit.newton`,
:mod:`neurorec.fit.lbfgs`) get the design or the objective. The spec decides the default terms
(:func:`~neurorec.families.glm.terms.default_terms`); ``GLM(spec, terms=[...])`` assembles
any other list, a new term included, without editing this file.

Co-smoothing mode (``model.heldout`` a (n_units,) bool mask, set before ``fit``): held-out
units are outputs only. Every predictor (history, coupling, in-bin ``A``, the R-GLM's
``W0 y``) reads the counts through the terms' context (:meth:`~neurorec.families.glm.terms.
TermContext.inputs`), which zeroes the held-out columns, so
their spikes enter no unit's drive; their own history and the weights from them are fixed
at zero. With ``heldout`` None (the default) nothing changes.
"""

from __future__ import annotations

import dataclasses
import time
from functools import cached_property

import numpy as np
import pandas as pd
import torch

from neurorec.core.errors import DataError, DivergenceError, SpecError
from neurorec.core.observations import make_observation
from neurorec.data.binning import split_trials
from neurorec.data.recording import BinnedTrials, TrialLayout, sample_layout
from neurorec.families.base import Model
from neurorec.families.glm.spec import GLMSpec
from neurorec.families.glm.terms import (
    Coupling,
    History,
    InBin,
    Inputs,
    StimulusBasis,
    StimulusFilter,
    Term,
    TermContext,
    default_terms,
    history_features,
)
from neurorec.fit.distributed import fit_batched_glm_split
from neurorec.fit.lbfgs import fit_lbfgs
from neurorec.fit.regularise import Regulariser
from neurorec.fit.run import FitLog, Run

Tensor = torch.Tensor
# history_features: public here since v1
__all__ = ["GLM", "MAX_RATE_HZ", "best_iteration", "history_features"]
MAX_RATE_HZ = 10_000.0  # beyond any neuron: a sample this high means runaway excitation


def best_iteration(report: FitLog) -> int:
    """The L-BFGS iteration count with the lowest held-back NLL in ``report.history`` (0: the
    start, which :func:`~neurorec.fit.lbfgs.fit_lbfgs` scores first); ties go to fewer."""
    scored = [(h["validation_nll"], h["iter"]) for h in report.history if "validation_nll" in h]
    if not scored:
        raise ValueError("best_iteration: the fit recorded no held-back scores")
    return min(scored)[1]


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

    #: fraction of unit-bins whose expected count ``sample`` capped (``sampling.max_rate_hz``)
    last_sample_capped: float = 0.0
    #: parameters the batched Newton path starts from (e.g. the neighbouring strength on a CV
    #: path); None: the default start. L-BFGS fits start as usual.
    warm_start_params: dict[str, np.ndarray] | None = None

    def __init__(self, spec: GLMSpec, *, device: str = "cpu", seed: int = 0,
                 terms: list[Term] | None = None, heldout: np.ndarray | None = None):
        self.spec = spec
        self.device = torch.device(device)
        self.seed = seed
        self.heldout = heldout
        #: the drive terms, in drive and ``params_`` order (default: what the spec enables)
        self.terms: list[Term] = list(self.default_terms(spec) if terms is None else terms)

    # the constructor stores settings only; what follows from them is built on first use
    # (``obs`` and ``observation_name`` come from Model; ``fit`` sets a rate ceiling's ``obs``)
    @cached_property
    def regulariser(self) -> Regulariser:
        """The penalty of the spec and of the terms' groups."""
        return Regulariser(
            self.spec.penalty.l1, self.spec.penalty.l2, self.spec.penalty.stimulus_l2,
            tuple((g, w) for t in self.terms for g, w in t.group_l2().items()))

    def _set_observation(self, bin_size: float) -> None:
        """The observation at this bin size (a rate ceiling is a count per bin)."""
        if self.spec.rate_ceiling_hz is not None:
            self.obs = make_observation(self.spec.observation, self.spec.link,
                                        ceiling=self.spec.rate_ceiling_hz * bin_size)

    def restore_state(self, state: dict) -> None:
        super().restore_state(state)
        if hasattr(self, "bin_size_"):
            self._set_observation(self.bin_size_)

    @staticmethod
    def default_terms(spec: GLMSpec) -> list[Term]:
        """The terms ``spec`` switches on (subclasses add theirs)."""
        return default_terms(spec)

    def term(self, kind: type[Term]) -> Term | None:
        """The model's first term of class ``kind``, or None."""
        return next((t for t in self.terms if isinstance(t, kind)), None)

    # ---------------------------------------------------------------- bases and design
    @property
    def dtype(self) -> torch.dtype:
        return torch.float64 if self.spec.fit.dtype == "float64" else torch.float32

    def _tensor(self, array: np.ndarray) -> Tensor:
        return torch.as_tensor(np.ascontiguousarray(array), dtype=self.dtype, device=self.device)

    def context(self) -> TermContext:
        """What the terms may read of this model (:class:`~neurorec.families.glm.terms.
        TermContext`), as it stands now (held-out mask, unit order, fitted bin size)."""
        return TermContext(self.spec.name, self.dtype, self.device, self.heldout,
                           getattr(self, "unit_order_", None), getattr(self, "bin_size_", None))

    def _basis_term(self, kind: type[Term], field: str) -> Term:
        """The model's term of class ``kind`` (whose basis the filters are in); the spec's
        ``field`` settings for a model without one."""
        term = self.term(kind)
        if term is not None:
            return term
        f = getattr(self.spec, field)
        return kind(f.n_basis) if kind is StimulusBasis else kind(f.n_basis, f.duration)

    def stimulus_basis(self, n_bins: int) -> np.ndarray:
        """(n_bins, n_basis) raised cosines tiling the trial (the model's stimulus term's)."""
        return self._basis_term(StimulusBasis, "stimulus").basis(n_bins)

    def history_basis(self, bin_size: float) -> np.ndarray:
        """(n_lags, n_basis) log-stretched raised cosines over the history window (the
        model's :class:`~neurorec.families.glm.terms.History` term's)."""
        return self._basis_term(History, "history").basis(self.context(), bin_size)

    def coupling_basis(self, bin_size: float) -> np.ndarray:
        """(n_lags, n_basis) log-stretched raised cosines over the coupling window (the
        model's coupling term's)."""
        return self._basis_term(Coupling, "coupling").basis(self.context(), bin_size)

    def stimulus_filter_basis(self, bin_size: float) -> np.ndarray:
        """(n_lags, n_basis) log-stretched raised cosines over lags 0 .. duration (the
        model's stimulus filter term's)."""
        return self._basis_term(StimulusFilter, "stimulus_filter").basis(self.context(),
                                                                          bin_size)

    def _heldin(self) -> Tensor | None:
        """(n_units,) 1 for units whose spikes may predict, 0 for held-out; None: all may."""
        return self.context().heldin()

    def _inputs(self, y: Tensor) -> Tensor:
        """The counts as predictors see them: held-out units' columns zeroed."""
        return self.context().inputs(y)

    def _static_design(self, inputs: Inputs) -> dict[str, Tensor]:
        """Every term's features that do not read the counts."""
        design: dict[str, Tensor] = {"condition": inputs.condition}
        ctx = self.context()
        for term in self.terms:
            design.update(term.static_features(ctx, inputs))
        return design

    def _spike_design(self, y: Tensor, bin_size: float) -> dict[str, Tensor]:
        """Every term's features of the counts ``y`` (as predictors see them)."""
        ctx = self.context()
        x = ctx.inputs(y)
        design: dict[str, Tensor] = {}
        for term in self.terms:
            design.update(term.spike_features(ctx, x, bin_size))
        return design

    def _design(self, data: BinnedTrials) -> dict[str, Tensor]:
        y = self.obs.prepare(self._tensor(data.counts))
        if self.heldout is not None and len(self.heldout) != y.shape[2]:
            raise DataError(f"{data.source}: units: held-out mask has {len(self.heldout)} "
                            f"entries, the data {y.shape[2]} units")
        inputs = Inputs(torch.as_tensor(data.condition, device=self.device), y.shape[1],
                        data.stimulus, data.bin_size, data.source)
        d = {"y": y, **self._static_design(inputs), **self._spike_design(y, data.bin_size)}
        if data.mask is not None:  # unequal trials: bins past a trial's end weigh 0
            d["weight"] = torch.as_tensor(data.mask, dtype=y.dtype, device=y.device)[..., None]
        return d

    # ---------------------------------------------------------------- parameters
    def _init_params(self, data: BinnedTrials, gen: torch.Generator) -> dict[str, Tensor]:
        mean = np.asarray(self.obs.prepare(torch.as_tensor(data.counts, dtype=torch.float64))
                          .mean(dim=(0, 1)))
        params = {k: self._tensor(v) for k, v in self.obs.extra_init(data.counts).items()}
        baseline = self.obs.baseline(mean)
        ctx = self.context()
        for term in self.terms:
            params.update(term.init(ctx, data, gen, baseline))
        return params

    def _warm_start(self, data: BinnedTrials, init: dict[str, Tensor]) -> dict[str, Tensor]:
        """Where L-BFGS starts (``init``: the values the preconditioner was built at).

        With a non-linear term that asks for it (``warm_start(context)`` true, e.g. the R-GLM's
        latent), the linear terms are first fitted alone by batched Newton on the same trials,
        and the non-linear terms start where their contribution is zero
        (``term.warm_values``): the first iterate *is* that GLM, and L-BFGS can only lower the
        penalised objective from there. A model with ``rate_ceiling_hz`` starts likewise from
        the GLM fitted without the ceiling."""
        extra = [t for t in self.terms if not t.linear]
        # a rate ceiling makes even a linear model non-convex: it starts from the plain GLM
        ceiling = self.spec.rate_ceiling_hz is not None
        ctx = self.context()
        if not (extra or ceiling) or not all(t.warm_start(ctx) for t in extra) \
                or self.observation_name == "gaussian" or self.spec.penalty.l1:
            return init
        glm = GLM(self.spec, device=str(self.device), seed=self.seed,
                  terms=[t for t in self.terms if t.linear])
        glm.heldout = self.heldout
        glm.unit_order_ = self.unit_order_
        glm._fit_newton(data, progress=False)
        start = dict(init)
        for name, value in glm.params_.items():
            start[name] = self._tensor(value)
        for term in extra:
            start.update(term.warm_values(ctx, init))
        return start

    def _grams(self, d: dict[str, Tensor], n_conditions: int) -> dict[str, Tensor]:
        """Gauss-Newton blocks of the summed NLL for the linear weights, at the mean rates
        (each term's :meth:`~neurorec.families.glm.terms.Term.grams`). Weights the model does
        not use (J's diagonal, A outside the unit order's lower triangle) get identity rows."""
        w = self.obs.curvature(d["y"])
        grams: dict[str, Tensor] = {}
        ctx = self.context()
        for term in self.terms:
            grams.update(term.grams(ctx, d, w, n_conditions))
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
        weight = self.obs.curvature(d["y"])  # (n_units,) per-bin curvature in the drive
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

    def penalties(self) -> list[tuple[str, str | None, object]]:
        """(param, penalty group, mask) of every term's parameters, in term order."""
        ctx = self.context()
        return [piece for term in self.terms for piece in term.penalties(ctx)]

    # ---------------------------------------------------------------- the model
    def _drive(self, p: dict[str, Tensor], d: dict[str, Tensor]) -> Tensor:
        """(n_trials, n_bins, n_units) linear predictor: the sum of the terms' drives."""
        drive = None
        ctx = self.context()
        for term in self.terms:
            part = term.drive(ctx, p, d)
            drive = part if drive is None else drive + part
        return torch.zeros_like(d["y"]) if drive is None else drive.expand_as(d["y"])

    def _order_mask(self) -> Tensor:
        """(n_units, n_units) 1 where unit j comes before unit i in ``unit_order_`` (and, in
        co-smoothing mode, j is held in)."""
        return self.context().order_mask()

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

    def _objective(self, p: dict[str, Tensor], d: dict[str, Tensor]) -> Tensor:
        """Mean NLL plus the regulariser's penalty from the terms' groups and masks (the
        stimulus drive's ridge is centred on each unit's mean rate, ``stimulus_centre_``, set
        by fit from the data; not towards a rate of 1 per bin)."""
        centres = {}
        if "beta" in p and self.regulariser.stimulus_l2:
            centres["beta"] = self._tensor(self.stimulus_centre_)
        nll = self._nll(p, d)
        if "weight" in d:  # masked bins out: the mean over the trials' own bins
            w = d["weight"]
            mean = (nll * w).sum() / (w.sum() * nll.shape[-1])
        else:
            mean = nll.mean()
        return self.regulariser.add(mean, p, self.penalties(), centres)

    # ---------------------------------------------------------------- public API
    def fit(self, data: BinnedTrials, *, progress: bool = True, run: Run | None = None) -> GLM:
        """Fit on all trials of ``data`` (pass training trials only); ``run``: checkpoints
        and resume of the L-BFGS stages (:class:`~neurorec.fit.run.Run`).

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
        self._set_observation(data.bin_size)
        fit = self._fit_newton if self.solver() == "newton" else self._fit_lbfgs
        self.fit_report_ = fit(data, progress, run)
        self.n_bins_, self.n_units_ = data.counts.shape[1], data.counts.shape[2]
        self.n_conditions_ = data.n_conditions
        self.bin_size_ = data.bin_size
        return self

    def _fit_lbfgs(self, data: BinnedTrials, progress: bool, run: Run | None = None) -> FitLog:
        """L-BFGS on the penalised objective (early stopping on held-back trials); sets
        ``params_`` and returns the report.

        With ``fit.refit_best`` the held-back run only chooses how many iterations to take
        (:func:`best_iteration`); the kept parameters are those of a second run on all
        training trials for that many iterations from the same kind of start."""
        fit_spec = self.spec.fit
        train, val = data, None
        if fit_spec.early_stopping:
            is_val = split_trials(pd.DataFrame(index=range(len(data.condition))),
                                  data.condition, fit_spec.validation_fraction, self.seed)
            if is_val.any() and (~is_val).any():
                train, val = data.subset(~is_val), data.subset(is_val)
        report = self._lbfgs_run(train, val, fit_spec, progress, run)
        if not (fit_spec.refit_best and val is not None):
            return report
        n_best = best_iteration(report)
        refit = self._lbfgs_run(data, None, fit_spec.model_copy(
            update={"early_stopping": False, "max_iter": n_best}), progress, run)
        return dataclasses.replace(
            refit, best_validation_nll=report.best_validation_nll,
            reason=f"refit on all training trials for {n_best} iterations, the best count on "
                   f"the held-back trials ({refit.reason})",
            history=[{**h, "stage": "held-back"} for h in report.history]
            + [{**h, "stage": "refit"} for h in refit.history])

    def _lbfgs_run(self, train: BinnedTrials, val: BinnedTrials | None, fit_spec,
                   progress: bool, run: Run | None = None) -> FitLog:
        """One L-BFGS run on ``train`` (early stopping on ``val`` if given) from the warm
        start; sets ``params_``. ``fit_spec.max_iter == 0`` keeps the start itself."""
        gen = torch.Generator().manual_seed(self.seed)
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
                nll = self._nll(to_model(internal), d_val)
                return float((nll * d_val["weight"]).sum() if "weight" in d_val else nll.sum())

        def objective() -> Tensor:
            return self._objective(to_model(internal), d_train)

        if fit_spec.max_iter == 0:
            with torch.no_grad():
                value = float(objective())
            report = FitLog(converged=False, reason="kept the start (0 iterations)",
                            n_iter=0, n_evals=1, final_objective=value,
                            max_abs_grad=float("nan"), best_validation_nll=None,
                            fit_time_s=0.0)
        else:
            report = fit_lbfgs(internal, objective, fit_spec,
                               validation_nll if d_val is not None else None,
                               progress=progress, desc=f"fit {self.spec.name}", run=run)
        with torch.no_grad():
            fitted = to_model(internal)
            ctx = self.context()
            for term in self.terms:  # e.g. a bounded recurrence stores the matrix it used
                fitted.update(term.finalise(ctx, fitted))
            self.params_ = {k: v.detach().cpu().numpy() for k, v in fitted.items()}
        return report

    # ---------------------------------------------------------------- batched Newton
    def solver(self) -> str:
        """``newton`` or ``lbfgs``: what :meth:`fit` uses for this spec (``fit.solver``)."""
        convex = (all(t.linear for t in self.terms)
                  and self.observation_name in ("poisson", "bernoulli")
                  and not self.spec.penalty.l1 and self.spec.rate_ceiling_hz is None)
        choice = self.spec.fit.solver
        if choice == "newton" and not convex:
            raise SpecError(f"{self.spec.name}: fit.solver: newton needs a convex model (kind "
                            "glm, poisson or bernoulli observations, penalty.l1 = 0)")
        return "newton" if choice == "newton" or (choice == "auto" and convex) else "lbfgs"

    def newton_design(self, data: BinnedTrials) -> dict[str, object]:
        """The fit as per-unit regressions on one shared design (given the data, every term
        of a GLM without a latent is linear in fixed features).

        Returns ``X`` (n_rows, P) the terms' shared columns in term order (e.g. ``[stimulus
        | coupling | stimulus filter | in-bin A]``; a bias column instead of the stimulus
        block when it is off), ``unit_X`` (n_rows, n_units, K_h) each unit's own history
        features or None, ``Y`` (n_rows, n_units), ``mask`` (n_units, P + K_h), ``l2``
        (n_units, P + K_h) on the summed NLL (the regulariser's weight of each column's
        penalty group times ``n_rows · n_units``: the objective is the mean NLL over bins and
        units), the :class:`~neurorec.fit.newton.StimulusBlock` and ``slices`` {param name:
        column slice}. Rows are trial-major.
        """
        d = self._design(data)
        y = d["y"]
        n_trials, n_bins, n_units = y.shape
        rows = n_trials * n_bins
        ctx = self.context()
        columns = [c for t in self.terms for c in t.columns(ctx, d, data.n_conditions)]
        shared = [c for c in columns if not c.per_unit]
        own = [c for c in columns if c.per_unit]
        if len(own) > 1:
            raise SpecError(f"{self.spec.name}: the Newton design takes one per-unit block, "
                            f"got {[c.name for c in own]}")
        slices: dict[str, slice] = {}
        groups: list[tuple[slice, str | None]] = []
        block = None
        start = 0
        for c in (*shared, *own):
            width = c.features.shape[-1]
            slices[c.name] = slice(start, start + width)
            groups.append((slices[c.name], c.group))
            if c.block is not None:
                block = dataclasses.replace(c.block, start=start)
            start += width
        X = (torch.cat([c.features for c in shared], dim=1) if shared
             else y.new_zeros(rows, 0))
        unit_X = own[0].features if own else None
        mask = torch.cat([c.used for c in (*shared, *own)], dim=1) > 0
        Y = y.reshape(rows, n_units)
        if data.mask is not None:  # unequal trials: only the bins inside each trial are rows
            keep = torch.as_tensor(data.mask.reshape(-1), device=X.device)
            X, Y, rows = X[keep], Y[keep], int(keep.sum())
            unit_X = None if unit_X is None else unit_X[keep]
            block = None  # the condition block's row pattern assumes equal trials
        l2 = self.regulariser.newton_l2(groups, mask.shape[1], rows, n_units, y)
        return {"X": X, "unit_X": unit_X, "Y": Y, "mask": mask,
                "l2": l2[None].expand(n_units, -1), "block": block, "slices": slices}

    def _params_from_coef(self, coef: Tensor, slices: dict[str, slice],
                          data: BinnedTrials) -> dict[str, np.ndarray]:
        """Parameter arrays of the model (term order) from the stacked per-unit coefficients:
        each term's view of its slice."""
        c = coef.detach().cpu().numpy()
        return {name: np.ascontiguousarray(term.view(name, c[:, slices[name]], data))
                for term in self.terms for name in term.params if name in slices}

    def coefficients(self, params: dict[str, np.ndarray], slices: dict[str, slice],
                     n_cols: int) -> Tensor:
        """(n_units, n_cols) float64 stacked per-unit coefficients of ``params`` in the
        columns of :meth:`newton_design` (``slices``: its {param name: column slice};
        ``n_cols``: its number of columns); the inverse of :meth:`_params_from_coef`."""
        n_units = len(next(iter(params.values())))
        coef = torch.zeros(n_units, n_cols, dtype=torch.float64, device=self.device)
        for name, sl in slices.items():
            coef[:, sl] = torch.as_tensor(np.asarray(params[name]).reshape(n_units, -1),
                                          dtype=torch.float64, device=self.device)
        return coef

    def _fit_newton(self, data: BinnedTrials, progress: bool, run: Run | None = None) -> FitLog:
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
            centre = self.coefficients({"beta": self.stimulus_centre_}, {"beta": sl}, n_cols)
            offset = X[:, sl] @ centre[:, sl].T
        coef0 = None
        if self.warm_start_params is not None:
            coef0 = self.coefficients(self.warm_start_params, prob["slices"], n_cols)
            if centre is not None:
                coef0 = coef0 - centre
        # split by units over a Dask cluster inside neurorec.fit.distributed.unit_split; the
        # observation object gives the solver its NLL, derivatives and link
        res = fit_batched_glm_split(
            X, prob["Y"].to(torch.float64), observation=self.obs,
            l2=prob["l2"].to(torch.float64), mask=prob["mask"], unit_X=unit_X,
            blocks=prob["block"], offset=offset, coef0=coef0,
            tol=min(self.spec.fit.tol, 1e-10), max_iter=min(self.spec.fit.max_iter, 200),
            progress=progress)
        coef = res.coef if centre is None else res.coef + centre
        self.params_ = self._params_from_coef(coef, prob["slices"], data)
        n_el = prob["Y"].numel()
        converged = bool(res.converged.all())
        return FitLog(
            converged=converged,
            reason="newton: converged" if converged else
            f"newton: {int((~res.converged).sum())} unit(s) not converged",
            n_iter=res.n_iter, n_evals=res.n_iter, final_objective=float(res.objective.sum())
            / n_el, max_abs_grad=float(res.grad_norm.max()) / n_el, best_validation_nll=None,
            fit_time_s=time.perf_counter() - start,
            history=[{"iter": i, "objective": v / n_el}
                     for i, v in enumerate(res.history)], optimizer="Newton")

    def _fitted_tensors(self) -> dict[str, Tensor]:
        self.check_fitted()
        return {k: self._tensor(v) for k, v in self.params_.items()}

    def _check_shape(self, data: BinnedTrials) -> None:
        super()._check_shape(data)
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
        self.check_fitted()
        return np.exp(self.params_["log_sigma"]) if "log_sigma" in self.params_ else None

    def n_parameters(self) -> int:
        """Free parameters: every array entry but those a term fixes at zero (J's diagonal,
        A outside the unit order's lower triangle, held-out units' weights)."""
        self.check_fitted()
        n = sum(v.size for v in self.params_.values())
        ctx = self.context()
        return int(n - sum(term.n_fixed(ctx, self.params_) for term in self.terms))

    def sample(self, n: int, *, seed: int,
               like: BinnedTrials | TrialLayout | None = None) -> np.ndarray:
        """(n, n_bins, n_units) counts: an exact ancestral sample, bin by bin, and unit by unit
        (in ``unit_order_``) inside a bin when observations are correlated; sampled spikes feed
        back through every term.

        ``like`` (:class:`~neurorec.data.recording.BinnedTrials` or
        :class:`~neurorec.data.recording.TrialLayout`): the ``n`` trials take its first ``n``
        trials' conditions and stimulus series and its bins per trial (a model with a stimulus
        filter needs its ``stimulus``, binned like the training data's); None: conditions
        ``0, 1, …`` in turn over the fitted ones, ``n_bins_`` bins
        (:func:`~neurorec.data.recording.sample_layout`). With ``sampling.max_rate_hz``
        expected counts are capped there (``last_sample_capped``: the fraction of unit-bins
        capped); otherwise a rate above 10 kHz raises DivergenceError.
        """
        p = self._fitted_tensors()
        condition, n_bins, stimulus = sample_layout(n, like, self.n_conditions_, self.n_bins_,
                                                    self.spec.name)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        cond = torch.as_tensor(np.asarray(condition), device=self.device)
        y = torch.zeros(len(cond), n_bins, self.n_units_, dtype=self.dtype, device=self.device)
        # source None: the terms check the caller's stimulus against the trials
        static = self._static_design(Inputs(cond, n_bins, stimulus, self.bin_size_, None))
        in_bin = [t for t in self.terms if isinstance(t, InBin)]
        cap = self._sample_cap()
        capped = [0]

        def guard(drive: Tensor, t: int, unit: int | None = None) -> Tensor:
            """The drive to sample from: capped (``sampling.max_rate_hz``) or checked."""
            if cap is None:
                self._check_runaway(drive, t, unit)
                return drive
            out = self.obs.cap_drive(drive, cap)
            capped[0] += int((out != drive).sum())
            return out

        with torch.no_grad():
            for t in range(n_bins):
                # drive at t depends only on y[:, :t]; recomputing on the prefix keeps one
                # definition of the model for fitting and sampling
                prefix = {k: (v if k == "condition" else v[: t + 1] if v.ndim == 2
                              else v[:, : t + 1]) for k, v in static.items()}
                prefix["y"] = y[:, : t + 1]
                prefix.update(self._spike_design(y[:, : t + 1], self.bin_size_))
                # y[:, t] is still zero here, so this is the drive without the in-bin term
                drive_t = self._drive(p, prefix)[:, t]
                if not in_bin:
                    drive_t = guard(drive_t, t)
                    y[:, t] = self.obs.sample(drive_t, gen, p.get("log_sigma"))
                    continue
                A = sum(term.weights(self.context(), p) for term in in_bin)
                for i in self.unit_order_:
                    scale = p["log_sigma"][i] if "log_sigma" in p else None
                    drive_i = drive_t[:, i] + self._inputs(y[:, t]) @ A[i]
                    drive_i = guard(drive_i[:, None], t, unit=int(i))[:, 0]
                    y[:, t, i] = self.obs.sample(drive_i, gen, scale)
        self.last_sample_capped = capped[0] / max(1, y.numel())
        return y.cpu().numpy()

    def _sample_cap(self) -> float | None:
        """Expected count per bin at which samples are capped (``sampling.max_rate_hz``)."""
        rate = self.spec.sampling.max_rate_hz
        return None if rate is None or not self.obs.can_run_away else rate * self.bin_size_

    def _check_runaway(self, drive: Tensor, t: int, unit: int | None = None) -> None:
        """Stop a closed-loop sample whose expected count leaves any physiological range.

        One-step-ahead fits can hold positive feedback (history, coupling, recurrence) that
        explodes in closed loop with an exponential link; failing loudly beats sampling
        garbage (torch.poisson wraps to negative counts beyond 2^63).
        """
        if not self.obs.can_run_away:
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
        self.check_fitted()
        if "beta" not in self.params_:
            return None
        return np.einsum("ick,tk->ict", self.params_["beta"], self.stimulus_basis(self.n_bins_))

    def stimulus_filters(self) -> np.ndarray | None:
        """(n_units, n_channels, n_lags) stimulus filters (drive per stimulus unit at lags
        0 .. duration, in bins), or None."""
        self.check_fitted()
        if "k" not in self.params_:
            return None
        return self.params_["k"] @ self.stimulus_filter_basis(self.bin_size_).T

    def history_filters(self) -> np.ndarray | None:
        """(n_units, n_lags) self-history filters (log-gain per past spike), or None."""
        self.check_fitted()
        if "h" not in self.params_:
            return None
        return self.params_["h"] @ self.history_basis(self.bin_size_).T

    def coupling_filters(self) -> np.ndarray | None:
        """(n_units, n_units, n_lags) coupling filters ``[post, pre, lag]``, diagonal zero."""
        self.check_fitted()
        if "J" not in self.params_:
            return None
        filters = self.params_["J"] @ self.coupling_basis(self.bin_size_).T
        filters[np.arange(self.n_units_), np.arange(self.n_units_)] = 0.0
        return filters
