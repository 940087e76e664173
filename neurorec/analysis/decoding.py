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
    from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_score
    from sklearn.svm import LinearSVC

    clf = make_pipeline(StandardScaler(), LinearSVC(C=C, max_iter=20_000, random_state=seed))
    if groups is not None:
        cv = GroupKFold(n_splits=n_splits)
    else:
        cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return float(cross_val_score(clf, features, labels, groups=groups, cv=cv).mean())
