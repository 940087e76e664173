"""scikit-learn estimators: Poisson / Bernoulli GLMs and the recurrent GLM (RGLM).

* :class:`PoissonGLM` — Poisson regression (log link), one or several units (outputs) at once,
  fitted by the project's batched Newton solver :func:`neurorec.fit.newton.fit_batched_glm`.
* :class:`BernoulliGLM` — logistic regression (a binary classifier; with a 2-D 0/1 ``y`` one
  model per column, e.g. binary spike trains of several units), same solver.
* :class:`RGLM` — the recurrent GLM (Pachitariu et al. 2013) on a design whose rows are time
  bins in order: warm start from :class:`PoissonGLM`, then L-BFGS on all parameters.

Conventions (all three):

* ``alpha`` is scikit-learn's ``PoissonRegressor(alpha=...)`` convention, per output (unit):
  ``objective(w) = mean_n NLL(y_n, eta_n) + alpha / 2 * ||coef||²`` (equivalently
  ``mean Poisson deviance / 2 + alpha / 2 ||coef||²`` up to a data-only constant); the
  intercept is unpenalised. The Newton solver penalises the *summed* NLL with
  ``sum_j l2_j w_j²``, so ``l2 = n_samples * alpha / 2`` on every feature column and 0 on the
  intercept. For :class:`BernoulliGLM` the same objective with the log-loss means
  ``LogisticRegression(C=1 / (n_samples * alpha))``.
* Computation is float64 (any numeric input is converted); ``sample_weight`` is not supported
  (the batched Newton solver has no observation weights).
* ``tol``/``max_iter`` of the GLMs are the Newton solver's (its module docstring: the
  Newton decrement relative to the objective, plus a gradient test); ``n_iter_`` is the number
  of Newton (Hessian) passes, ``converged_`` whether every output passed the test (a
  :class:`~sklearn.exceptions.ConvergenceWarning` is raised otherwise).
* ``score`` is D², the fraction of deviance explained (Poisson deviance; Bernoulli: log-loss),
  relative to the constant prediction ``mean(y)`` of the scored data, averaged uniformly over
  outputs — for one output exactly ``PoissonRegressor.score`` / ``d2_log_loss_score``.
* ``bits_per_spike(X, y)`` is the Neural Latents Benchmark definition
  ``(NLL_null - NLL_model) / (n_spikes · ln 2)`` with the null model predicting each unit's
  mean count of the scored ``y``; NLLs and spikes are summed over all units.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from neurorec.core.metrics import bits_per_spike
from neurorec.core.observations import bernoulli_nll, poisson_nll
from neurorec.core.recurrence import linear_recurrence
from neurorec.fit.newton import fit_batched_glm

__all__ = ["EXPECTED_FAILED_CHECKS", "RGLM", "BernoulliGLM", "PoissonGLM", "expected_failed_checks"]

_ETA_MAX = 50.0  # drive clamp in RGLM's objective: e^50 counts per bin is never a fit


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
# helpers


def _check_params(est, link: str) -> None:
    a = est.alpha
    if not isinstance(a, numbers.Real) or isinstance(a, bool) or not (a >= 0 and math.isfinite(a)):
        raise ValueError(f"{type(est).__name__}: alpha must be a finite number >= 0, got {a!r}")
    t = est.tol
    if not isinstance(t, numbers.Real) or isinstance(t, bool) or not t > 0:
        raise ValueError(f"{type(est).__name__}: tol must be a number > 0, got {t!r}")
    m = est.max_iter
    if not isinstance(m, numbers.Integral) or isinstance(m, bool) or m < 1:
        raise ValueError(f"{type(est).__name__}: max_iter must be an integer >= 1, got {m!r}")
    if est.link != link:
        raise ValueError(f"{type(est).__name__}: link must be {link!r}, got {est.link!r}")


def _newton(X: np.ndarray, Y: np.ndarray, observation: str, link: str, alpha: float,
            fit_intercept: bool, tol: float, max_iter: int):
    """Fit every column of Y (n, U); returns coef (U, P), intercept (U,), n_iter, converged."""
    n, p = X.shape
    Xt = torch.tensor(X, dtype=torch.float64)
    if fit_intercept:
        Xt = torch.cat([Xt, torch.ones(n, 1, dtype=torch.float64)], 1)
    l2 = torch.full((Xt.shape[1],), n * alpha / 2.0, dtype=torch.float64)
    if fit_intercept:
        l2[-1] = 0.0
    res = fit_batched_glm(Xt, torch.tensor(Y, dtype=torch.float64), observation=observation,
                          link=link, l2=l2, tol=tol, max_iter=max_iter)
    W = res.coef.numpy()
    coef = W[:, :p].copy()
    intercept = W[:, p].copy() if fit_intercept else np.zeros(W.shape[0])
    converged = res.converged.numpy().astype(bool)
    return coef, intercept, int(res.n_iter), converged


def _d2(nll, y2: np.ndarray, mu2: np.ndarray) -> float:
    """D², uniform average over columns of (n, U) arrays (deviance = 2 (NLL - NLL_saturated))."""
    null = np.broadcast_to(y2.mean(0, keepdims=True), y2.shape)
    sat = nll(y2, y2)
    num = (nll(y2, mu2) - sat).sum(0)
    den = (nll(y2, null) - sat).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d2 = np.where(den > 0, 1.0 - num / den, np.where(num <= den, 1.0, 0.0))
    return float(np.mean(d2))


def _bits_per_spike(observation: str, y2: np.ndarray, mu2: np.ndarray) -> float:
    """NLB bits/spike of (n, U) arrays: :func:`neurorec.core.metrics.bits_per_spike` (the
    project's one definition; ValueError when ``y`` has no spikes)."""
    if float(y2.sum()) <= 0:
        raise ValueError("bits_per_spike: y has no spikes")
    return bits_per_spike(y2, mu2, observation)


def _as_2d(y: np.ndarray) -> np.ndarray:
    return y[:, None] if y.ndim == 1 else y


def _warn_convergence(name: str, converged) -> None:
    if not bool(np.all(converged)):
        warnings.warn(f"{name}: the solver did not converge for every output; increase max_iter "
                      "or alpha", ConvergenceWarning, stacklevel=3)


# ---------------------------------------------------------------------------------------------


class _CountTargets:
    """Tags of estimators of spike counts: non-negative targets, one or several units."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = True
        tags.target_tags.multi_output = True
        return tags


class PoissonGLM(_CountTargets, RegressorMixin, BaseEstimator):
    """Poisson GLM with log link, several outputs (units) at once, fitted by batched Newton.

    Objective per output: ``mean_n (mu_n - y_n eta_n) + alpha/2 ||coef||²`` — the same
    ``alpha`` as :class:`sklearn.linear_model.PoissonRegressor` (module docstring).

    Parameters:
        alpha: L2 strength (>= 0), intercept unpenalised.
        fit_intercept: add an (unpenalised) intercept.
        link: only ``"exp"`` (log link).
        tol, max_iter: Newton solver tolerance and iteration cap.

    Attributes:
        coef_: (n_features,) or, for 2-D y, (n_outputs, n_features).
        intercept_: float, or (n_outputs,).
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

    def fit(self, X, y):
        """Fit on X (n_samples, n_features) and counts y (n_samples,) or (n_samples, n_outputs)."""
        _check_params(self, self._link_name)
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        if np.any(y < 0):
            raise ValueError(f"{type(self).__name__}: y must be non-negative counts")
        coef, intercept, n_iter, conv = _newton(X, _as_2d(y), self._observation,
                                                self._link_name, float(self.alpha),
                                                bool(self.fit_intercept), float(self.tol),
                                                int(self.max_iter))
        _warn_convergence(type(self).__name__, conv)
        self.coef_ = coef[0] if y.ndim == 1 else coef
        self.intercept_ = float(intercept[0]) if y.ndim == 1 else intercept
        self.n_iter_ = n_iter
        self.converged_ = bool(conv.all())
        return self

    def _linear(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return X @ np.asarray(self.coef_).T + self.intercept_

    def predict(self, X):
        """Expected counts ``exp(X @ coef_ + intercept_)``, shaped like the training y."""
        return np.exp(self._linear(X))

    def score(self, X, y, sample_weight=None):
        """D²: fraction of Poisson deviance explained (1-D y: ``PoissonRegressor.score``)."""
        if sample_weight is not None:
            raise NotImplementedError("PoissonGLM.score: sample_weight is not supported")
        y = np.asarray(y, dtype=np.float64)
        return _d2(poisson_nll, _as_2d(y), _as_2d(self.predict(X)))

    def bits_per_spike(self, X, y):
        """NLB bits/spike: ``(NLL_null - NLL_model) / (n_spikes ln 2)``, null = mean of y."""
        y = np.asarray(y, dtype=np.float64)
        return _bits_per_spike("poisson", _as_2d(y), _as_2d(self.predict(X)))


class BernoulliGLM(ClassifierMixin, BaseEstimator):
    """Logistic regression (binary), or one per column of a 2-D 0/1 ``y``, by batched Newton.

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
        coef, intercept, n_iter, conv = _newton(X, Y, self._observation, self._link_name,
                                                float(self.alpha), bool(self.fit_intercept),
                                                float(self.tol), int(self.max_iter))
        _warn_convergence(type(self).__name__, conv)
        self.coef_ = coef if self._multi else coef[0]
        self.intercept_ = intercept if self._multi else float(intercept[0])
        self.n_iter_ = n_iter
        self.converged_ = bool(conv.all())
        return self

    def decision_function(self, X):
        """Log-odds ``X @ coef_ + intercept_``: (n,) or (n, n_outputs)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return X @ np.asarray(self.coef_).T + self.intercept_

    def predict_mean(self, X):
        """``P(y = 1)``, shaped like the training y (the expected count per bin)."""
        eta = self.decision_function(X)
        return 0.5 * (1.0 + np.tanh(0.5 * eta))  # sigmoid, overflow-free

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
        return _d2(bernoulli_nll, self._binary(y), _as_2d(self.predict_mean(X)))

    def bits_per_spike(self, X, y):
        """NLB bits/spike with the Bernoulli NLL (null = mean of y)."""
        return _bits_per_spike("bernoulli", self._binary(y), _as_2d(self.predict_mean(X)))


# ---------------------------------------------------------------------------------------------


def _segments(groups, n: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Trial index and within-trial position of each row: a new trial starts at row 0 and
    wherever ``groups`` changes value from the previous row."""
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
    n_seg = len(first)
    length = int(np.diff(np.append(first, n)).max()) if n else 0
    return seg, pos, n_seg, length


class RGLM(_CountTargets, RegressorMixin, BaseEstimator):
    """Recurrent Poisson GLM on a design whose rows are consecutive time bins.

    Model (per row ``t`` of a trial, units ``u``)::

        x_t     = W0 y_{t-1} + R x_{t-1},       x_{-1} = 0, y_{-1} = 0 at each trial start
        drive_t = X_t @ coef_.T + intercept_ + B x_t,   E[y_t] = exp(drive_t)

    ``y`` (n_samples, n_units) — or (n_samples,) for one unit — are the counts, rows in time
    order; ``groups`` (n_samples,) marks trials: the state resets wherever its value changes
    from one row to the next (``None``: all rows are one trial).

    Fit: ``objective = (1/n) sum_{t,u} NLL(y_tu, drive_tu) + alpha/2 (||coef||² + ||W0||² +
    ||R||² + ||B||²)`` (intercepts unpenalised; per unit the same ``alpha`` as
    :class:`PoissonGLM`). Start: the :class:`PoissonGLM` fit at the same ``alpha``, ``B = 0``
    (so the first iterate's drive IS the GLM's), small random ``W0``, ``R`` (``random_state``);
    then ``torch.optim.LBFGS`` (strong Wolfe, float64) on all parameters; the state is
    :func:`neurorec.core.recurrence.linear_recurrence` over trials padded to equal length. If
    L-BFGS ended above the GLM's penalised objective, the GLM point (``W0 = R = B = 0``, where
    the objective equals the GLM's exactly) is kept, so ``objective_ <= glm_objective_``.

    Prediction: ``predict(X, y, groups)`` is the ONE-STEP-AHEAD expected count of every row
    given the observed counts ``y`` of the earlier rows of its trial (``y_t`` itself is not
    used for row ``t``); ``score(X, y, groups)`` / ``bits_per_spike`` score those predictions
    against the same ``y``. ``predict(X)`` without ``y`` runs the model closed loop in the
    mean-field approximation (``y_{t-1}`` replaced by its predicted mean; a loop over rows).

    Parameters:
        dim: state dimension.
        alpha: L2 strength (above); also the warm-start GLM's.
        fit_intercept: per-unit unpenalised intercepts.
        tol: L-BFGS ``tolerance_grad`` (max |gradient| of the objective above).
        max_iter: L-BFGS iterations (``max_eval = 2 max_iter``).
        glm_max_iter: Newton iterations of the warm start.
        init_scale: scale of the random ``W0`` start (``init_scale / sqrt(n_units)``);
            ``R`` starts as a random orthogonal matrix times 0.5.
        random_state: seed of the ``W0``/``R`` start.

    Attributes:
        coef_ (n_units, n_features), intercept_ (n_units,), W0_ (dim, n_units), R_ (dim, dim),
        B_ (n_units, dim) — 1-D training y: coef_ (n_features,), intercept_ float;
        glm_ the warm-start :class:`PoissonGLM`; objective_, glm_objective_ the penalised
        mean NLL (incl. log y!) at the end and at the GLM point; n_iter_ (L-BFGS iterations),
        converged_ (L-BFGS stopped before max_iter), n_features_in_.
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

    # -- model ------------------------------------------------------------------------------

    @staticmethod
    def _states(W0, R, Yp, seg, pos, n_seg, length):
        """(n, dim) states from the previous-row counts Yp (n, U) (0 at trial starts)."""
        dim = R.shape[0]
        u = Yp @ W0.T  # (n, dim)
        pad = u.new_zeros(n_seg, length, dim)
        pad = pad.index_put((seg, pos), u)
        return linear_recurrence(pad, R)[seg, pos]

    @staticmethod
    def _prev(Y: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        Yp = torch.cat([Y.new_zeros(1, Y.shape[1]), Y[:-1]], 0)
        return Yp * (pos > 0).to(Y.dtype)[:, None]

    def fit(self, X, y, groups=None):
        """Fit on the design X (n_samples, n_features) and counts y, rows in time order."""
        for name, ok in (("dim", isinstance(self.dim, numbers.Integral) and self.dim >= 1),
                         ("max_iter", isinstance(self.max_iter, numbers.Integral)
                          and self.max_iter >= 1),
                         ("init_scale", isinstance(self.init_scale, numbers.Real)
                          and self.init_scale > 0)):
            if not ok:
                raise ValueError(f"RGLM: invalid {name}={getattr(self, name)!r}")
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        if np.any(y < 0):
            raise ValueError("RGLM: y must be non-negative counts")
        Y2 = _as_2d(y)
        n, n_units = Y2.shape
        glm = PoissonGLM(alpha=self.alpha, fit_intercept=self.fit_intercept, tol=1e-10,
                         max_iter=self.glm_max_iter)
        glm.fit(X, Y2)
        self.glm_ = glm
        seg, pos, n_seg, length = _segments(groups, n)
        dt = torch.float64
        Xt, Yt = torch.tensor(X, dtype=dt), torch.tensor(Y2, dtype=dt)
        seg_t, pos_t = torch.as_tensor(seg), torch.as_tensor(pos)
        Yp = self._prev(Yt, pos_t)
        rng = check_random_state(self.random_state)
        d = int(self.dim)
        q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        params = {
            "coef": torch.tensor(glm.coef_, dtype=dt),
            "intercept": torch.tensor(glm.intercept_, dtype=dt),
            "W0": torch.tensor(rng.standard_normal((d, n_units)) * self.init_scale
                               / math.sqrt(n_units), dtype=dt),
            "R": torch.tensor(0.5 * q, dtype=dt),
            "B": torch.zeros(n_units, d, dtype=dt),
        }
        const = float(torch.lgamma(Yt + 1.0).sum()) / n
        alpha = float(self.alpha)
        free = [k for k in params if self.fit_intercept or k != "intercept"]

        def objective(p):
            x = self._states(p["W0"], p["R"], Yp, seg_t, pos_t, n_seg, length)
            eta = (Xt @ p["coef"].T + p["intercept"] + x @ p["B"].T).clamp(max=_ETA_MAX)
            nll = (torch.exp(eta) - Yt * eta).sum() / n
            pen = sum((p[k] ** 2).sum() for k in ("coef", "W0", "R", "B"))
            return nll + 0.5 * alpha * pen

        glm_point = {k: v.clone() for k, v in params.items()}
        glm_point["W0"].zero_()
        glm_point["R"].zero_()
        with torch.no_grad():
            f_glm = float(objective(glm_point))
        for k in free:
            params[k].requires_grad_(True)
        opt = torch.optim.LBFGS([params[k] for k in free], lr=1.0, max_iter=int(self.max_iter),
                                max_eval=int(self.max_iter) * 2, tolerance_grad=float(self.tol),
                                tolerance_change=1e-12, history_size=20,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            f = objective(params)
            f.backward()
            return f

        if n > 0 and free:
            opt.step(closure)
        state = opt.state[opt._params[0]] if free else {}
        n_iter = int(state.get("n_iter", 0))
        with torch.no_grad():
            final = {k: v.detach().clone() for k, v in params.items()}
            f_end = float(objective(final))
        if not (math.isfinite(f_end) and f_end <= f_glm):
            final, f_end = glm_point, f_glm
        self.n_iter_ = max(n_iter, 1)
        self.converged_ = n_iter < int(self.max_iter)
        if not self.converged_:
            warnings.warn("RGLM: L-BFGS reached max_iter", ConvergenceWarning, stacklevel=2)
        self.objective_ = f_end + const
        self.glm_objective_ = f_glm + const
        coef, intercept = final["coef"].numpy(), final["intercept"].numpy()
        self.coef_ = coef[0] if y.ndim == 1 else coef
        self.intercept_ = float(intercept[0]) if y.ndim == 1 else intercept
        self.W0_, self.R_, self.B_ = (final[k].numpy() for k in ("W0", "R", "B"))
        self._y_1d = y.ndim == 1
        return self

    # -- prediction -------------------------------------------------------------------------

    def _glm_drive(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return X @ np.atleast_2d(self.coef_).T + np.atleast_1d(self.intercept_)

    def hidden_state(self, X, y, groups=None) -> np.ndarray:
        """(n_samples, dim) states ``x_t`` given the observed counts y."""
        check_is_fitted(self)
        Y2 = _as_2d(np.asarray(y, dtype=np.float64))
        n = Y2.shape[0]
        seg, pos, n_seg, length = _segments(groups, n)
        with torch.no_grad():
            pos_t = torch.as_tensor(pos)
            Yp = self._prev(torch.tensor(Y2), pos_t)
            x = self._states(torch.tensor(self.W0_), torch.tensor(self.R_), Yp,
                             torch.as_tensor(seg), pos_t, n_seg, length)
        return x.numpy()

    def predict(self, X, y=None, groups=None):
        """Expected counts. With ``y``: one-step-ahead given the observed past counts (row t
        uses y of rows < t of its trial). Without: closed-loop mean-field (past counts replaced
        by the predicted means)."""
        drive = self._glm_drive(X)
        n = drive.shape[0]
        if y is not None:
            Y2 = _as_2d(np.asarray(y, dtype=np.float64))
            if Y2.shape != drive.shape:
                raise ValueError(f"RGLM.predict: y must have shape {drive.shape} (the counts "
                                 f"of the training units), got {np.shape(y)}")
            mu = np.exp(np.minimum(drive + self.hidden_state(X, Y2, groups) @ self.B_.T,
                                   _ETA_MAX))
        else:
            seg, _, _, _ = _segments(groups, n)
            mu = np.empty_like(drive)
            x = np.zeros(self.R_.shape[0])
            prev = np.zeros(drive.shape[1])
            for t in range(n):
                if t == 0 or seg[t] != seg[t - 1]:
                    x[:], prev[:] = 0.0, 0.0
                x = self.W0_ @ prev + self.R_ @ x
                prev = np.exp(np.minimum(drive[t] + self.B_ @ x, _ETA_MAX))
                mu[t] = prev
        return mu[:, 0] if self._y_1d else mu

    def score(self, X, y, groups=None):
        """D² (Poisson) of the one-step-ahead predictions given the observed y."""
        y = np.asarray(y, dtype=np.float64)
        return _d2(poisson_nll, _as_2d(y), _as_2d(self.predict(X, y, groups)))

    def bits_per_spike(self, X, y, groups=None):
        """NLB bits/spike of the one-step-ahead predictions (null = each unit's mean of y)."""
        y = np.asarray(y, dtype=np.float64)
        return _bits_per_spike("poisson", _as_2d(y), _as_2d(self.predict(X, y, groups)))
