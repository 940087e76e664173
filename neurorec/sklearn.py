"""scikit-learn estimators over the GLM family: Poisson / Bernoulli GLMs and the recurrent GLM.

Thin adapters: each estimator builds the family's spec from its constructor parameters, lays the
design matrix out as :class:`~neurorec.data.recording.BinnedTrials`, fits the registered family
model (``neurorec.families``: kind ``glm`` or ``rglm``) and reads its scores from
:mod:`neurorec.core.metrics`. There is no objective, optimiser, initialisation or clamp here.

* :class:`PoissonGLM` — Poisson regression (log link), one or several units (outputs) at once.
* :class:`BernoulliGLM` — logistic regression (a binary classifier; with a 2-D 0/1 ``y`` one
  model per column, e.g. binary spike trains of several units).
* :class:`RGLM` — the recurrent GLM (Pachitariu et al. 2013) on a design whose rows are time
  bins in order: the family's R-GLM (warm start from the GLM, then L-BFGS on all parameters).

How the design maps onto the family (``_family_spec``): the columns of ``X`` are a stimulus
time series filtered by a one-lag filter (``stimulus_filter: {n_basis: 1, duration: 1 bin}``,
whose basis is exactly 1, so the term's features are ``X`` itself and its weights ``k`` are
``coef_``); the stimulus basis and spike history are off, so the family's ``Bias`` term is the
intercept (``fit_intercept=False`` leaves it out of the model's terms). Rows are bins of
1 s: for the GLMs each row is a trial of one bin; for the R-GLM each trial (``groups``) is
a trial, padded to the longest with masked bins (the family's unequal-trial mask); a single
trial gets an empty, fully masked partner trial (the family fits ≥ 2 trials; masked bins
weigh nothing in the likelihood and are not rows of the Newton design).

Conventions (all three):

* ``alpha`` is scikit-learn's ``PoissonRegressor(alpha=...)`` convention, per output (unit):
  ``objective(w) = mean_n NLL(y_n, eta_n) + alpha / 2 * ||coef||²``; the intercept is
  unpenalised. The family's objective is the mean NLL over bins *and* units plus
  ``l2 · ||w||²``, so ``penalty.l2 = penalty.stimulus_l2 = alpha / (2 n_units)`` (the same
  optimum). For :class:`BernoulliGLM` the same objective with the log-loss means
  ``LogisticRegression(C=1 / (n_samples * alpha))``.
* Computation is float64 (any numeric input is converted); ``sample_weight`` is not supported.
* ``tol`` / ``max_iter`` go to the family's ``fit.tol`` / ``fit.max_iter``. The GLMs are
  fitted by the family's batched Newton, which runs at ``min(tol, 1e-10)`` and
  ``min(max_iter, 200)`` iterations; ``n_iter_`` / ``converged_`` are the family's fit record
  (a :class:`~sklearn.exceptions.ConvergenceWarning` when it did not converge).
* ``score`` is D² (:func:`neurorec.core.metrics.deviance_explained`), the fraction of deviance
  explained relative to the constant prediction ``mean(y)`` of the scored data, averaged
  uniformly over outputs — for one output ``PoissonRegressor.score`` / ``d2_log_loss_score``.
* ``bits_per_spike(X, y)`` is :func:`neurorec.core.metrics.bits_per_spike` (NLB; NLLs and
  spikes summed over all units).
* ``model_`` is the fitted family model; predictions go through it (its ``predict_rate``, with
  the learned attributes ``coef_``, ``intercept_`` (``W0_``, ``R_``, ``B_``) as its parameters).

What changed numerically when the estimators became adapters (``tools/fingerprint_fits.py``:
the same data, before and after): :class:`PoissonGLM` / :class:`BernoulliGLM` solve the same
penalised problem with the same Newton solver, but the design's intercept column comes first
(the family's term order) and the penalty is scaled as above: coefficients and predictions
move by rounding only (see the tests). :class:`RGLM` used to be a second R-GLM with its own
objective, optimiser (plain L-BFGS, no preconditioning), initialisation (``W0`` scaled by
``1/sqrt(n_units)``, drawn by numpy) and drive clamp (50; the family continues ``exp`` past 30
as a polynomial, and its NLL floors rates at 1e-9): it is now the family's R-GLM
(preconditioned L-BFGS from the family's warm start, torch draws, ``init_scale / sqrt(n_units)``
as ``recurrent.init_scale``). Measured on the GLM conformance data (``v1_small()``: V1
session 14, 6 units, 10 ms bins; design one-hot(condition) × 4 raised cosines, ``groups`` the
trials, ``RGLM(dim=3, alpha=1e-4)``, held-out trials scored): with ``max_iter=50`` held-out
bits/spike 0.4156 (old) → 0.3552 (family), objective_ 1.5570 → 1.5803, coefficients up to
0.39 apart; with ``max_iter=500`` 0.4162 → 0.4086 and 1.5548 → 1.5604 (the old L-BFGS
stopped at its tolerance after 325 iterations, the family's ran all 500): the family's
optimiser approaches the same optimum more slowly on this problem. The warm-start GLM
(``glm_objective_``) is unchanged to 4e-16; :class:`PoissonGLM` coefficients moved by
≤ 4.6e-9 (relative 2e-9, inside the Newton tolerance), held-out bits/spike by 5e-12. On the
fingerprint's problem (``tools/fingerprint_fits.py``: 300 × 5 design, 3 units,
``RGLM(dim=2, alpha=1e-3, max_iter=30)``, one trial) predictions moved by up to 25 % and
bits/spike 0.0565 → 0.0473; the GLMs' by ≤ 9e-16. See ``tests/test_sklearn_family.py``
for the equality with the family fit.
"""

