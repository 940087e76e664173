"""Judge a fitted spike-train model as the field does, on its own held-out data or other data.

``neurorec evaluate FIT_DIR [--data ...] --out DIR`` and ``neurorec fit`` (whose
``metrics.json`` gains the same keys) both call :func:`evaluation_metrics`:

- ``bits_per_spike`` (NLB), ``co_bps`` when the fit held units out;
- ``fp_bps``: NLB's forward prediction — the last ``fp_window_s`` of every evaluated trial is
  predicted from the spikes before it only (the model's expected counts there, averaged over
  ``fp_draws`` seeded ancestral continuations of the observed past), scored in bits/spike;
- ``psth_r2``: NLB's PSTH R² (each condition's mean predicted rate over evaluated trials
  against the Gaussian-smoothed trial average of all trials of the data);
- time rescaling with the discrete-time correction on the one-step-ahead conditional
  intensity (:mod:`neurorec.analysis.goodness_of_fit`): ``ks``, ``ks_fraction_in_band``,
  ``ks_failing_units``, ``rescaled_autocorrelation``;
- ``standard_errors`` of a GLM's coefficients from the observed Fisher information of the
  training log-likelihood.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from neurorec.analysis.goodness_of_fit import rescaling_summary, time_rescaling
from neurorec.core.errors import DataError, DivergenceError
from neurorec.core.metrics import (
    bits_per_spike,
    condition_psth,
    log_likelihood,
    per_neuron_bits_per_spike,
    psth_r2,
    ridge_decoding_r2,
)
from neurorec.data.recording import BinnedTrials, Recording
from neurorec.families import MODELS, Model
from neurorec.families.base import SPEC_FILE, STATE_FILE
from neurorec.fit.newton import weighted_grams
from neurorec.spec.base import Spec

#: the forward-prediction window (NLB: 200 ms past the end of the observed window)
FP_WINDOW_S = 0.2
#: ancestral continuations averaged for the forward prediction (``neurorec evaluate``)
FP_DRAWS = 20
#: the same in ``neurorec fit``, where the evaluation must stay a small part of the run
FIT_FP_DRAWS = 4
#: SD of the Gaussian smoothing the true PSTH (seconds)
PSTH_SMOOTH_S = 0.05


@dataclass
class Evaluation:
    """Numbers (``metrics``, JSON-ready) and the arrays the report draws."""

    metrics: dict
    rescaled: list = field(default_factory=list)        # UnitRescaling per unit
    standard_errors: dict | None = None                 # param -> array, like params_
    unit_ids: np.ndarray | None = None


# ------------------------------------------------------------------ forward prediction
def _in_bin_order(model: Model) -> np.ndarray | None:
    """The in-bin unit order of a model whose units condition on same-bin counts (the
    R-GLM / GLM ``correlated`` A), else None."""
    corr = getattr(model.spec, "correlated", None)
    if corr is not None and corr.enabled:
        return np.asarray(model.unit_order_)
    return None


#: an expected count above this rate (Hz) in a continuation means closed-loop runaway
#: (the GLM sampler's limit)
RUNAWAY_HZ = 10_000.0


def _inverse_cdf(u: np.ndarray, rate: np.ndarray, observation: str) -> np.ndarray:
    """The smallest count ``k`` with ``CDF(k) ≥ u`` (Poisson; ``scipy.stats.poisson.ppf``),
    or ``u < p`` (Bernoulli)."""
    if observation == "bernoulli":
        return (u < rate).astype(float)
    lam = np.clip(rate, 0.0, None)
    big = lam > 30.0  # the term recursion below underflows e^{-λ}: scipy for those
    k = np.zeros_like(lam)
    term = np.exp(-np.where(big, 0.0, lam))
    cdf = term.copy()
    below = (cdf < u) & ~big
    n = 0
    while below.any():
        n += 1
        k[below] += 1.0
        term = term * lam / n
        cdf = cdf + term
        below &= cdf < u
    if big.any():
        k[big] = stats.poisson.ppf(u[big], lam[big])
    return k


def forward_rates(model: Model, data: BinnedTrials, n_forward: int, n_draws: int = FP_DRAWS,
                  seed: int = 0) -> np.ndarray:
    """Expected counts in the last ``n_forward`` bins of every trial given only the spikes
    before them: the mean over ``n_draws`` ancestral continuations (seeded) of the model's
    one-step-ahead rates.

    The continuations are drawn by inverse CDF from fixed uniforms ``U`` (one per draw, bin
    and unit) and found as a fixed point: each pass computes every forward bin's rate from
    the previous pass's counts (one ``predict_rate`` call on the trials still changing) and
    redraws them all. Rates at a bin depend only on earlier bins (and, with in-bin
    correlations, on earlier units of the same bin), so pass ``k`` fixes the first ``k``
    steps of that order and the only fixed point is the ancestral sample ``y_t =
    F⁻¹(U_t; λ_t(y_<t))``; a pass that changes nothing ends the iteration (exactly the
    sequential result, usually after a few passes instead of one per bin and unit).

    Returns:
        (n_trials, n_forward, n_units) expected counts per bin.
    A spec with ``sampling.max_rate_hz`` caps the continuations' expected counts there, as
    its ``sample`` does.

    Raises:
        DivergenceError: a continuation ran away (an expected count above 10 kHz).
    """
    n_trials, n_bins, n_units = data.counts.shape
    ceiling = RUNAWAY_HZ * data.bin_size
    # a spec that caps its closed-loop samples (sampling.max_rate_hz) caps its continuations
    cap_hz = getattr(getattr(model.spec, "sampling", None), "max_rate_hz", None)
    cap = np.inf if cap_hz is None else cap_hz * data.bin_size
    start = n_bins - n_forward
    obs = model.observation_name
    u = np.random.default_rng(seed).random((n_draws * n_trials, n_forward, n_units))
    rep = np.tile(np.asarray(data.counts, float), (n_draws, 1, 1))
    rep[:, start:] = 0.0
    stim = None if data.stimulus is None else np.tile(data.stimulus, (n_draws, 1, 1))
    cond = np.tile(data.condition, n_draws)
    rates = np.zeros((len(rep), n_forward, n_units))
    active = np.arange(len(rep))
    steps = n_forward * (n_units if _in_bin_order(model) is not None else 1)
    for _ in range(steps + 1):
        sim = BinnedTrials(rep[active], data.bin_size, data.time, cond[active],
                           data.condition_table, np.ones(len(active), bool), data.unit_ids,
                           data.source, None if stim is None else stim[active])
        r = np.minimum(model.predict_rate(sim)[:, start:], cap)
        rates[active] = r
        y = _inverse_cdf(u[active], np.minimum(r, ceiling), obs)
        changed = (y != rep[active, start:]).any(axis=(1, 2))
        rep[active, start:] = y
        active = active[changed]
        if len(active) == 0:
            break
    assert len(active) == 0, "the continuation's fixed point must be reached"  # by induction
    if not rates.max(initial=0.0) <= ceiling:
        raise DivergenceError(f"forward prediction diverged: an expected count of "
                              f"{float(np.nanmax(rates)):.3g} per bin (above {RUNAWAY_HZ:g} "
                              "Hz) in a closed-loop continuation")
    return rates.reshape(n_draws, n_trials, n_forward, n_units).mean(axis=0)


# ------------------------------------------------------------------ standard errors
def glm_standard_errors(model: Model, train: BinnedTrials) -> tuple[dict | None, str]:
    """Standard errors of a GLM's parameters from the observed Fisher information of the
    training log-likelihood, per unit ``(Z' W Z)^{-1}``, ``Z`` the unit's design (shared
    columns and its own history), ``W`` the second derivative of the NLL with respect to the
    drive in each bin (Poisson with exp link: the rate). Penalties are not included.

    Returns:
        ({param: array shaped like ``params_[param]``} with NaN for entries fixed at zero or
        units whose information is singular, plus ``history_filter`` (n_units, n_lags), the
        s.e. of each history filter per lag from the full covariance of its weights, and
        ``coupling_filter`` (n_units post, n_units pre, n_lags) the same for each coupling
        filter (NaN on the diagonal and for couplings not fitted); note)
        — or (None, why) for a model not linear in fixed features (an R-GLM's latent) or not
        Poisson/Bernoulli.
    """
    terms = getattr(model, "terms", None)
    if terms is None or not all(t.linear for t in terms):
        return None, f"{model.kind}: standard errors need a GLM linear in fixed features"
    if model.observation_name not in ("poisson", "bernoulli"):
        return None, f"{model.observation_name}: standard errors are for Poisson/Bernoulli"
    prob = model.newton_design(train)
    X = prob["X"].to(torch.float64)
    unit_X = None if prob["unit_X"] is None else prob["unit_X"].to(torch.float64)
    mask = prob["mask"].cpu().numpy()
    n_units = mask.shape[0]
    # the drive from the design and the fitted coefficients (rows trial-major)
    coef = model.coefficients(model.params_, prob["slices"], mask.shape[1])
    p = X.shape[1]
    eta = X @ coef[:, :p].T
    if unit_X is not None:
        eta = eta + torch.einsum("nue,ue->nu", unit_X, coef[:, p:])
    eta = eta.detach().requires_grad_(True)
    nll = model.obs.nll(prob["Y"].to(torch.float64), eta).sum()
    (g,) = torch.autograd.grad(nll, eta, create_graph=True)
    (w,) = torch.autograd.grad(g.sum(), eta)  # the NLL is elementwise: its Hessian diagonal
    w = w.detach()
    grams = weighted_grams(X, w.T.contiguous(), unit_X, prob["block"])
    se = np.full(mask.shape, np.nan)
    h_slice = prob["slices"].get("h")
    h_basis = None if h_slice is None else model.history_basis(float(model.bin_size_))
    h_filter_se = None if h_slice is None else np.full((n_units, h_basis.shape[0]), np.nan)
    j_slice = prob["slices"].get("J")
    j_basis = None if j_slice is None else model.coupling_basis(float(model.bin_size_))
    j_filter_se = (None if j_slice is None
                   else np.full((n_units, n_units, j_basis.shape[0]), np.nan))
    singular = []
    for u in range(n_units):
        cols = np.flatnonzero(mask[u])
        H = grams[u][np.ix_(cols, cols)].cpu().numpy()
        evals = np.linalg.eigvalsh(H)
        if not evals.min() > 1e-10 * max(float(evals.max()), 1e-300):
            singular.append(u)
            continue
        cov = np.linalg.inv(H)
        se[u, cols] = np.sqrt(np.diag(cov))
        if h_slice is not None:  # the history filter's s.e. per lag: sqrt(b_l' Σ_h b_l)
            full = np.zeros((mask.shape[1], mask.shape[1]))
            full[np.ix_(cols, cols)] = cov
            cov_h = full[h_slice, h_slice]
            h_filter_se[u] = np.sqrt(np.einsum("lk,kj,lj->l", h_basis, cov_h, h_basis))
        if j_slice is not None:  # each coupling filter's s.e. per lag: sqrt(b_l' Σ_j b_l)
            k = j_basis.shape[1]
            for j in range(n_units):  # J's columns are (pre unit, basis), pre-major
                sl = np.arange(j_slice.start + j * k, j_slice.start + (j + 1) * k)
                used = mask[u, sl]
                if not used.all():  # no coupling from j (itself, or a held-out unit): NaN
                    continue
                pos = np.searchsorted(cols, sl)
                cov_j = cov[np.ix_(pos, pos)]
                j_filter_se[u, j] = np.sqrt(np.einsum("lk,kq,lq->l", j_basis, cov_j, j_basis))
    params = model._params_from_coef(torch.as_tensor(se), prob["slices"], train)
    if h_filter_se is not None:
        params["history_filter"] = h_filter_se
    if j_filter_se is not None:
        params["coupling_filter"] = j_filter_se
    note = ("observed Fisher information of the training log-likelihood (penalties not "
            "included)")
    if singular:
        note += f"; singular information (NaN) for units {singular}"
    return params, note


# ------------------------------------------------------------------ the evaluation
def _fp_scores(model: Model, test: BinnedTrials, n_forward: int, fp_draws: int,
               seed: int) -> dict:
    """``fp_bps`` (NLB: Poisson bits/spike on the forward window), or None with ``fp_note``
    when the model's continuations run away."""
    try:
        fwd = forward_rates(model, test, n_forward, fp_draws, seed)
    except DivergenceError as err:  # an unstable model has no forward prediction
        return {"fp_bps": None, "fp_note": err.lines[0]}
    return {"fp_bps": bits_per_spike(test.counts[:, -n_forward:], fwd)}


def evaluation_metrics(model: Model, test: BinnedTrials, all_trials: BinnedTrials,
                       train: BinnedTrials | None = None, test_rates: np.ndarray | None = None,
                       seed: int = 0, fp_window_s: float = FP_WINDOW_S,
                       fp_draws: int = FP_DRAWS, psth_smooth_s: float = PSTH_SMOOTH_S,
                       heldout: np.ndarray | None = None,
                       fp_in_bin: bool = True) -> Evaluation:
    """Every score of ``model`` on the evaluated trials ``test``.

    Args:
        test: the evaluated trials (held-out trials, or all trials of other data).
        all_trials: every trial of the data (the true PSTH's trials).
        train: the fit's training trials (standard errors); None: none computed.
        test_rates: ``model.predict_rate(test)`` if already computed.
        seed: seeds the rescaling draws and the forward continuations.
        heldout: (n_units,) bool co-smoothing mask of the fit (adds ``co_bps``).
        fp_draws: ancestral continuations averaged for ``fp_bps``.
        fp_in_bin: False: no ``fp_bps`` for a model with in-bin correlations, whose
            continuation takes one model evaluation per unit and bin (``fp_note`` says so).
    """
    obs, scale = model.observation_name, model.noise_scale()
    rates = model.predict_rate(test) if test_rates is None else test_rates
    counts = test.counts
    m: dict = {
        "bits_per_spike": bits_per_spike(counts, rates, obs, scale),
        "log_likelihood": log_likelihood(counts, rates, obs, scale),
        "per_neuron_bits_per_spike": per_neuron_bits_per_spike(counts, rates, obs, scale),
        "n_spikes": int(counts.sum()),
        "n_neurons": int(counts.shape[2]),
        "n_bins": int(counts.shape[0] * counts.shape[1]),
        "n_trials": int(counts.shape[0]),
        "unit_ids": [str(u) for u in test.unit_ids],
        "evaluation_seed": int(seed),
    }
    if heldout is not None:
        from neurorec.workflows.cosmoothing import co_bps

        ho = np.asarray(heldout, bool)
        m["co_bps"] = co_bps(counts[..., ho], rates[..., ho])
    # forward prediction (NLB fp-bps): Poisson bits/spike on the forward window
    n_forward = round(fp_window_s / test.bin_size)
    if 0 < n_forward < counts.shape[1] and obs in ("poisson", "bernoulli"):
        m["fp_window_s"] = n_forward * test.bin_size
        m["fp_draws"] = int(fp_draws)
        if fp_in_bin is False and _in_bin_order(model) is not None:
            m["fp_bps"] = None
            m["fp_note"] = ("not computed by `neurorec fit` for a model with in-bin "
                            "correlations (one continuation step per unit); run "
                            "`neurorec evaluate`")
        else:
            m.update(_fp_scores(model, test, n_forward, fp_draws, seed))
    # PSTH R² (NLB): true PSTH from all trials, predicted from the evaluated ones
    psth = condition_psth(all_trials.counts, all_trials.condition, all_trials.n_conditions,
                          psth_smooth_s / test.bin_size)
    m["psth_r2"] = psth_r2(psth, rates, test.condition)
    m["psth_smooth_s"] = psth_smooth_s
    out = Evaluation(m, unit_ids=np.asarray(test.unit_ids))
    if obs in ("poisson", "bernoulli"):
        out.rescaled = time_rescaling(counts, rates, obs, seed=seed)
        m.update(rescaling_summary(out.rescaled, test.unit_ids))
        m["time_rescaling"] = ("discrete-time correction (Haslinger, Pipa & Brown 2010) on "
                               "the one-step-ahead conditional intensity; trials concatenated")
    if train is not None:
        se, note = glm_standard_errors(model, train)
        out.standard_errors = se
        m["standard_errors"] = se
        m["standard_errors_note"] = note
    return out


# ------------------------------------------------------------------ sessions
def session_scores(counts: np.ndarray, rates: np.ndarray, split: np.ndarray,
                   segment: np.ndarray, covariates: dict[str, np.ndarray], unit_ids: np.ndarray,
                   seed: int = 0) -> Evaluation:
    """Scores of a session's one-step-ahead rates on its ``test`` bins.

    Args:
        counts, rates: (n_bins, n_units) observed and predicted counts per bin.
        split: (n_bins,) NLB split value per bin; segment: (n_bins,) stretch ids.
        covariates: name -> (n_bins, n_dims) behaviour; ``behaviour_r2[name]`` decodes it
            from the predicted rates by NLB's cross-validated ridge (fitted on the train bins,
            R² on the test bins).
    """
    test, train = split == "test", split == "train"
    y, r = counts[test], rates[test]
    m: dict = {
        "bits_per_spike": bits_per_spike(y[None], r[None]),
        "log_likelihood": log_likelihood(y[None], r[None]),
        "per_neuron_bits_per_spike": per_neuron_bits_per_spike(y[None], r[None]),
        "n_spikes": int(y.sum()), "n_neurons": int(counts.shape[1]),
        "n_bins": int(test.sum()), "unit_ids": [str(u) for u in unit_ids],
        "evaluation_seed": int(seed),
        "fp_bps": None, "fp_note": "forward prediction is defined on trials (NLB)",
        "psth_r2": None, "psth_note": "PSTH R² is defined on trials with conditions",
    }
    # stretches of consecutive test bins inside one segment: intervals restart at each
    run = np.cumsum(np.concatenate([[1], (segment[1:] != segment[:-1])
                                    | (test[1:] != test[:-1])]))[test]
    out = Evaluation(m, unit_ids=np.asarray(unit_ids))
    out.rescaled = time_rescaling(y, r, "poisson", seed=seed, segments=run)
    m.update(rescaling_summary(out.rescaled, unit_ids))
    m["time_rescaling"] = ("discrete-time correction (Haslinger, Pipa & Brown 2010) on the "
                           "one-step-ahead conditional intensity; restarted at each stretch "
                           "of test bins")
    m["behaviour_r2"] = {
        name: ridge_decoding_r2(rates[train], np.asarray(x)[train], r, np.asarray(x)[test])
        for name, x in covariates.items()}
    return out


def session_evaluation(fit: LoadedFit, data: str | None, seed: int = 0) -> Evaluation:
    """Evaluate a session fit: its own test bins (rates from ``predictions.npz``, covariates
    from its session loaded again), or the test bins of another session ``data`` with the
    same units (the session model reloaded and run on it). Circular covariates (the
    session's ``metadata["circular"]``, radians) are decoded as (cos, sin)."""
    from neurorec.workflows.session_fit import load_session_for, session_model_class

    with np.load(fit.fit_dir / "predictions.npz") as pred:
        own = {k: pred[k] for k in ("rates", "counts", "split", "segment", "unit_ids")}
    source = fit.metrics.get("data") if data is None else data
    session = load_session_for(fit.spec, source, int(fit.metrics.get("seed", 0)))
    got = [str(u) for u in session.unit_ids]
    expected = [str(u) for u in own["unit_ids"]]
    if got != expected:
        raise DataError(f"{source}: units: the fit has {len(expected)} units "
                        f"{_short(expected)}, the data {len(got)} units {_short(got)}")
    if data is None:
        if not np.array_equal(session.counts, own["counts"]):
            raise DataError(f"{source}: counts: the session loaded again differs from the "
                            f"fit's predictions.npz")
        rates = own["rates"]
    else:
        rates = session_model_class(fit.spec.kind).load(fit.fit_dir).predict_rate(session)
    return session_scores(session.counts, rates, np.asarray(session.split).astype(str),
                          np.asarray(session.segment), session_behaviour(session),
                          session.unit_ids, seed)


def session_behaviour(session) -> dict[str, np.ndarray]:
    """The covariates ``behaviour_r2`` decodes: each (n_bins, n_dims); a circular one (the
    session's ``metadata["circular"]``, radians) as its (cos, sin)."""
    circular = set(session.metadata.get("circular", ()))
    out = {}
    for name, value in session.covariates.items():
        x = np.asarray(value, float).reshape(len(value), -1)
        out[name] = np.column_stack([np.cos(x), np.sin(x)]) if name in circular else x
    return out


# ------------------------------------------------------------------ fit directories
@dataclass
class LoadedFit:
    model: Model | None  # None for a session fit (its rates are in predictions.npz)
    spec: Spec
    metrics: dict
    fit_dir: Path


def load_fit(fit_dir: Path) -> LoadedFit:
    """The model and metrics of a ``neurorec fit`` output directory; DataError (one line)
    when ``fit_dir`` is missing, incomplete or holds a model that is not a spike-train fit."""
    from neurorec.spec import load_model_spec
    from neurorec.workflows.simulate import load_fitted

    fit_dir = Path(fit_dir)
    if not fit_dir.is_dir():
        raise DataError(f"{fit_dir}: FIT_DIR: not found (expected a `neurorec fit` output "
                        "directory)")
    for name in (SPEC_FILE, "metrics.json"):
        if not (fit_dir / name).is_file():
            raise DataError(f"{fit_dir}: {name}: not found (not a `neurorec fit` output dir)")
    spec = load_model_spec(fit_dir / SPEC_FILE)
    if spec.kind not in MODELS:
        raise DataError(f"{fit_dir}: kind: a {spec.kind!r} model is not a fit of recorded "
                        f"spike trains; `evaluate` scores {', '.join(sorted(MODELS))}")
    metrics = json.loads((fit_dir / "metrics.json").read_text())
    if metrics.get("data_mode") == "session":
        if not (fit_dir / "predictions.npz").is_file():
            raise DataError(f"{fit_dir}: predictions.npz: not found (a session fit's rates)")
        return LoadedFit(None, spec, metrics, fit_dir)
    if not (fit_dir / STATE_FILE).is_file():
        raise DataError(f"{fit_dir}: {STATE_FILE}: not found (not a `neurorec fit` output dir)")
    return LoadedFit(load_fitted(fit_dir), spec, metrics, fit_dir)


def _bin_like_fit(fit: LoadedFit, recording: Recording, seed: int) -> BinnedTrials:
    """Bin ``recording`` as ``neurorec fit`` binned the fit's data
    (:func:`~neurorec.workflows.pipeline.bin_for_spec`); a simulation exported by
    ``export-nwb`` names each trial's condition by the model's index (column ``condition``),
    which is then the condition column."""
    from neurorec.workflows.pipeline import bin_for_spec

    spec, d = fit.spec, fit.spec.data
    have = set(recording.trials.columns)
    by_index = (d.conditions is not None and not set(d.conditions) <= have
                and "condition" in have)
    if by_index:
        spec = spec.model_copy(update={"data": d.model_copy(update={"conditions":
                                                                    ["condition"]})})
    data = bin_for_spec(spec, recording, seed)
    if by_index:
        values = data.condition_table["condition"].to_numpy()
        if not np.array_equal(values, np.arange(len(values))):
            raise DataError(f"{recording.source}: condition: expected the model's condition "
                            f"indices 0..{fit.model.n_conditions_ - 1}, got {values.tolist()}")
    return data


def evaluation_data(fit: LoadedFit, data: str | None
                    ) -> tuple[BinnedTrials, BinnedTrials, BinnedTrials | None]:
    """(evaluated trials, all trials, the fit's training trials or None).

    Without ``data`` the fit's own recording is binned and split again with its seed (the
    held-out trials it was scored on); with ``data`` every trial of that recording is
    evaluated (it must have the fit's units)."""
    from neurorec.workflows.pipeline import load_recording

    seed = int(fit.metrics.get("seed", 0))
    own_source = fit.metrics.get("data")
    train = None
    own = None
    try:
        own = _bin_like_fit(fit, load_recording(own_source), seed)
        train = own.subset(~own.is_test)
    except (DataError, FileNotFoundError):
        if data is None:
            raise DataError(f"{fit.fit_dir}: data: the fit's data {own_source!r} cannot be "
                            "loaded; pass --data") from None
    if data is None:
        return own.subset(own.is_test), own, train
    recording = load_recording(data)
    expected = [str(u) for u in fit.metrics.get("unit_ids", [])]
    got = [str(u) for u in recording.unit_ids]
    if expected and got != expected:
        raise DataError(f"{data}: units: the fit has {len(expected)} units "
                        f"{_short(expected)}, the data {len(got)} units {_short(got)}")
    binned = _bin_like_fit(fit, recording, seed)
    everything = binned.subset(np.ones(len(binned.counts), bool))
    return everything, everything, train


def _short(ids: list[str]) -> str:
    return "[" + ", ".join(ids[:5]) + (", ...]" if len(ids) > 5 else "]")


def evaluate_fit_dir(fit_dir: Path, data: str | None, out: Path, seed: int = 0,
                     overwrite: bool = False, fp_draws: int = FP_DRAWS) -> Evaluation:
    """``neurorec evaluate``: score the fit in ``fit_dir`` and write ``out/evaluation.json``,
    ``out/rescaled_intervals.npz`` and ``out/report.html`` (atomically)."""
    from tqdm.auto import tqdm

    from neurorec.core.outputs import atomic_dir, write_json
    from neurorec.workflows.arguments import check_out_dir

    # before any work: new, or (--overwrite) a folder holding evaluate's own marker only
    check_out_dir(Path(out), overwrite, "evaluate")

    started = time.perf_counter()
    # stages on stderr at a terminal (disable=None: not in pipes and logs), only when the
    # evaluation lasts over a second (a refusal prints its one line and nothing else)
    bar = tqdm(total=3, desc="evaluate", unit="stage", delay=1.0, disable=None,
               file=sys.stderr, leave=False)
    try:
        bar.set_postfix_str("loading the fit")
        fit = load_fit(fit_dir)
        bar.update()
        bar.set_postfix_str("scoring")
        if fit.model is None:
            ev = session_evaluation(fit, data, seed=seed)
        else:
            test, everything, train = evaluation_data(fit, data)
            heldout = getattr(fit.model, "heldout", None)
            ev = evaluation_metrics(fit.model, test, everything, train, seed=seed,
                                    fp_draws=fp_draws, heldout=heldout)
        bar.update()
        bar.set_postfix_str("report")
        ev.metrics.update({"fit_dir": str(fit_dir), "kind": fit.spec.kind,
                           "model": fit.spec.name,
                           "data": data if data is not None else fit.metrics.get("data"),
                           "evaluated_on": _evaluated_on(fit.model is None, data),
                           # wall time of loading, scoring (not in a fit's metrics.json, which
                           # repeats bitwise)
                           "evaluation_time_s": time.perf_counter() - started})
        with atomic_dir(out, overwrite=overwrite) as tmp:
            write_json(tmp / "evaluation.json", ev.metrics)
            np.savez(tmp / "rescaled_intervals.npz",
                     **{f"unit_{i}": r.z for i, r in enumerate(ev.rescaled)},
                     unit_ids=np.asarray(ev.unit_ids).astype(str))
            from neurorec.report.goodness_of_fit import evaluation_report

            filters = None if fit.model is None else filter_bands(fit.model,
                                                                   ev.standard_errors)
            evaluation_report(ev.metrics, ev.rescaled, filters, tmp)
        bar.update()
    finally:
        bar.close()  # leave=False: the bar's line is cleared, also on a refusal
    return ev


def _evaluated_on(session: bool, data: str | None) -> str:
    if session:
        return "the test bins of " + ("other data" if data is not None else "the fit's session")
    return "other data (all trials)" if data is not None else "the fit's held-out trials"


def filter_bands(model: Model, se: dict | None) -> dict:
    """{name: (filters, s.e. per lag, bin size s)} for the report's ±2 s.e. bands: ``history``
    (n_units, n_lags) and ``coupling`` (n_units post, n_units pre, n_lags), where fitted."""
    if se is None:
        return {}
    out = {}
    if "history_filter" in se:
        out["history"] = (model.history_filters(), se["history_filter"],
                          float(model.bin_size_))
    if "coupling_filter" in se:
        out["coupling"] = (model.coupling_filters(), se["coupling_filter"],
                           float(model.bin_size_))
    return out
