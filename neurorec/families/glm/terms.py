"""The GLM's drive terms: each an additive piece of the linear predictor, as in nemos.

A :class:`~neurorec.families.glm.glm.GLM` is an observation model
(:mod:`neurorec.core.observations`) plus a list of terms; the drive is the sum of the terms'
contributions. Every term owns, for its own parameters:

- ``features``: what it reads of the data (``static_features``: fixed per trial, e.g. the
  stimulus basis; ``spike_features``: computed from the counts its predictors may see, e.g.
  the history basis features — recomputed bin by bin while sampling);
- ``init``: its starting values;
- ``drive``: its contribution to the (n_trials, n_bins, n_units) drive;
- ``penalties``: its penalty group (``"stimulus"``: the ``stimulus_l2`` ridge, ``"weights"``:
  ``l1`` / ``l2``, None: unpenalised) and mask (the weights the model actually uses) — the
  regulariser (:mod:`neurorec.fit.regularise`) computes the penalty from these;
- ``columns``: for a term linear in fixed features, its columns of the per-unit regression
  design (batched Newton, :mod:`neurorec.fit.newton`) and the Gauss-Newton block its
  preconditioner uses; ``view``: the named parameter from its slice of a unit's coefficients;
- ``n_fixed``: entries of its arrays that the model does not use (for ``n_parameters``);
- ``brian2_equations`` / ``brian2_objects``: its part of the Brian 2 network
  (:mod:`neurorec.families.glm.brian2`).

Terms are stateless apart from their settings. Every hook gets a :class:`TermContext`: the
public, read-only view of the model a term may use (its name for messages, dtype and device,
the held-out mask and the counts as predictors see them, the unit order and its in-bin mask,
the fitted bin size); the data sizes come with ``data`` / the design pieces ``d``. A term never
calls the model itself, so a term defined elsewhere (an analysis' own) needs nothing private,
and this module does not import the model.

| term              | params     | features         | penalty   | linear |
|-------------------|------------|------------------|-----------|--------|
| StimulusBasis     | beta       | S (bins × K)     | stimulus  | yes    |
| Bias              | bias       | —                | none      | yes    |
| History           | h          | H (own history)  | weights   | yes    |
| Coupling          | J          | C (all units)    | weights   | yes    |
| StimulusFilter    | k          | X (stimulus)     | stimulus  | yes    |
| InBin             | A          | y(t) (same bin)  | weights   | yes    |
| Latent (R-GLM)    | W0, R, B   | y(t-1)           | weights   | no     |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from neurorec.core.bases import raised_cosine_linear, raised_cosine_log
from neurorec.core.errors import DataError
from neurorec.fit.newton import StimulusBlock

if TYPE_CHECKING:
    from neurorec.data.recording import BinnedTrials

Tensor = torch.Tensor
Mask = Callable[[Tensor], Tensor]


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


def lag_basis(name: str, which: str, n_basis: int, duration: float,
              bin_size: float) -> np.ndarray:
    """(n_lags, n_basis) log-stretched raised cosines over ``duration`` (seconds)."""
    n_lags = max(1, round(duration / bin_size))
    if n_basis > n_lags:
        raise DataError(f"{name}: {which}.n_basis: {n_basis} basis functions need ≥ {n_basis} "
                        f"lags, but {which}.duration {duration * 1e3:g} ms is {n_lags} bins of "
                        f"{bin_size * 1e3:g} ms (lengthen it or use fewer functions)")
    return raised_cosine_log(n_lags, n_basis)


@dataclass(frozen=True)
class TermContext:
    """What a term may read of the model it belongs to (built by the model for each call:
    ``GLM.context()``); everything else comes with the data or the design pieces ``d``.

    Attributes:
        name: the model's name (the spec's), for messages.
        dtype, device: of every tensor the term makes (:meth:`tensor`).
        heldout: (n_units,) bool, the co-smoothing units whose spikes predict nothing, or
            None (every unit may predict).
        unit_order: (n_units,) units in prediction order (in-bin correlations), or None
            before the model chose it.
        bin_size: the fitted model's bin size in seconds, or None before a fit.
    """

    name: str
    dtype: torch.dtype
    device: torch.device
    heldout: np.ndarray | None = None
    unit_order: np.ndarray | None = None
    bin_size: float | None = None

    def tensor(self, array: np.ndarray | Tensor) -> Tensor:
        """``array`` as a tensor of the model's dtype on its device."""
        return torch.as_tensor(np.ascontiguousarray(array), dtype=self.dtype, device=self.device)

    def heldin(self) -> Tensor | None:
        """(n_units,) 1 for units whose spikes may predict, 0 for held-out; None: all may."""
        if self.heldout is None:
            return None
        return self.tensor((~np.asarray(self.heldout, dtype=bool)).astype(float))

    def inputs(self, y: Tensor) -> Tensor:
        """The counts ``y`` (..., n_units) as predictors see them: held-out units zeroed."""
        keep = self.heldin()
        return y if keep is None else y * keep

    def order_mask(self) -> Tensor:
        """(n_units, n_units) 1 where unit j comes before unit i in ``unit_order`` (and, in
        co-smoothing mode, j is held in)."""
        if self.unit_order is None:
            raise ValueError(f"{self.name}: the unit order is chosen by fit; none yet")
        rank = np.empty(len(self.unit_order), dtype=np.int64)
        rank[self.unit_order] = np.arange(len(self.unit_order))
        mask = rank[None, :] < rank[:, None]
        if self.heldout is not None:
            mask = mask & ~np.asarray(self.heldout, dtype=bool)[None, :]
        return self.tensor(mask.astype(float))