from __future__ import annotations

import copy
import math
import numbers
import warnings

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from neurorec.core.errors import SpecError
from neurorec.core.metrics import bits_per_spike, deviance_explained, log_likelihood
from neurorec.data.recording import BinnedTrials
from neurorec.families import family_of
from neurorec.families.glm.terms import Bias
from neurorec.spec.load import validate_spec

__all__ = ["EXPECTED_FAILED_CHECKS", "RGLM", "BernoulliGLM", "PoissonGLM", "expected_failed_checks"]

#: the width given to a design row when it is laid out as a bin (the family's lag filters are
#: in seconds; one row is one bin, whatever its real width)
BIN_S = 1.0

_MULTIOUTPUT_REASON = (
    "feeds make_regression targets (negative values) to a multi-output regressor without "
    "applying the positive_only tag; Poisson counts must be >= 0, so fit refuses them")
_ROWS_ARE_TIME = (
    "rows are consecutive time bins, not i.i.d. samples: a row's prediction depends on the "
    "earlier rows through the recurrent state, so predicting on a subset or on reordered rows "
    "legitimately changes it")

#: ``check_estimator(est, expected_failed_checks=EXPECTED_FAILED_CHECKS[type(est).__name__])``
#: (scikit-learn >= 1.6): every check that cannot apply, with the reason. All other checks pass.
EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {
    "PoissonGLM": {"check_regressor_multioutput": _MULTIOUTPUT_REASON},
    "BernoulliGLM": {
        "check_classifier_multioutput": (
            "only at alpha=0 (the default): the check's multilabel data are linearly "
            "separable, the log-odds diverge and P(y=1) rounds to exactly 1.0 in float64, so "
            "predict_proba has ties where decision_function has none (rank check); passes "
            "with any alpha > 0, e.g. 1e-2"),
    },
    "RGLM": {
        "check_regressor_multioutput": _MULTIOUTPUT_REASON,
        "check_methods_subset_invariance": _ROWS_ARE_TIME,
        "check_methods_sample_order_invariance": _ROWS_ARE_TIME,
    },
}


def expected_failed_checks(estimator) -> dict[str, str]:
    """The checks of ``sklearn.utils.estimator_checks.check_estimator`` that ``estimator``
    cannot pass, with reasons (empty for :class:`BernoulliGLM` with ``alpha > 0``)."""
    name = type(estimator).__name__
    out = dict(EXPECTED_FAILED_CHECKS.get(name, {}))
    if name == "BernoulliGLM" and estimator.alpha > 0:
        out.pop("check_classifier_multioutput")
    return out


