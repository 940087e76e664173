"""PCA spectra of a representation under the usual normalisations, and dimensionality numbers.

Which of two representations looks "higher-dimensional" can depend on how the spectrum is
normalised (singular values over their sum or over the largest, variance fractions) and on
whether each feature is standardised first (correlation vs covariance PCA: a code with many
near-constant units has a steep covariance spectrum and a flat correlation spectrum). These
functions give each reading so a comparison can state the one it uses.
"""

from __future__ import annotations

import numpy as np

NORMALISATIONS = ("sum", "max", "variance")


def pca_singular_values(x: np.ndarray, standardise: bool = False) -> np.ndarray:
    """Descending singular values of the centred (n_samples, n_features) matrix; with
    ``standardise`` each feature is divided by its s.d. first (constant features dropped)."""
    xc = x - x.mean(0)
    if standardise:
        sd = xc.std(0)
        xc = xc[:, sd > 0] / sd[sd > 0]
    return np.linalg.svd(xc, compute_uv=False)


def normalised_spectrum(s: np.ndarray, how: str = "sum") -> np.ndarray:
    """Singular values ``s`` normalised: ``sum`` s / Σs, ``max`` s / s₁, ``variance``
    s² / Σs² (the explained-variance fractions)."""
    s = np.asarray(s, float)
    if how == "sum":
        return s / s.sum()
    if how == "max":
        return s / s[0]
    if how == "variance":
        return s**2 / np.sum(s**2)
    raise ValueError(f"normalisation {how!r}: choose from {', '.join(NORMALISATIONS)}")


def n_for_variance(s: np.ndarray, fraction: float = 0.9) -> int:
    """Fewest leading components whose variance (s²) reaches ``fraction`` of the total."""
    v = np.asarray(s, float) ** 2
    return int(np.searchsorted(np.cumsum(v) / v.sum(), fraction) + 1)


def participation_ratio(s: np.ndarray) -> float:
    """``(Σλ)² / Σλ²`` of the variances λ = s² (1 for one component, k for k equal ones)."""
    v = np.asarray(s, float) ** 2
    return float(v.sum() ** 2 / np.sum(v**2))