@dataclass
class Inputs:
    """What terms read of a batch of trials besides the counts.

    ``condition`` (n_trials,) int tensor; ``n_bins``; ``stimulus`` (n_trials, n_bins,
    n_channels) numpy series or None; ``bin_size`` seconds; ``source`` names the data in errors.
    """

    condition: Tensor
    n_bins: int
    stimulus: np.ndarray | None
    bin_size: float
    source: str


@dataclass
class Column:
    """A term's columns of the per-unit regression design (rows trial-major).

    ``features`` (n_rows, P) shared by all units, or (n_rows, n_units, P) with ``per_unit``;
    ``used`` (n_units, P) 1 where a weight acts (others are fixed at zero); ``group`` the
    penalty group; ``block`` the structured stimulus block when the columns are one.
    """

    name: str
    features: Tensor
    used: Tensor
    group: str | None
    per_unit: bool = False
    block: StimulusBlock | None = None


def _gauss_newton_block(w: Tensor, features: Tensor, used: Tensor) -> Tensor:
    """(n_units, P, P) ``w_i FᵀF`` on used weights, identity rows for unused ones."""
    gram = w[:, None, None] * (features.T @ features)[None]
    keep = used[:, :, None] * used[:, None, :]
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    return gram * keep + eye * (1 - used)[:, :, None]