# ---------------------------------------------------------------------------------------------
# the design as the family's data, the constructor parameters as the family's spec


def _check_params(est, link: str | None) -> None:
    a = est.alpha
    if not isinstance(a, numbers.Real) or isinstance(a, bool) or not (a >= 0 and math.isfinite(a)):
        raise ValueError(f"{type(est).__name__}: alpha must be a finite number >= 0, got {a!r}")
    t = est.tol
    if not isinstance(t, numbers.Real) or isinstance(t, bool) or not 0 < t < 1:
        raise ValueError(f"{type(est).__name__}: tol must be a number in (0, 1), got {t!r}")
    m = est.max_iter
    if not isinstance(m, numbers.Integral) or isinstance(m, bool) or not 1 <= m <= 100_000:
        raise ValueError(f"{type(est).__name__}: max_iter must be an integer in "
                         f"[1, 100000], got {m!r}")
    if link is not None and est.link != link:
        raise ValueError(f"{type(est).__name__}: link must be {link!r}, got {est.link!r}")


def _segments(groups, n: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Trial index and within-trial position of each row, the number of trials and the longest
    trial: a new trial starts at row 0 and wherever ``groups`` changes value from the previous
    row (``None``: all rows are one trial)."""
    if groups is None:
        return np.zeros(n, dtype=np.int64), np.arange(n, dtype=np.int64), 1, n
    g = np.asarray(groups)
    if g.shape != (n,):
        raise ValueError(f"RGLM: groups must have shape ({n},), got {g.shape}")
    start = np.ones(n, dtype=bool)
    start[1:] = g[1:] != g[:-1]
    seg = np.cumsum(start) - 1
    first = np.flatnonzero(start)
    pos = np.arange(n) - first[seg]
    length = int(np.diff(np.append(first, n)).max()) if n else 0
    return seg, pos, len(first), length


def _rows_as_trials(n: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Every row its own trial of one bin (the GLMs: rows are independent samples)."""
    return np.arange(n, dtype=np.int64), np.zeros(n, dtype=np.int64), n, 1


def _trials(X: np.ndarray, Y: np.ndarray, layout: tuple[np.ndarray, np.ndarray, int, int],
            name: str) -> BinnedTrials:
    """The rows of ``X`` (n, n_features) and ``Y`` (n, n_units) as the family's data: row
    ``r`` is bin ``pos[r]`` of trial ``seg[r]``, ``X`` the stimulus series of that bin.

    Trials shorter than the longest are padded with masked bins; fewer than 2 trials get an
    empty, fully masked trial (the family fits ≥ 2 trials; masked bins weigh nothing)."""
    seg, pos, n_seg, length = layout
    n_trials = max(n_seg, 2)
    counts = np.zeros((n_trials, length, Y.shape[1]))
    counts[seg, pos] = Y
    stimulus = np.zeros((n_trials, length, X.shape[1]))
    stimulus[seg, pos] = X
    mask = np.zeros((n_trials, length), dtype=bool)
    mask[seg, pos] = True
    return BinnedTrials(
        counts=counts, bin_size=BIN_S, time=(np.arange(length) + 0.5) * BIN_S,
        condition=np.zeros(n_trials, dtype=np.int64),
        condition_table=pd.DataFrame({"condition": [0]}),
        is_test=np.zeros(n_trials, dtype=bool), unit_ids=np.arange(Y.shape[1]),
        source=f"neurorec.sklearn.{name}", stimulus=stimulus,
        mask=None if mask.all() else mask)


def _family_spec(est, kind: str, observation: str, link: str, n_units: int,
                 recurrent: dict | None = None):
    """The family's spec of ``est``'s constructor parameters (module docstring)."""
    l2 = float(est.alpha) / (2.0 * n_units)
    raw = {"kind": kind, "name": f"sklearn-{type(est).__name__}", "observation": observation,
           "link": link, "stimulus": {"enabled": False}, "history": {"enabled": False},
           "stimulus_filter": {"enabled": True, "n_basis": 1, "duration": BIN_S},
           "penalty": {"l1": 0.0, "l2": l2, "stimulus_l2": l2},
           "fit": {"tol": float(est.tol), "max_iter": int(est.max_iter),
                   "early_stopping": False}}
    if recurrent is not None:
        raw["recurrent"] = recurrent
    try:
        return validate_spec(raw, f"<{type(est).__name__}>")
    except SpecError as exc:
        raise ValueError(str(exc)) from None


def _family_model(est, spec, seed: int):
    """The registered model of ``spec.kind``, without the intercept (``Bias``) term when
    ``est.fit_intercept`` is false."""
    cls = family_of(spec.kind).model
    if est.fit_intercept:
        return cls(spec, seed=seed)
    return cls(spec, seed=seed, terms=[t for t in cls.default_terms(spec)
                                       if not isinstance(t, Bias)])


def _fit_family(model, data: BinnedTrials, name: str):
    """``model.fit(data)``; a ConvergenceWarning when its fit record says it did not converge."""
    model.fit(data, progress=False)
    if not model.fit_report_.converged:
        warnings.warn(f"{name}: the family's {model.fit_report_.optimizer} fit did not "
                      f"converge ({model.fit_report_.reason}); increase max_iter or alpha",
                      ConvergenceWarning, stacklevel=3)
    return model


def _as_2d(y: np.ndarray) -> np.ndarray:
    return y[:, None] if y.ndim == 1 else y


def _glm_params(coef, intercept, fit_intercept: bool) -> dict[str, np.ndarray]:
    """The family's ``params_`` of (n_units, n_features) ``coef`` and (n_units,) intercepts."""
    coef = np.atleast_2d(np.asarray(coef, dtype=np.float64))
    params = {"k": coef[:, :, None].copy()}
    if fit_intercept:
        params["bias"] = np.atleast_1d(np.asarray(intercept, dtype=np.float64)).copy()
    return params


def _predict_family(model, params: dict[str, np.ndarray], data: BinnedTrials,
                    layout: tuple[np.ndarray, np.ndarray, int, int]) -> np.ndarray:
    """(n_rows, n_units) the family's ``predict_rate`` of ``data`` with ``params`` (a shallow
    copy of the fitted model holding them; its trial length is the data's)."""
    m = copy.copy(model)
    m.params_ = params
    m.n_bins_ = data.counts.shape[1]
    seg, pos, _, _ = layout
    return m.predict_rate(data)[seg, pos]


# ---------------------------------------------------------------------------------------------


class _CountTargets:
    """Tags of estimators of spike counts: non-negative targets, one or several units."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = True
        tags.target_tags.multi_output = True
        return tags


class PoissonGLM(_CountTargets, RegressorMixin, BaseEstimator):
    """Poisson GLM with log link, several outputs (units) at once: the family's ``glm``
    (batched Newton) on the design.

    Objective per output: ``mean_n (mu_n - y_n eta_n) + alpha/2 ||coef||²`` — the same
    ``alpha`` as :class:`sklearn.linear_model.PoissonRegressor` (module docstring).

    Parameters:
        alpha: L2 strength (>= 0), intercept unpenalised.
        fit_intercept: add an (unpenalised) intercept.
        link: only ``"exp"`` (log link).
        tol, max_iter: the family's ``fit.tol`` / ``fit.max_iter`` (module docstring).

    Attributes:
        coef_: (n_features,) or, for 2-D y, (n_outputs, n_features).
        intercept_: float, or (n_outputs,).
        model_: the fitted family model (kind ``glm``).
        n_features_in_, n_iter_ (Newton passes), converged_ (bool, all outputs).
    """

    _observation = "poisson"
    _link_name = "exp"

    def __init__(self, alpha=0.0, fit_intercept=True, link="exp", tol=1e-10, max_iter=100):
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.link = link
        self.tol = tol
        self.max_iter = max_iter

    def _fit_glm(self, X: np.ndarray, Y: np.ndarray):
        """Fit the family's GLM to X (n, n_features), Y (n, n_units); returns coef (n_units,
        n_features) and intercept (n_units,)."""
        spec = _family_spec(self, "glm", self._observation, self._link_name, Y.shape[1])
        layout = _rows_as_trials(len(X))
        model = _fit_family(_family_model(self, spec, seed=0), _trials(X, Y, layout,
                                                                      type(self).__name__),
                            type(self).__name__)
        self.model_ = model
        self.n_iter_ = int(model.fit_report_.n_iter)
        self.converged_ = bool(model.fit_report_.converged)
        coef = model.params_["k"][:, :, 0]
        intercept = model.params_["bias"] if self.fit_intercept else np.zeros(Y.shape[1])
        return coef, intercept

    def fit(self, X, y):
        """Fit on X (n_samples, n_features) and counts y (n_samples,) or (n_samples, n_outputs)."""
        _check_params(self, self._link_name)
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        if np.any(y < 0):
            raise ValueError(f"{type(self).__name__}: y must be non-negative counts")
        coef, intercept = self._fit_glm(X, _as_2d(y))
        self.coef_ = coef[0].copy() if y.ndim == 1 else coef
        self.intercept_ = float(intercept[0]) if y.ndim == 1 else np.asarray(intercept)
        return self

    def _mean(self, X) -> np.ndarray:
        """(n_samples, n_outputs) the family's expected value of every row."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        n_out = np.atleast_2d(self.coef_).shape[0]
        layout = _rows_as_trials(len(X))
        data = _trials(X, np.zeros((len(X), n_out)), layout, type(self).__name__)
        return _predict_family(self.model_, _glm_params(self.coef_, self.intercept_,
                                                        self.fit_intercept), data, layout)

    def predict(self, X):
        """Expected counts ``exp(X @ coef_ + intercept_)``, shaped like the training y."""
        mu = self._mean(X)
        return mu[:, 0] if np.ndim(self.coef_) == 1 else mu

    def score(self, X, y, sample_weight=None):
        """D²: fraction of Poisson deviance explained (1-D y: ``PoissonRegressor.score``)."""
        if sample_weight is not None:
            raise NotImplementedError("PoissonGLM.score: sample_weight is not supported")
        y = np.asarray(y, dtype=np.float64)
        return deviance_explained(_as_2d(y), self._mean(X), "poisson")

    def bits_per_spike(self, X, y):
        """NLB bits/spike: ``(NLL_null - NLL_model) / (n_spikes ln 2)``, null = mean of y."""
        y = _as_2d(np.asarray(y, dtype=np.float64))
        return _bits_per_spike("poisson", y, self._mean(X))


