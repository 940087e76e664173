"""How well labels (e.g. digits) separate in a representation, as numbers per time step.

Two measures of the same thing a t-SNE figure shows by eye: the cross-validated k-nearest-
neighbour accuracy of the labels (chance 1 / n_classes for balanced labels) and the silhouette
score (scikit-learn; −1..1, ≈ 0 for labels unrelated to the geometry).
"""

from __future__ import annotations

import numpy as np

from neurorec.analysis.decoding import decode_cv


def silhouette(features: np.ndarray, labels: np.ndarray, seed: int = 0,
               max_samples: int | None = None) -> float:
    """Mean silhouette of ``labels`` (n,) on Euclidean ``features`` (n, d) (scikit-learn);
    on a random subset of ``max_samples`` rows (drawn with ``seed``) when given."""
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(features, labels, sample_size=max_samples,
                                  random_state=seed))


def separation_over_time(states: np.ndarray, labels: np.ndarray, k: int = 5,
                         n_splits: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    """For states (n, T, d) of n sequences with labels (n,): per time step the
    ``n_splits``-fold k-NN accuracy (``knn``, (T,)) and the silhouette (``silhouette``, (T,)).
    """
    T = states.shape[1]
    knn = np.array([decode_cv(states[:, t], labels, n_splits=n_splits, classifier="knn", k=k,
                              seed=seed) for t in range(T)])
    sil = np.array([silhouette(states[:, t], labels) for t in range(T)])
    return {"knn": knn, "silhouette": sil}