class Term:
    """One additive piece of the drive (see the module docstring for the contract)."""

    #: parameter names this term owns, in ``params_`` order
    params: ClassVar[tuple[str, ...]] = ()
    #: True when the drive is linear in fixed features of the data (batched Newton applies)
    linear: ClassVar[bool] = True
    #: penalty group of every parameter: "stimulus", "weights" or None
    group: ClassVar[str | None] = "weights"

    def static_features(self, ctx: TermContext, inputs: Inputs) -> dict[str, Tensor]:
        """Design entries that do not read the counts (computed once per batch): 2-D
        entries are (n_bins, ...) shared by all trials, others (n_trials, n_bins, ...)."""
        return {}

    def spike_features(self, ctx: TermContext, x: Tensor, bin_size: float) -> dict[str, Tensor]:
        """Design entries computed from the predictor counts ``x`` (n_trials, n_bins, n_units)
        (held-out units zeroed)."""
        return {}

    def init(self, ctx: TermContext, data: BinnedTrials, gen: torch.Generator,
             baseline: np.ndarray) -> dict[str, Tensor]:
        """Start values; ``baseline`` (n_units,) the drive at each unit's mean rate."""
        raise NotImplementedError

    def drive(self, ctx: TermContext, p: dict[str, Tensor], d: dict[str, Tensor]) -> Tensor:
        """(n_trials, n_bins, n_units) contribution (or broadcastable to it)."""
        raise NotImplementedError

    def masks(self, ctx: TermContext) -> dict[str, Mask | None]:
        """{param: None (every weight is used) or a function of the parameter's value giving
        the 0/1 mask (broadcastable to it) of the weights the model uses}."""
        return dict.fromkeys(self.params)

    def penalties(self, ctx: TermContext) -> list[tuple[str, str | None, Mask | None]]:
        """(param, group, mask) for the regulariser, one per parameter."""
        return [(name, self.group, mask) for name, mask in self.masks(ctx).items()]

    def columns(self, ctx: TermContext, d: dict[str, Tensor], n_conditions: int) -> list[Column]:
        """Columns of the per-unit regression design (linear terms only)."""
        raise NotImplementedError(f"{type(self).__name__} is not linear in fixed features")

    def grams(self, ctx: TermContext, d: dict[str, Tensor], w: Tensor,
              n_conditions: int) -> dict[str, Tensor]:
        """Gauss-Newton blocks at per-bin curvature ``w`` (n_units,) for the preconditioner;
        default: ``w FᵀF`` of the term's shared columns."""
        if not self.linear:
            return {}
        return {c.name: _gauss_newton_block(w, c.features, c.used)
                for c in self.columns(ctx, d, n_conditions) if not c.per_unit}

    def view(self, name: str, w: np.ndarray, data: BinnedTrials) -> np.ndarray:
        """The parameter ``name`` from its (n_units, P) coefficient slice."""
        return w

    def group_l2(self) -> dict[str, float]:
        """L2 weights of penalty groups this term defines (beyond stimulus / weights)."""
        return {}

    def finalise(self, ctx: TermContext, params: dict[str, Tensor]) -> dict[str, Tensor]:
        """Parameters to store after a fit in place of the optimised ones (e.g. a bounded
        reparametrisation's effective matrix); default: none."""
        return {}

    def warm_start(self, ctx: TermContext) -> bool:
        """Whether a non-linear term starts from the fitted GLM of the linear terms."""
        return False

    def warm_values(self, ctx: TermContext, init: dict[str, Tensor]) -> dict[str, Tensor]:
        """Start values (over ``init``) at which this term's drive is zero (warm start)."""
        return {}

    def n_fixed(self, ctx: TermContext, params: dict[str, np.ndarray]) -> int:
        """Entries of this term's arrays fixed at zero (not free parameters)."""
        return 0

    def brian2_equations(self, net: Any) -> None:
        """Declare unit variables, lag bases, drive terms and tables on the network builder."""

    def brian2_objects(self, net: Any) -> None:
        """Set values and add Brian 2 objects once the unit group exists."""


