"""Dynamical-systems summaries of rate networks: spectra and structure of ``W_rec`` (before and
after training), latent trajectories (PCA, DCA) and subspace angles. Pure functions on arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg


def eigen_spectrum(w: np.ndarray) -> np.ndarray:
    """(N,) complex eigenvalues of ``w`` (N, N), sorted by decreasing modulus."""
    lam = np.linalg.eigvals(w)
    return lam[np.argsort(-np.abs(lam), kind="stable")]


def spectral_radius(w: np.ndarray) -> float:
    return float(np.max(np.abs(np.linalg.eigvals(w))))


def non_normality(w: np.ndarray) -> float:
    """Henrici departure from normality: ‖strictly upper part of the Schur form T‖_F
    (0 for a normal matrix; ``w = Z T Z*``, complex Schur)."""
    t, _ = scipy.linalg.schur(w, output="complex")
    return float(np.linalg.norm(np.triu(t, 1)))


@dataclass(frozen=True)
class WeightChange:
    """How training changed ``W_rec``.

    singular_values: (N,) of ΔW; effective_rank: participation ratio (Σσ)²/Σσ² ... of σ²;
    rank90: singular values needed for 90 % of ‖ΔW‖_F²; mean_drift: mean(W_after) - mean(W_before);
    relative_change: ‖ΔW‖_F / ‖W_before‖_F; radius_before/after: spectral radii;
    non_normality_before/after: see :func:`non_normality`.
    """

    singular_values: np.ndarray
    effective_rank: float
    rank90: int
    mean_drift: float
    relative_change: float
    radius_before: float
    radius_after: float
    non_normality_before: float
    non_normality_after: float


def weight_change(before: np.ndarray, after: np.ndarray) -> WeightChange:
    """Low-rank structure of ``ΔW = after - before`` and spectral summaries; both (N, N)."""
    delta = after - before
    s = np.linalg.svd(delta, compute_uv=False)
    power = s ** 2
    total = power.sum()
    pr = float(power.sum() ** 2 / (power ** 2).sum()) if total > 0 else 0.0
    rank90 = int(np.searchsorted(np.cumsum(power) / total, 0.9) + 1) if total > 0 else 0
    return WeightChange(s, pr, rank90, float(after.mean() - before.mean()),
                        float(np.linalg.norm(delta) / np.linalg.norm(before)),
                        spectral_radius(before), spectral_radius(after),
                        non_normality(before), non_normality(after))


def centrality(w: np.ndarray, kind: str = "eigenvector") -> np.ndarray:
    """(N,) node centrality of the weighted digraph ``j → i`` with weight ``|w[i, j]|``
    (networkx: ``eigenvector`` or ``strength`` = in + out absolute weight)."""
    a = np.abs(w)
    if kind == "strength":
        return a.sum(0) + a.sum(1)
    import networkx as nx

    graph = nx.from_numpy_array(a.T, create_using=nx.DiGraph)  # edge j -> i
    c = nx.eigenvector_centrality_numpy(graph, weight="weight")
    return np.array([c[i] for i in range(len(a))])


@dataclass(frozen=True)
class PCAResult:
    """components: (d, N) orthonormal rows; explained: (d,) variance fractions;
    mean: (N,); trajectories: (B, T, d) projected rates."""

    components: np.ndarray
    explained: np.ndarray
    mean: np.ndarray
    trajectories: np.ndarray


def pca_trajectories(rates: np.ndarray, n_components: int = 3) -> PCAResult:
    """PCA of rates (B, T, N) pooled over trials and time; trajectories projected."""
    b, t, n = rates.shape
    x = rates.reshape(-1, n)
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    var = s ** 2
    d = min(n_components, len(s))
    comps = vt[:d]
    proj = ((x - mean) @ comps.T).reshape(b, t, d)
    return PCAResult(comps, var[:d] / var.sum() if var.sum() > 0 else np.zeros(d), mean, proj)


def subspace_angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Principal angles (radians, descending as scipy returns them) between the spans of the
    rows of ``a`` (d1, N) and ``b`` (d2, N): ``scipy.linalg.subspace_angles`` on columns."""
    return scipy.linalg.subspace_angles(np.asarray(a).T, np.asarray(b).T)