def _bits_per_spike(observation: str, y2: np.ndarray, mu2: np.ndarray) -> float:
    """:func:`neurorec.core.metrics.bits_per_spike`; ValueError when ``y`` has no spikes."""
    if float(y2.sum()) <= 0:
        raise ValueError("bits_per_spike: y has no spikes")
    return bits_per_spike(y2, mu2, observation)


class BernoulliGLM(ClassifierMixin, BaseEstimator):
    """Logistic regression (binary), or one per column of a 2-D 0/1 ``y``: the family's
    ``glm`` with Bernoulli observations (batched Newton) on the design.

    Objective per output: ``mean_n logloss(y_n, eta_n) + alpha/2 ||coef||²`` (intercept
    unpenalised), i.e. ``LogisticRegression(C=1/(n_samples * alpha))``.

    1-D ``y``: any two labels (``classes_``, the second is the positive class);
    ``predict`` gives labels, ``predict_proba`` (n, 2), ``decision_function`` the log-odds.
    2-D ``y`` (n_samples, n_outputs) of 0/1 (e.g. binary spikes of several units):
    ``classes_ = [0, 1]``, ``predict`` (n, n_outputs) int, ``predict_proba`` (n, n_outputs)
    ``P(y = 1)``. ``predict_mean`` always gives ``P(y = 1)`` (the expected count) shaped like y.
    ``score`` is D² of the log-loss (not accuracy; module docstring).
    """

    _observation = "bernoulli"
    _link_name = "logistic"

    def __init__(self, alpha=0.0, fit_intercept=True, link="logistic", tol=1e-10,
                 max_iter=100):
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.link = link
        self.tol = tol
        self.max_iter = max_iter

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        tags.classifier_tags.multi_label = True
        tags.target_tags.multi_output = True
        return tags

    _fit_glm = PoissonGLM._fit_glm
    _mean = PoissonGLM._mean

    def fit(self, X, y):
        """Fit on X (n_samples, n_features) and binary y (n_samples,) or 0/1 (n, n_outputs)."""
        _check_params(self, self._link_name)
        X, y = validate_data(self, X, y, multi_output=True, dtype=np.float64,
                             y_numeric=False)
        y = np.asarray(y)
        if y.ndim == 2:
            if not np.all(np.isin(y, (0, 1))):
                raise ValueError("BernoulliGLM: a 2-D y must hold only 0 and 1 (one binary "
                                 "target per column)")
            self.classes_ = np.array([0, 1])
            Y = y.astype(np.float64)
            self._multi = True
        else:
            check_classification_targets(y)
            kind = type_of_target(y)
            classes = np.unique(y)
            if kind == "multiclass" or len(classes) > 2:
                raise ValueError("Only binary classification is supported. The type of the "
                                 f"target is {kind}.")
            if len(classes) < 2:
                raise ValueError("BernoulliGLM needs samples of 2 classes; the data contain "
                                 f"only one class: {classes[0]!r}")
            self.classes_ = classes
            Y = (y == classes[1]).astype(np.float64)[:, None]
            self._multi = False
        coef, intercept = self._fit_glm(X, Y)
        self.coef_ = coef if self._multi else coef[0].copy()
        self.intercept_ = np.asarray(intercept) if self._multi else float(intercept[0])
        return self

    def decision_function(self, X):
        """Log-odds ``X @ coef_ + intercept_``: (n,) or (n, n_outputs) (the logit of the
        family's probability is not used: it saturates where the log-odds are large)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return X @ np.asarray(self.coef_).T + self.intercept_

    def predict_mean(self, X):
        """``P(y = 1)``, shaped like the training y (the expected count per bin): the
        family's ``predict_rate``."""
        p = self._mean(X)
        return p if self._multi else p[:, 0]

    def predict_proba(self, X):
        """1-D y: (n, 2) ``[P(classes_[0]), P(classes_[1])]``; 2-D y: (n, n_outputs) P(1)."""
        p = self.predict_mean(X)
        return p if self._multi else np.stack([1.0 - p, p], axis=1)

    def predict_log_proba(self, X):
        return np.log(self.predict_proba(X))

    def predict(self, X):
        """Labels: ``classes_[decision_function(X) > 0]``."""
        positive = self.decision_function(X) > 0
        return self.classes_[positive.astype(int)]

    def _binary(self, y) -> np.ndarray:
        y = np.asarray(y)
        if self._multi:
            return _as_2d(y.astype(np.float64))
        return (y == self.classes_[1]).astype(np.float64)[:, None]

    def score(self, X, y, sample_weight=None):
        """D² of the log-loss (fraction of Bernoulli deviance explained), not accuracy."""
        if sample_weight is not None:
            raise NotImplementedError("BernoulliGLM.score: sample_weight is not supported")
        return deviance_explained(self._binary(y), self._mean(X), "bernoulli")

    def bits_per_spike(self, X, y):
        """NLB bits/spike with the Bernoulli NLL (null = mean of y)."""
        return _bits_per_spike("bernoulli", self._binary(y), self._mean(X))