class StimulusBasis(Term):
    """``Σ_k β[i, c, k] S_k(t)``: raised cosines tiling the trial, per unit and condition.

    Penalised by the ``stimulus_l2`` ridge centred on each unit's mean rate (the model's
    ``stimulus_centre_``)."""

    params = ("beta",)
    group = "stimulus"

    def __init__(self, n_basis: int):
        self.n_basis = n_basis

    def basis(self, n_bins: int) -> np.ndarray:
        """(n_bins, n_basis) raised cosines tiling the trial."""
        return raised_cosine_linear(n_bins, self.n_basis)

    def static_features(self, ctx: TermContext, inputs: Inputs) -> dict[str, Tensor]:
        return {"S": ctx.tensor(self.basis(inputs.n_bins))}

    def init(self, ctx, data, gen, baseline):
        basis = self.basis(data.counts.shape[1])
        ones_coef = np.linalg.lstsq(basis, np.ones(len(basis)), rcond=None)[0]
        beta = (baseline[:, None, None] * ones_coef[None, None, :]
                * np.ones((1, data.n_conditions, 1)))
        return {"beta": ctx.tensor(beta)}

    def drive(self, ctx, p, d):
        return torch.einsum("tk,ibk->bti", d["S"], p["beta"][:, d["condition"]])

    def columns(self, ctx, d, n_conditions):
        y = d["y"]
        block = StimulusBlock(d["condition"].cpu(), d["S"].cpu(), n_conditions, 0)
        return [Column("beta", block.design(y.dtype, y.device),
                       y.new_ones(y.shape[2], block.n_cols), self.group, block=block)]

    def grams(self, ctx, d, w, n_conditions):
        n_c = torch.bincount(d["condition"], minlength=n_conditions).to(d["y"].dtype)
        return {"beta": (w[:, None, None, None] * n_c[None, :, None, None]
                         * (d["S"].T @ d["S"])[None, None])}

    def view(self, name, w, data):
        return w.reshape(w.shape[0], data.n_conditions, -1)

    def stimulus_table(self, p: dict[str, np.ndarray], n_bins: int,
                       n_conditions: int) -> np.ndarray:
        """(n_bins, n_conditions, n_units) drive."""
        return np.einsum("ick,tk->tci", p["beta"], self.basis(n_bins))

    def brian2_equations(self, net):
        net.add_condition_table(self.stimulus_table(net.p, net.n_bins, net.model.n_conditions_))


class Bias(Term):
    """A constant per unit (the intercept when the stimulus drive is off); unpenalised."""

    params = ("bias",)
    group = None

    def init(self, ctx, data, gen, baseline):
        return {"bias": ctx.tensor(baseline)}

    def drive(self, ctx, p, d):
        return p["bias"].expand_as(d["y"])

    def columns(self, ctx, d, n_conditions):
        y = d["y"]
        rows = y.shape[0] * y.shape[1]
        return [Column("bias", y.new_ones(rows, 1), y.new_ones(y.shape[2], 1), None)]

    def grams(self, ctx, d, w, n_conditions):
        return {}  # scaled by its Gauss-Newton diagonal, like the non-linear weights

    def view(self, name, w, data):
        return w[:, 0]

    def brian2_equations(self, net):
        net.add_condition_table(np.broadcast_to(
            net.p["bias"], (net.n_bins, net.model.n_conditions_, net.model.n_units_)))


class _LagTerm(Term):
    """A filter on past spikes in a log-stretched raised-cosine basis."""

    key: ClassVar[str]  # design entry
    which: ClassVar[str]  # spec field, for messages

    def __init__(self, n_basis: int, duration: float):
        self.n_basis, self.duration = n_basis, duration

    def basis(self, ctx: TermContext, bin_size: float) -> np.ndarray:
        """(n_lags, n_basis) log-stretched raised cosines over the window."""
        return lag_basis(ctx.name, self.which, self.n_basis, self.duration, bin_size)

    def spike_features(self, ctx, x, bin_size):
        return {self.key: history_features(x, ctx.tensor(self.basis(ctx, bin_size)))}

    def brian2_equations(self, net):
        net.lag_bases[self.key.lower()] = self.basis(net.context, net.context.bin_size)


