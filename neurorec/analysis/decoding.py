"""Decoding the stimulus condition of held-out trials from population spike counts."""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from neurorec.core.metrics import nll_tables
from neurorec.data.recording import BinnedTrials


class _Scorer(Protocol):
    """What decoding needs of a fitted model (any family with ``binned_trials``)."""

    observation_name: str

    def predict_rate(self, data: BinnedTrials) -> np.ndarray: ...

    def noise_scale(self) -> np.ndarray | None: ...


def condition_log_likelihoods(model: _Scorer, data: BinnedTrials) -> np.ndarray:
    """(n_trials, n_conditions) log-likelihood of each trial's counts under every condition.

    The model's own likelihood (history, coupling, in-bin correlations included), with the
    trial's stimulus label replaced by each candidate in turn.
    """
    out = np.empty((len(data.counts), data.n_conditions))
    for c in range(data.n_conditions):
        relabelled = dataclasses.replace(data, condition=np.full_like(data.condition, c))
        nll, _ = nll_tables(data.counts, model.predict_rate(relabelled),
                             model.observation_name, model.noise_scale())
        out[:, c] = -nll.reshape(len(data.counts), -1).sum(axis=1)
    return out


def map_decode(model: _Scorer, data: BinnedTrials) -> np.ndarray:
    """(n_trials,) maximum-likelihood condition of each trial (flat prior = MAP)."""
    return condition_log_likelihoods(model, data).argmax(axis=1)


def logistic_decode(train: BinnedTrials, test: BinnedTrials, seed: int = 0) -> np.ndarray:
    """(n_test_trials,) conditions predicted by multinomial logistic regression on each unit's
    total count per trial (standardised; scikit-learn, L2 with C = 1)."""
    features = [d.counts.sum(axis=1).astype(float) for d in (train, test)]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=seed))
    clf.fit(features[0], train.condition)
    return clf.predict(features[1])


def svm_decode_cv(features: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None,
                  n_splits: int = 5, C: float = 1.0, seed: int = 0) -> float:
    """Cross-validated accuracy of a linear SVM (scikit-learn ``LinearSVC`` on standardised
    features) predicting ``labels`` (n,) from ``features`` (n, n_features).

    ``groups`` (n,): samples sharing a group (e.g. frames of one movie) stay in the same fold.
    """
    return decode_cv(features, labels, groups, n_splits, "linear_svm", C=C, seed=seed)


CLASSIFIERS = ("linear_svm", "rbf_svm", "knn")


def decode_cv(features: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None,
              n_splits: int = 5, classifier: str = "linear_svm", C: float = 1.0, k: int = 5,
              seed: int = 0) -> float:
    """Cross-validated accuracy of ``classifier`` predicting ``labels`` (n,) from ``features``
    (n, n_features), standardised inside each training fold.

    ``classifier``: ``linear_svm`` (``LinearSVC``, one-vs-rest), ``rbf_svm`` (``SVC`` with an
    RBF kernel, C), ``knn`` (k nearest neighbours, Euclidean) — the last two bound what any
    smooth decision rule, not only a linear one, can read from the features.
    ``groups`` (n,): samples sharing a group (e.g. frames of one movie) stay in the same fold
    (``GroupKFold``); otherwise stratified shuffled folds drawn with ``seed``.
    """
    from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC, LinearSVC

    if classifier == "linear_svm":
        est = LinearSVC(C=C, max_iter=20_000, random_state=seed)
    elif classifier == "rbf_svm":
        est = SVC(C=C, kernel="rbf", random_state=seed)
    elif classifier == "knn":
        est = KNeighborsClassifier(n_neighbors=k)
    else:
        raise ValueError(f"classifier {classifier!r}: choose from {', '.join(CLASSIFIERS)}")
    clf = make_pipeline(StandardScaler(), est)
    if groups is not None:
        cv = GroupKFold(n_splits=n_splits)
    else:
        cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return float(cross_val_score(clf, features, labels, groups=groups, cv=cv).mean())


def lagged_features(x: np.ndarray, lags: tuple[int, ...] = (0, 1)) -> np.ndarray:
    """Features of several time steps side by side: x (n_seq, T, d) -> (n_seq, T − max(lags),
    d · len(lags)) whose row t (t = max(lags) .. T − 1 of the input) is
    ``[x[:, t − lags[0]], x[:, t − lags[1]], ...]`` — e.g. (0, 1): a frame's code beside the
    previous frame's, what a decoder of motion needs when one frame is ambiguous."""
    m = max(lags)
    T = x.shape[1]
    if min(lags) < 0 or m >= T:
        raise ValueError(f"lags {lags} must be in 0..{T - 1}")
    return np.concatenate([x[:, m - lag:T - lag] for lag in lags], axis=-1)