# ---------------------------------------------------------------------------------------------


class RGLM(_CountTargets, RegressorMixin, BaseEstimator):
    """Recurrent Poisson GLM on a design whose rows are consecutive time bins: the family's
    ``rglm`` (:class:`neurorec.families.glm.rglm.RGLM`).

    Model (per row ``t`` of a trial, units ``u``)::

        x_t     = W0 y_{t-1} + R x_{t-1},       x_{-1} = 0, y_{-1} = 0 at each trial start
        drive_t = X_t @ coef_.T + intercept_ + B x_t,   E[y_t] = exp(drive_t)

    ``y`` (n_samples, n_units) — or (n_samples,) for one unit — are the counts, rows in time
    order; ``groups`` (n_samples,) marks trials: the state resets wherever its value changes
    from one row to the next (``None``: all rows are one trial).

    Fit: the family's R-GLM, whose objective is, in this module's convention,
    ``(1/n) sum_{t,u} NLL(y_tu, drive_tu) + alpha/2 (||coef||² + ||W0||² + ||R||² + ||B||²)``
    (intercepts unpenalised): the GLM fitted first by batched Newton, ``B = 0`` (the first
    iterate is that GLM), random ``W0`` (``init_scale / sqrt(n_units)``) and ``R`` (a random
    orthogonal matrix times 0.5) from ``random_state``, then preconditioned L-BFGS.

    Prediction: ``predict(X, y, groups)`` is the ONE-STEP-AHEAD expected count of every row
    given the observed counts ``y`` of the earlier rows of its trial (the family's
    ``predict_rate``); ``score(X, y, groups)`` / ``bits_per_spike`` score those predictions
    against the same ``y``. ``predict(X)`` without ``y`` runs the model closed loop in the
    mean-field approximation (``y_{t-1}`` replaced by its predicted mean, through the family's
    observation mean; a loop over rows).

    Parameters:
        dim: state dimension (``recurrent.dim``).
        alpha: L2 strength (above); also the reported warm-start GLM's (``glm_``).
        fit_intercept: per-unit unpenalised intercepts.
        tol: the family's ``fit.tol`` (L-BFGS: max |gradient|).
        max_iter: the family's ``fit.max_iter`` (L-BFGS iterations).
        glm_max_iter: Newton iterations of ``glm_``, the GLM at the same ``alpha`` reported
            beside the fit (the family's own warm start runs ``min(max_iter, 200)``).
        init_scale: ``W0`` starts with s.d. ``init_scale / sqrt(n_units)``
            (``recurrent.init_scale``).
        random_state: the family's seed (an int; ``None`` or a RandomState draws one).

    Attributes:
        coef_ (n_units, n_features), intercept_ (n_units,), W0_ (dim, n_units), R_ (dim, dim),
        B_ (n_units, dim) — 1-D training y: coef_ (n_features,), intercept_ float;
        model_ the fitted family model; glm_ the warm-start :class:`PoissonGLM`;
        objective_, glm_objective_ the penalised mean NLL above (incl. log y!) at the fit and
        at ``glm_``; n_iter_ (L-BFGS iterations), converged_, n_features_in_.
    """

    def __init__(self, dim=4, alpha=1e-4, fit_intercept=True, tol=1e-5, max_iter=200,
                 glm_max_iter=100, init_scale=0.1, random_state=0):
        self.dim = dim
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter
        self.glm_max_iter = glm_max_iter
        self.init_scale = init_scale
        self.random_state = random_state

    def _seed(self) -> int:
        rs = self.random_state
        if isinstance(rs, numbers.Integral) and not isinstance(rs, bool):
            return int(rs)
        return int(check_random_state(rs).randint(2**31 - 1))

    def fit(self, X, y, groups=None):
        """Fit on the design X (n_samples, n_features) and counts y, rows in time order."""
        for name, ok in (("dim", isinstance(self.dim, numbers.Integral) and self.dim >= 1),
                         ("init_scale", isinstance(self.init_scale, numbers.Real)
                          and self.init_scale > 0)):
            if not ok:
                raise ValueError(f"RGLM: invalid {name}={getattr(self, name)!r}")
        _check_params(self, None)
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        if np.any(y < 0):
            raise ValueError("RGLM: y must be non-negative counts")
        Y2 = _as_2d(y)
        n_units = Y2.shape[1]
        layout = _segments(groups, len(X))
        spec = _family_spec(self, "rglm", "poisson", "exp", n_units, recurrent={
            "dim": int(self.dim), "init_scale": float(self.init_scale) / math.sqrt(n_units)})
        model = _fit_family(_family_model(self, spec, self._seed()),
                            _trials(X, Y2, layout, "RGLM"), "RGLM")
        self.model_ = model
        p = model.params_
        self._y_1d = y.ndim == 1
        coef = p["k"][:, :, 0]
        intercept = p["bias"] if self.fit_intercept else np.zeros(n_units)
        self.coef_ = coef[0].copy() if self._y_1d else coef
        self.intercept_ = float(intercept[0]) if self._y_1d else np.asarray(intercept)
        self.W0_, self.R_, self.B_ = (np.asarray(p[k]) for k in ("W0", "R", "B"))
        self.n_iter_ = int(model.fit_report_.n_iter)
        self.converged_ = bool(model.fit_report_.converged)
        self.glm_ = PoissonGLM(alpha=self.alpha, fit_intercept=self.fit_intercept, tol=1e-10,
                               max_iter=self.glm_max_iter).fit(X, Y2)
        self.objective_ = self._objective(Y2, self._one_step(X, Y2, layout),
                                          self.coef_, self.W0_, self.R_, self.B_)
        self.glm_objective_ = self._objective(Y2, self.glm_.predict(X), self.glm_.coef_)
        return self

    def _objective(self, Y2: np.ndarray, mu: np.ndarray, *weights: np.ndarray) -> float:
        """The penalised mean NLL (class docstring) of expected counts ``mu``, as a number for
        the record (the fit minimises the family's equivalent; nothing here is optimised)."""
        pen = sum(float((np.asarray(w) ** 2).sum()) for w in weights)
        return -log_likelihood(Y2, _as_2d(mu)) / len(Y2) + 0.5 * float(self.alpha) * pen

    # -- prediction -------------------------------------------------------------------------

    def _params(self) -> dict[str, np.ndarray]:
        return {**_glm_params(self.coef_, self.intercept_, self.fit_intercept),
                "W0": np.asarray(self.W0_), "R": np.asarray(self.R_), "B": np.asarray(self.B_)}

    def _data(self, X, y, groups):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        Y2 = _as_2d(np.asarray(y, dtype=np.float64))
        n_units = np.asarray(self.B_).shape[0]
        if Y2.shape != (len(X), n_units):
            raise ValueError(f"RGLM: y must have shape {(len(X), n_units)} (the counts of the "
                             f"training units), got {np.shape(y)}")
        layout = _segments(groups, len(X))
        return _trials(X, Y2, layout, "RGLM"), layout

    def _one_step(self, X: np.ndarray, Y2: np.ndarray, layout) -> np.ndarray:
        return _predict_family(self.model_, self._params(), _trials(X, Y2, layout, "RGLM"),
                               layout)

    def hidden_state(self, X, y, groups=None) -> np.ndarray:
        """(n_samples, dim) states ``x_t`` given the observed counts y (the family's
        ``hidden_state``)."""
        data, (seg, pos, _, _) = self._data(X, y, groups)
        m = copy.copy(self.model_)
        m.params_ = self._params()
        m.n_bins_ = data.counts.shape[1]
        return m.hidden_state(data)[seg, pos]

    def predict(self, X, y=None, groups=None):
        """Expected counts. With ``y``: one-step-ahead given the observed past counts (row t
        uses y of rows < t of its trial). Without: closed-loop mean-field (past counts replaced
        by the predicted means)."""
        if y is not None:
            data, layout = self._data(X, y, groups)
            mu = _predict_family(self.model_, self._params(), data, layout)
        else:
            check_is_fitted(self)
            X = validate_data(self, X, reset=False, dtype=np.float64)
            drive = X @ np.atleast_2d(self.coef_).T + np.atleast_1d(self.intercept_)
            seg, _, _, _ = _segments(groups, len(X))
            mean = self.model_.obs.mean
            mu = np.empty_like(drive)
            x = np.zeros(self.R_.shape[0])
            prev = np.zeros(drive.shape[1])
            for t in range(len(X)):
                if t == 0 or seg[t] != seg[t - 1]:
                    x[:], prev[:] = 0.0, 0.0
                x = self.W0_ @ prev + self.R_ @ x
                prev = mean(torch.from_numpy(drive[t] + self.B_ @ x)).numpy()
                mu[t] = prev
        return mu[:, 0] if self._y_1d else mu

    def score(self, X, y, groups=None):
        """D² (Poisson) of the one-step-ahead predictions given the observed y."""
        y = np.asarray(y, dtype=np.float64)
        return deviance_explained(_as_2d(y), _as_2d(self.predict(X, y, groups)), "poisson")

    def bits_per_spike(self, X, y, groups=None):
        """NLB bits/spike of the one-step-ahead predictions (null = each unit's mean of y)."""
        y = np.asarray(y, dtype=np.float64)
        return _bits_per_spike("poisson", _as_2d(y), _as_2d(self.predict(X, y, groups)))