class History(_LagTerm):
    """``Σ_k h[i, k] Σ_l H_k(l) y_i(t - l)``: each unit's own past spikes."""

    params = ("h",)
    key, which = "H", "history"

    def init(self, ctx, data, gen, baseline):
        return {"h": ctx.tensor(np.zeros((data.counts.shape[2], self.n_basis)))}

    def drive(self, ctx, p, d):
        return torch.einsum("btik,ik->bti", d["H"], p["h"])

    def masks(self, ctx):
        keep = ctx.heldin()  # a held-out unit's own history is fixed at zero
        return {"h": None if keep is None else lambda w: keep[:, None]}

    def columns(self, ctx, d, n_conditions):
        H = d["H"]
        n_trials, n_bins, n_units, kh = H.shape
        keep = ctx.heldin()
        own = (H.new_ones(n_units, kh) if keep is None else keep[:, None].expand(-1, kh))
        return [Column("h", H.reshape(n_trials * n_bins, n_units, kh), own, self.group,
                       per_unit=True)]

    def grams(self, ctx, d, w, n_conditions):
        gram = w[:, None, None] * torch.einsum("btik,btil->ikl", d["H"], d["H"])
        keep = ctx.heldin()
        if keep is not None:
            eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
            gram = gram * keep[:, None, None] + eye * (1 - keep)[:, None, None]
        return {"h": gram}

    def n_fixed(self, ctx, params):
        n_ho = 0 if ctx.heldout is None else int(np.sum(ctx.heldout))
        return n_ho * params["h"].shape[1]

    def brian2_equations(self, net):
        super().brian2_equations(net)
        net.eqs += [f"h_{k} : 1 (constant)" for k in range(self.n_basis)]
        net.drive_terms += [f"h_{k} * fh_{k}" for k in range(self.n_basis)]

    def brian2_objects(self, net):
        for k in range(self.n_basis):
            setattr(net.units, f"h_{k}", np.tile(net.p["h"][:, k], net.n_trials))


class Coupling(_LagTerm):
    """``Σ_{j≠i} Σ_k J[i, j, k] Σ_l H_k(l) y_j(t - l)``: the other units' past spikes."""

    params = ("J",)
    key, which = "C", "coupling"

    def init(self, ctx, data, gen, baseline):
        n_units = data.counts.shape[2]
        return {"J": ctx.tensor(np.zeros((n_units, n_units, self.n_basis)))}

    def _used(self, ctx: TermContext, n_units: int, like: Tensor) -> Tensor:
        """(n_units, n_units) 1 where j ≠ i and j is held in."""
        used = 1 - torch.eye(n_units, dtype=like.dtype, device=like.device)
        keep = ctx.heldin()
        return used if keep is None else used * keep[None, :]

    def drive(self, ctx, p, d):
        y = d["y"]
        eye = torch.eye(y.shape[2], dtype=y.dtype, device=y.device)
        return torch.einsum("btjk,ijk->bti", d["C"], p["J"] * (1 - eye)[..., None])

    def masks(self, ctx):
        return {"J": lambda w: self._used(ctx, w.shape[0], w)[..., None]}

    def columns(self, ctx, d, n_conditions):
        C = d["C"]
        n_trials, n_bins, n_units, k = C.shape
        used = self._used(ctx, n_units, C)
        return [Column("J", C.reshape(n_trials * n_bins, n_units * k),
                       used.repeat_interleave(k, dim=1), self.group)]

    def view(self, name, w, data):
        return w.reshape(w.shape[0], w.shape[0], -1)

    def n_fixed(self, ctx, params):
        n_units, _, k = params["J"].shape
        n_ho = 0 if ctx.heldout is None else int(np.sum(ctx.heldout))
        return n_units * k + n_ho * (n_units - 1) * k

    def brian2_equations(self, net):
        super().brian2_equations(net)
        net.eqs.append("coup : 1")
        net.drive_terms.append("coup")

    def brian2_objects(self, net):
        n_k = self.n_basis
        syn_eqs = [f"w_{k} : 1 (constant)" for k in range(n_k)]
        syn_eqs.append("coup_post = " + net.linear([f"w_{k} * fc_{k}_pre" for k in range(n_k)])
                       + " : 1 (summed)")
        syn = net.synapses(net.units, net.units, "\n".join(syn_eqs), "neurorec_coupling",
                           net.model.n_units_, net.model.n_units_, skip_diagonal=True)
        post_u, pre_u = net.by_pair(syn, net.model.n_units_, net.model.n_units_)
        for k in range(n_k):
            setattr(syn, f"w_{k}", net.p["J"][post_u, pre_u, k])
        net.add_summed(syn, 3)


