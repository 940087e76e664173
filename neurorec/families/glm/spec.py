"""Schemas of the model specs in ``models/*.yaml``.

Units: durations are seconds unless a unit is written (``"100 ms"``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from neurorec.spec.base import Spec, register_model
from neurorec.spec.fitting import FitSpec
from neurorec.spec.units import Seconds


class DataSpec(Spec):
    """How recorded spike trains become counts: trial × time × unit (``mode: trials``) or
    one continuous session, bins × units with behavioural covariates (``mode: session``,
    :mod:`neurorec.data.sessions_io`)."""

    mode: Literal["trials", "session"] = Field(
        "trials", description="trials: a trials table, counts per trial; session: one "
        "continuous recording (NWB without trials, or a bundled session) binned on one clock, "
        "held-out bins from the epochs' split column or blocked folds")
    bin_size: Seconds = Field(0.01, gt=0, le=10, description="bin width, seconds")
    align: str | None = Field(
        None, description="trials mode: a trials column of event times (seconds); window "
        "is then relative to that event instead of start_time")
    series: tuple[str, ...] | None = Field(
        None, description="session mode: behaviour series to read, by name (e.g. 'position') "
        "or NWB path ('processing/behavior/Position/position'); None: every series in "
        "processing/behavior")
    position: str | None = Field(
        "position", description="session mode: the 2-D position series (metres) from which "
        "'speed' (m/s) and 'movement_direction' (rad) are derived; None: derive nothing")
    smooth: Seconds = Field(0.1, ge=0, le=10, description="session mode: s.d. of the "
                            "Gaussian smoothing of position before differentiating, seconds")
    split_column: str = Field("split", min_length=1, description="session mode: the epochs "
                              "column holding NLB split values (train/val/test/none)")
    test_blocks: int = Field(5, ge=1, le=1000, description="session mode without a split "
                             "column: test_fraction of the session held out as this many "
                             "contiguous blocks spread evenly over it")
    gap: Seconds | None = Field(
        None, ge=0, le=3600, description="session mode: guard band between train and held-out "
        "blocks (bins in it are split 'none', and segments restart after it); None: the "
        "model's longest filter (history, coupling, stimulus filter), at least one bin")
    conditions: tuple[str, ...] | None = Field(
        None, description="trials columns whose unique combinations define conditions; "
        "default: the recording's stimulus columns")
    window: tuple[Seconds, Seconds] | None = Field(
        None, description="(start, stop) relative to each trial's start_time, seconds")
    unequal: Literal["crop", "mask"] = Field(
        "crop", description="trials mode, trials of unequal length: crop: every trial cut to "
        "the shortest (a CroppingWarning when bins are lost); mask: each trial keeps its "
        "length, bins past its end are masked out of the likelihood and the scores (kind glm)")
    test_fraction: float = Field(0.2, ge=0.05, le=0.9,
                                 description="held-out trials per condition when the trials "
                                 "table has no 'split' column")

    @model_validator(mode="after")
    def _window_order(self) -> DataSpec:
        if self.window is not None and self.window[1] <= self.window[0]:
            raise ValueError("window: stop must be after start")
        return self


class StimulusDrive(Spec):
    """Per-condition stimulus drive: a raised-cosine basis tiling the trial (Pillow et al. 2008)."""

    enabled: bool = True
    n_basis: int = Field(8, ge=1, le=200, description="basis functions per condition")


class HistorySpec(Spec):
    """Spike-history (self) or coupling (others) filters in a log-stretched raised-cosine basis."""

    enabled: bool = True
    n_basis: int = Field(4, ge=1, le=50)
    duration: Seconds = Field(0.1, gt=0, le=10, description="filter length, seconds")


class StimulusFilterSpec(HistorySpec):
    """A temporal filter on a stimulus time series (lags 0 .. duration), in a log-stretched
    raised-cosine basis, one filter per unit and stimulus channel (Pillow et al. 2008).
    Needs data that carries a stimulus series (an NWB stimulus ``TimeSeries``)."""

    enabled: bool = False
    n_basis: int = Field(8, ge=1, le=50)


class PenaltySpec(Spec):
    """Penalties on history, coupling, in-bin and latent weights (``l1``, ``l2``), and a
    separate ridge on the stimulus drive and stimulus filter (``stimulus_l2``).

    ``stimulus_l2`` exists for separation: a unit that never fires in a condition (or in one
    raised cosine's support) has its unpenalised maximum-likelihood weight at −∞, which
    predicts rate 0 there and an infinite held-out loss for a single test spike; statsmodels
    fails or warns on such units. A weak ridge keeps the optimum finite and changes
    well-supported weights by far less than their standard errors. 0 gives the plain MLE.
    """

    l1: float = Field(0.0, ge=0, description="L1 weight, per bin and neuron (smoothed, see fit)")
    l2: float = Field(0.0, ge=0, description="L2 weight, per bin and neuron")
    stimulus_l2: float = Field(1e-7, ge=0, description="L2 weight on the stimulus drive and "
                               "stimulus filter, per bin and neuron")



class CorrelatedSpec(Spec):
    """Correlations inside a time bin: units predicted in sequence, each conditioned on the
    same-bin counts of the units before it through a strictly lower-triangular ``A``."""

    enabled: bool = False
    order: Literal["rate", "given", "random"] = Field(
        "rate", description="rate: descending mean training rate; given: the data's unit "
        "order; random: a permutation drawn with order_seed")
    order_seed: int = Field(0, ge=0)


class CovariateSpec(Spec):
    """One covariate term of a session model: a behavioural series in a spline basis.

    ``basis``: ``bspline`` (clamped cubic B-splines, uniform knots over ``range``),
    ``cyclic_bspline`` (periodic, for angles; ``range`` is the period, default [0, 2π)),
    ``tensor_bspline`` (a 2-D series, e.g. position: the row-wise product of one B-spline
    basis per column; ``n_basis`` and ``range`` per column), ``raised_cosine_lags`` (a
    temporal filter: log-stretched raised cosines over lags 0 .. ``duration`` of each column)
    or ``product`` (an interaction: the row-wise product of the bases of the two earlier
    entries named in ``of``). Bases come from scipy (:mod:`neurorec.core.splines`).
    """

    name: str = Field(..., min_length=1, max_length=100, description="term name (reports, "
                      "tuning curves, 'of' of a product)")
    series: str | None = Field(None, description="the session covariate it reads (a name "
                               "given by data.series, e.g. 'position', 'head_direction', or "
                               "'speed' / 'movement_direction' derived from data.position); "
                               "None: the term's name")
    basis: Literal["bspline", "cyclic_bspline", "tensor_bspline", "raised_cosine_lags",
                   "product"] = "bspline"
    n_basis: int | tuple[int, int] = Field(8, description="basis functions (tensor_bspline: "
                                           "one number per column, or one for both)")
    order: int = Field(4, ge=2, le=6, description="spline order (4: cubic)")
    range: tuple[float, ...] | None = Field(
        None, description="bspline: [lo, hi] (values outside are clipped); tensor_bspline: "
        "[x_lo, x_hi, y_lo, y_hi]; cyclic_bspline: the period [lo, hi] (default [0, 2π]); "
        "None: the training bins' range (bspline, tensor_bspline)")
    duration: Seconds = Field(0.1, gt=0, le=60, description="raised_cosine_lags: filter "
                              "length, seconds")
    of: tuple[str, str] | None = Field(None, description="product: the two earlier entries "
                                       "it multiplies")
    ridge: float = Field(1e-6, ge=0, description="L2 weight on this term's coefficients, per "
                         "bin and neuron (the objective is the mean NLL)")

    @model_validator(mode="after")
    def _consistent(self) -> CovariateSpec:
        sizes = (self.n_basis,) if isinstance(self.n_basis, int) else self.n_basis
        if any(n < 1 for n in sizes):
            raise ValueError("n_basis: must be ≥ 1")
        if self.basis in ("bspline", "cyclic_bspline", "tensor_bspline") and min(sizes) < \
                self.order:
            raise ValueError(f"n_basis: a {self.basis} of order {self.order} needs ≥ "
                             f"{self.order} functions")
        if self.basis != "tensor_bspline" and not isinstance(self.n_basis, int):
            raise ValueError(f"n_basis: one number for basis '{self.basis}'")
        want = {"bspline": 2, "cyclic_bspline": 2, "tensor_bspline": 4}.get(self.basis)
        if self.range is not None:
            if want is None or len(self.range) != want:
                raise ValueError(f"range: basis '{self.basis}' takes "
                                 f"{'no range' if want is None else f'{want} numbers'}")
            pairs = [self.range[i:i + 2] for i in range(0, len(self.range), 2)]
            if any(not hi > lo for lo, hi in pairs):
                raise ValueError("range: each upper bound must be above its lower bound")
        if (self.basis == "product") != (self.of is not None):
            raise ValueError("of: a 'product' entry names the two entries it multiplies "
                             "(and only a product does)")
        return self


class SamplingSpec(Spec):
    """Closed-loop samples (``simulate``, ``export-nwb``, sample statistics)."""

    max_rate_hz: float | None = Field(
        None, gt=0, le=10_000, description="runaway-safe sampling: each unit's expected count "
        "in a bin is capped at max_rate_hz × bin size while sampling (Poisson), so positive "
        "feedback through history, coupling, A or the latent cannot run away; fits, "
        "predictions and scores are unchanged; the fraction of capped unit-bins of the last "
        "sample is model.last_sample_capped. None: no cap, and a sample above 10 kHz raises "
        "(simulation diverged)")


@register_model("glm")
class GLMSpec(Spec):
    """Poisson / Bernoulli GLM with stimulus drive, spike history and coupling."""

    kind: Literal["glm"] = "glm"
    name: str = Field("glm", min_length=1, max_length=200)
    description: str = ""
    observation: Literal["poisson", "bernoulli", "gaussian"] = "poisson"
    link: Literal["exp", "softplus", "logistic", "identity"] = "exp"
    data: DataSpec = DataSpec()
    stimulus: StimulusDrive = StimulusDrive()
    history: HistorySpec = HistorySpec()
    coupling: HistorySpec = HistorySpec(enabled=False)
    stimulus_filter: StimulusFilterSpec = StimulusFilterSpec()
    covariates: tuple[CovariateSpec, ...] = Field(
        (), description="session mode: behavioural covariate terms (splines of position, head "
        "direction, speed ...), each a drive shared by no unit: one weight vector per unit")
    correlated: CorrelatedSpec = CorrelatedSpec()
    penalty: PenaltySpec = PenaltySpec()
    fit: FitSpec = FitSpec()
    sampling: SamplingSpec = SamplingSpec()
    rate_ceiling_hz: float | None = Field(
        None, gt=0, le=10_000, description="saturating Poisson link: rate = f·(1 + (f/c)^4)"
        "^(-1/4), a smooth min(f, c) with f = link(drive), c = rate_ceiling_hz × bin size; "
        "within (f/c)^4/4 of f below c, never above c, in the fit, scores and samples alike, "
        "so closed-loop samples cannot run away; fitted by L-BFGS from the GLM fitted without "
        "it. None: the plain link")

    @model_validator(mode="after")
    def _covariate_names(self) -> GLMSpec:
        seen: set[str] = set()
        for c in self.covariates:
            if c.name in seen:
                raise ValueError(f"covariates: name '{c.name}' appears twice")
            if c.of is not None and not set(c.of) <= seen:
                raise ValueError(f"covariates: {c.name}: 'of' names {list(c.of)}, but only "
                                 f"earlier entries {sorted(seen)} can be multiplied")
            seen.add(c.name)
        if self.covariates and self.data.mode != "session":
            raise ValueError("covariates: covariate terms need data.mode 'session'")
        return self

    @model_validator(mode="after")
    def _link_fits_observation(self) -> GLMSpec:
        if self.rate_ceiling_hz is not None and self.observation != "poisson":
            raise ValueError("rate_ceiling_hz: a rate ceiling needs observation 'poisson'")
        allowed = {"poisson": ("exp", "softplus"), "bernoulli": ("logistic",),
                   "gaussian": ("identity",)}[self.observation]
        if self.link not in allowed:
            raise ValueError(f"link: '{self.link}' does not suit observation "
                             f"'{self.observation}' (use {' or '.join(allowed)})")
        return self


class RecurrentSpec(Spec):
    """Hidden linear state ``x_t = W0 y_{t-1} + R x_{t-1} [+ U s_t] [+ x0_c at t = 0]``
    (Pachitariu et al. 2013), read out as ``B x_t`` (or ``B σ(x_t)`` with ``saturation``)."""

    dim: int = Field(8, ge=1, le=2048, description="hidden-state dimension")
    init_radius: float = Field(0.5, ge=0, lt=1, description="spectral radius of R at init")
    init_scale: float = Field(0.1, ge=0, le=10, description="std of W0 and readout at init "
                              "(too small and the penalty zeroes R before W0, B grow)")
    warm_start: bool = Field(True, description="start from the fitted GLM (batched Newton, "
                             "same trials) with the readout B = 0, so the fit can only "
                             "improve on it")
    stimulus_input: bool = Field(False, description="the latent also integrates the stimulus: "
                                 "x_t += U s_t, s_t the stimulus drive basis (one-hot condition "
                                 "× stimulus.n_basis raised cosines) or, with stimulus_filter "
                                 "enabled, the stimulus time series")
    initial_state: bool = Field(False, description="a learned initial state per condition, "
                                "x0_c, added to the state in the first bin of each trial")
    l2: float | None = Field(None, ge=0, description="L2 weight on the latent's W0, R, B (and "
                             "U, x0) instead of penalty.l2 (None: penalty.l2), per bin and "
                             "neuron; penalty.l1 applies to them either way")
    max_radius: float | None = Field(None, gt=0, le=1, description="stability guard: the "
                                     "recurrence used is R·min(1, max_radius/‖R‖₂), so its "
                                     "spectral norm (hence every |eigenvalue|) stays ≤ "
                                     "max_radius in the fit, and the stored R is that matrix; "
                                     "None: unbounded")
    alternations: int = Field(0, ge=0, le=10, description="sessions: after the latent is "
                              "fitted, refit the GLM's covariate and history weights with the "
                              "latent's drive as a fixed offset, then the latent again, this "
                              "many times (alternating maximisation: the GLM fitted alone is "
                              "biased by the shared fluctuations it cannot see); 0: the GLM "
                              "is fitted once, alone")
    saturation: float | None = Field(None, gt=0, description="stability guard: the readout is "
                                     "B·(s·tanh(x_t/s)) with s = saturation, so the latent adds "
                                     "at most Σ_d |B_id|·s to unit i's drive and cannot run "
                                     "away in closed loop; None: the linear readout B·x_t")


@register_model("rglm")
class RGLMSpec(GLMSpec):
    """GLM plus a hidden linear recurrent state feeding every neuron's rate."""

    kind: Literal["rglm"] = "rglm"  # type: ignore[assignment]
    name: str = Field("rglm", min_length=1, max_length=200)
    recurrent: RecurrentSpec = RecurrentSpec()