def dca_predictive_information(rates: np.ndarray, d: int = 3, window: int = 5,
                               seed: int = 0) -> tuple[float, np.ndarray]:
    """Predictive information (nats) of the best ``d``-dim projection with past/future windows
    of ``window`` steps (Dynamical Components Analysis, Clark et al. 2019, via the
    ``DynamicalComponentsAnalysis`` package), and the projection (N, d). rates: (B, T, N)."""
    from dca import DynamicalComponentsAnalysis

    x = [np.asarray(trial, dtype=float) for trial in rates]
    model = DynamicalComponentsAnalysis(d=d, T=window, rng_or_seed=seed).fit(x)
    return float(model.score()), model.coef_


def orthonormal_rows(a: np.ndarray) -> np.ndarray:
    """(d, N) orthonormal rows spanning the rows of ``a`` (d, N) (QR; a DCA projection is
    orthonormal only to the optimiser's tolerance)."""
    q, _ = np.linalg.qr(np.asarray(a, dtype=float).T)
    return q.T


def smallest_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest principal angle (degrees) between the row spans of ``a`` (d1, N) and
    ``b`` (d2, N): 0 when they share a direction, 90 when orthogonal."""
    return float(np.degrees(subspace_angles(a, b).min()))


def random_subspace_angles(n: int, d1: int, d2: int, n_draws: int = 1000,
                           seed: int = 0) -> np.ndarray:
    """(n_draws,) smallest principal angles (degrees) between independent uniformly random
    (Haar) ``d1``- and ``d2``-dimensional subspaces of R^n: the chance level for an angle
    between a latent space and a readout (for d1 = d2 = 1, cos²θ ~ Beta(½, (n-1)/2))."""
    rng = np.random.default_rng(seed)
    out = np.empty(n_draws)
    for k in range(n_draws):
        a = orthonormal_rows(rng.standard_normal((d1, n)))
        b = orthonormal_rows(rng.standard_normal((d2, n)))
        # cosines of the principal angles are the singular values of a bᵀ
        out[k] = np.degrees(np.arccos(min(1.0, np.linalg.svd(a @ b.T, compute_uv=False)[0])))
    return out


@dataclass(frozen=True)
class DCAResult:
    """pi: predictive information (nats) of the projection; basis: (d, N) orthonormal rows;
    mean: (N,); trajectories: (B, T, d) rates projected on the basis."""

    pi: float
    basis: np.ndarray
    mean: np.ndarray
    trajectories: np.ndarray


def dca_trajectories(rates: np.ndarray, d: int = 3, window: int = 5,
                     seed: int = 0) -> DCAResult:
    """DCA (see :func:`dca_predictive_information`) of rates (B, T, N) with the trajectories
    projected on the (orthonormalised) DCA subspace, for plotting beside PCA's."""
    pi, coef = dca_predictive_information(rates, d=d, window=window, seed=seed)
    basis = orthonormal_rows(coef.T)
    b, t, n = rates.shape
    x = rates.reshape(-1, n)
    mean = x.mean(0)
    return DCAResult(pi, basis, mean, ((x - mean) @ basis.T).reshape(b, t, -1))


def top_fraction_kept(before: np.ndarray, after: np.ndarray, fraction: float = 0.1) -> float:
    """Share of the top ``fraction`` of nodes by ``before`` (N,) (e.g. centrality) that are
    still in the top ``fraction`` by ``after`` (N,): 1 = the hubs stayed, ``fraction`` = what
    two unrelated rankings share on average."""
    k = max(1, round(fraction * len(before)))
    top_before = set(np.argsort(-np.asarray(before), kind="stable")[:k])
    top_after = set(np.argsort(-np.asarray(after), kind="stable")[:k])
    return len(top_before & top_after) / k