class StimulusFilter(Term):
    """``Σ_c Σ_k κ[i, c, k] Σ_l K_k(l) s_c(t - l)``: a temporal filter (lags 0 .. duration) on
    a stimulus time series; penalised by the (uncentred) ``stimulus_l2`` ridge."""

    params = ("k",)
    group = "stimulus"

    def __init__(self, n_basis: int, duration: float):
        self.n_basis, self.duration = n_basis, duration

    def basis(self, ctx: TermContext, bin_size: float) -> np.ndarray:
        """(n_lags, n_basis) log-stretched raised cosines over lags 0 .. duration."""
        return lag_basis(ctx.name, "stimulus_filter", self.n_basis, self.duration, bin_size)

    def check_stimulus(self, where: str, shape: tuple[int, ...], got) -> None:
        if got is None or tuple(got[: len(shape)]) != shape:
            raise DataError(f"{where}: stimulus: a model with a stimulus filter samples given a "
                            f"stimulus of shape ({', '.join(map(str, shape))}, n_channels), "
                            f"got {got}")

    def features_of(self, ctx: TermContext, stimulus: np.ndarray | None, bin_size: float,
                    source: str) -> Tensor:
        """(n_trials, n_bins, n_channels, n_basis) stimulus series filtered by the lag basis."""
        if stimulus is None:
            raise DataError(f"{source}: stimulus: stimulus_filter.enabled needs a stimulus time "
                            "series (an NWB stimulus TimeSeries); this data has none")
        basis = ctx.tensor(self.basis(ctx, bin_size))
        return history_features(ctx.tensor(stimulus), basis, first_lag=0)

    def static_features(self, ctx, inputs):
        if inputs.source is None:  # sampling: the caller's series must fit the trials
            self.check_stimulus(ctx.name, (len(inputs.condition), inputs.n_bins),
                                None if inputs.stimulus is None else np.shape(inputs.stimulus))
        return {"X": self.features_of(ctx, inputs.stimulus, inputs.bin_size,
                                      inputs.source or ctx.name)}

    def init(self, ctx, data, gen, baseline):
        n_units, n_channels = data.counts.shape[2], data.stimulus.shape[2]
        return {"k": ctx.tensor(np.zeros((n_units, n_channels, self.n_basis)))}

    def drive(self, ctx, p, d):
        return torch.einsum("btck,ick->bti", d["X"], p["k"])

    def columns(self, ctx, d, n_conditions):
        X = d["X"]
        feats = X.reshape(X.shape[0] * X.shape[1], -1)
        return [Column("k", feats, feats.new_ones(d["y"].shape[2], feats.shape[1]), self.group)]

    def view(self, name, w, data):
        return w.reshape(w.shape[0], data.stimulus.shape[2], -1)

    def brian2_equations(self, net):
        """The drive is an input fixed per bin (it reads no spike): a 2-D ``TimedArray`` over
        (bin, trial × unit), precomputed from the caller's series as in the model."""
        n_channels = net.p["k"].shape[1]
        got = None if net.stimulus is None else np.shape(net.stimulus)
        if got != (net.n_trials, net.n_bins, n_channels):
            raise DataError(f"simulate_brian2({type(net.model).__name__}): stimulus: a model "
                            "with a stimulus filter samples given a stimulus of shape "
                            f"({net.n_trials}, {net.n_bins}, {n_channels}) (trials, bins, "
                            f"channels), got {got}")
        basis = torch.as_tensor(self.basis(net.context, net.context.bin_size), dtype=torch.float64)
        features = history_features(torch.as_tensor(np.asarray(net.stimulus),
                                                     dtype=torch.float64),
                                    basis, first_lag=0).numpy()
        drive = np.einsum("btck,ick->tbi", features, net.p["k"])
        net.add_trial_table("neurorec_stim_filter", drive.reshape(net.n_bins, -1))


class InBin(Term):
    """``Σ_{j before i} A[i, j] y_j(t)``: correlations inside the bin, strictly lower
    triangular in ``unit_order_`` (held-out units never predict)."""

    params = ("A",)

    def init(self, ctx, data, gen, baseline):
        n_units = data.counts.shape[2]
        return {"A": ctx.tensor(np.zeros((n_units, n_units)))}

    def weights(self, ctx: TermContext, p: dict[str, Tensor]) -> Tensor:
        """(n_units, n_units) ``A`` on the pairs in use."""
        return p["A"] * ctx.order_mask()

    def drive(self, ctx, p, d):
        return ctx.inputs(d["y"]) @ self.weights(ctx, p).T

    def masks(self, ctx):
        return {"A": lambda w: ctx.order_mask()}

    def columns(self, ctx, d, n_conditions):
        y = d["y"]
        return [Column("A", ctx.inputs(y).reshape(-1, y.shape[2]), ctx.order_mask(), self.group)]

    def n_fixed(self, ctx, params):
        n = params["A"].shape[0]
        return n * n - int(ctx.order_mask().sum())

    def active(self, net: Any) -> bool:
        """Whether the fitted ``A`` couples any pair (a zero ``A`` needs no in-bin clock)."""
        return bool(np.any(net.p["A"] * net.context.order_mask().cpu().numpy()))

    def brian2_equations(self, net):
        """Units are drawn one after another inside a bin (see brian2.py)."""
        if not net.in_bin:
            return
        net.eqs += ["rank : integer (constant)", "slot : integer (shared)", "ain : 1"]
        net.shift_first.append("slot = 0")  # Brian wants writes to shared variables first

    def brian2_objects(self, net):
        if not net.in_bin:
            return
        n_units = net.model.n_units_
        rank = np.empty(n_units, dtype=np.int64)
        rank[net.context.unit_order] = np.arange(n_units)
        net.units.rank = np.tile(rank, net.n_trials)
        syn = net.synapses(net.units, net.units, "w : 1 (constant)\nain_post = w * ybin_pre : 1 "
                           "(summed)", "neurorec_inbin", n_units, n_units, skip_diagonal=True,
                           dt=net.bin_dt / net.n_sub)
        post_u, pre_u = net.by_pair(syn, n_units, n_units)
        syn.w = (net.p["A"] * net.context.order_mask().cpu().numpy())[post_u, pre_u]
        net.add_summed(syn, 5)


def default_terms(spec: Any) -> list[Term]:
    """The GLM terms a :class:`~neurorec.families.glm.spec.GLMSpec` switches on, in drive
    (and ``params_``) order."""
    terms: list[Term] = [StimulusBasis(spec.stimulus.n_basis) if spec.stimulus.enabled
                         else Bias()]
    if spec.history.enabled:
        terms.append(History(spec.history.n_basis, spec.history.duration))
    if spec.coupling.enabled:
        terms.append(Coupling(spec.coupling.n_basis, spec.coupling.duration))
    if spec.stimulus_filter.enabled:
        terms.append(StimulusFilter(spec.stimulus_filter.n_basis, spec.stimulus_filter.duration))
    if spec.correlated.enabled:
        terms.append(InBin())
    return terms


__all__ = ["Bias", "Column", "Coupling", "History", "InBin", "Inputs", "StimulusBasis",
           "StimulusFilter", "Term", "TermContext", "default_terms", "history_features",
           "lag_basis"]
