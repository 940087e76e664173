"""Spline bases for behavioural covariates, kept sparse: B-splines, cyclic B-splines, their
row-wise (tensor) products, and raised-cosine lag filters of a covariate series.

The B-splines come from scipy (:meth:`scipy.interpolate.BSpline.design_matrix`, which
returns a CSR matrix); nothing here evaluates a spline by hand. Every basis row of a B-spline
of order ``k`` (degree ``k - 1``) has exactly ``k`` non-zeros at consecutive columns
``start .. start + k - 1`` (cyclic: wrapped), so a design is stored as a :class:`RowSparse`:
``values`` and ``cols`` of shape (n_rows, nnz_per_row) plus the ``start`` that fixes a row's
column pattern. The row pattern is what the session GLM's Newton solver exploits
(:mod:`neurorec.fit.sparse_newton`): rows that share a start share their columns, so a
unit's Gram ``Xᵀ diag(w) X`` is a sum of small dense blocks.

Knots follow nemos' ``BSplineEval`` / ``CyclicBSplineEval`` (uniform interior knots over the
range, clamped ends; cyclic: ``n_basis`` uniform intervals over the period), so the column
spaces agree with nemos' bases of the same order and size (tested against nemos).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.interpolate import BSpline

from neurorec.core.bases import raised_cosine_log


@dataclass(frozen=True)
class RowSparse:
    """A design matrix with the same number of non-zeros in every row.

    Attributes:
        values: (n_rows, m) float64 entries.
        cols: (n_rows, m) int64 column of each entry (distinct within a row).
        start: (n_rows,) int64 pattern id of each row: rows with equal ``start`` have equal
            ``cols`` (a B-spline's first active function; a product's combined id).
        n_starts: number of possible ``start`` values (``0 .. n_starts - 1``).
        n_cols: columns of the full matrix.
    """

    values: np.ndarray
    cols: np.ndarray
    start: np.ndarray
    n_starts: int
    n_cols: int

    @property
    def n_rows(self) -> int:
        return int(self.values.shape[0])

    @property
    def nnz_per_row(self) -> int:
        return int(self.values.shape[1])

    def tocsr(self) -> sp.csr_matrix:
        """The (n_rows, n_cols) scipy CSR matrix (duplicates summed)."""
        n, m = self.values.shape
        indptr = np.arange(0, n * m + 1, m, dtype=np.int64)
        out = sp.csr_matrix((self.values.ravel().copy(), self.cols.ravel().copy(), indptr),
                            shape=(n, self.n_cols))
        out.sum_duplicates()
        return out

    def toarray(self) -> np.ndarray:
        """(n_rows, n_cols) dense copy (tests and small grids only)."""
        return self.tocsr().toarray()

    def take(self, rows: np.ndarray) -> RowSparse:
        """The rows ``rows`` (an index or boolean array)."""
        return RowSparse(self.values[rows], self.cols[rows], self.start[rows], self.n_starts,
                         self.n_cols)

    def dot(self, coef: np.ndarray) -> np.ndarray:
        """(n_rows, n_out) ``X @ coef`` for ``coef`` (n_cols, n_out), via the row patterns."""
        out = np.zeros((self.n_rows, coef.shape[1]))
        for rows, cols in pattern_groups(self.start, self.cols):
            out[rows] = self.values[rows] @ coef[cols]
        return out


def pattern_groups(start: np.ndarray, cols: np.ndarray):
    """Yield ``(rows, cols)`` for every distinct ``start``: the row indices (sorted) and
    their shared (m,) columns."""
    order = np.argsort(start, kind="stable")
    keys = start[order]
    bounds = np.flatnonzero(np.diff(keys)) + 1
    for rows in np.split(order, bounds):
        if len(rows):
            yield rows, cols[rows[0]]


def clamped_knots(n_basis: int, order: int, lo: float, hi: float) -> np.ndarray:
    """Knot vector of ``n_basis`` B-splines of order ``order`` on [lo, hi]: uniform interior
    knots, ends repeated ``order`` times (nemos' ``BSplineEval`` knots, rescaled)."""
    if n_basis < order:
        raise ValueError(f"n_basis {n_basis} must be ≥ the order {order}")
    if not hi > lo:
        raise ValueError(f"range [{lo}, {hi}] is empty")
    inner = np.linspace(lo, hi, n_basis - order + 2)
    return np.concatenate([np.full(order - 1, lo), inner, np.full(order - 1, hi)])


def _from_design_matrix(x: np.ndarray, knots: np.ndarray, degree: int) -> tuple[np.ndarray,
                                                                               np.ndarray]:
    """(values, cols) (n, degree + 1) of scipy's CSR design matrix at finite ``x``."""
    dm = BSpline.design_matrix(x, knots, degree).tocsr()
    m = degree + 1
    if not np.array_equal(np.diff(dm.indptr), np.full(len(x), m)):
        raise RuntimeError("BSpline.design_matrix did not give order non-zeros per row")
    return dm.data.reshape(-1, m), dm.indices.reshape(-1, m).astype(np.int64)


def bspline(x: np.ndarray, n_basis: int, order: int = 4,
            bounds: tuple[float, float] | None = None) -> RowSparse:
    """B-spline basis of ``x`` (clamped, uniform knots over ``bounds``).

    Args:
        x: (n,) samples; values outside ``bounds`` are clipped to them; NaN gives a zero row.
        n_basis: number of basis functions (≥ order).
        order: spline order (4: cubic).
        bounds: (lo, hi); None: the finite range of ``x``.
    Returns:
        :class:`RowSparse` (n, n_basis) with ``order`` non-zeros per row; rows sum to 1.
    """
    x = np.asarray(x, dtype=float).ravel()
    finite = np.isfinite(x)
    lo, hi = _bounds(x[finite], bounds)
    knots = clamped_knots(n_basis, order, lo, hi)
    values = np.zeros((len(x), order))
    cols = np.tile(np.arange(order, dtype=np.int64), (len(x), 1))
    if finite.any():
        values[finite], cols[finite] = _from_design_matrix(np.clip(x[finite], lo, hi), knots,
                                                           order - 1)
    n_starts = n_basis - order + 1
    start = np.where(finite, cols[:, 0], n_starts)  # NaN rows: their own pattern
    return RowSparse(values, cols, start, n_starts + 1, n_basis)


def cyclic_bspline(x: np.ndarray, n_basis: int, order: int = 4,
                   period: tuple[float, float] = (0.0, 2 * np.pi)) -> RowSparse:
    """Periodic B-spline basis of an angle-like ``x`` on [period[0], period[1]).

    ``n_basis`` uniform knot intervals on the circle; basis ``j`` is the B-spline on the
    extended uniform knots folded modulo the period (the space of nemos'
    ``CyclicBSplineEval`` of the same order and size).

    Args:
        x: (n,) samples, wrapped into the period; NaN gives a zero row.
    Returns:
        :class:`RowSparse` (n, n_basis) with ``order`` non-zeros per row.
    """
    if n_basis < order:
        raise ValueError(f"n_basis {n_basis} must be ≥ the order {order}")
    lo, hi = float(period[0]), float(period[1])
    x = np.asarray(x, dtype=float).ravel()
    finite = np.isfinite(x)
    span = hi - lo
    h = span / n_basis
    degree = order - 1
    knots = np.arange(-degree, n_basis + degree + 1) * h
    values = np.zeros((len(x), order))
    cols = np.tile(np.arange(order, dtype=np.int64), (len(x), 1))
    if finite.any():
        u = np.mod(x[finite] - lo, span)
        u = np.minimum(u, np.nextafter(span, 0))
        v, c = _from_design_matrix(u, knots, degree)
        values[finite], cols[finite] = v, c % n_basis
    # the pattern is the first unwrapped column (= the knot interval)
    start = np.where(finite, cols[:, 0], n_basis)
    return RowSparse(values, cols, start.astype(np.int64), n_basis + 1, n_basis)


def row_kron(a: RowSparse, b: RowSparse) -> RowSparse:
    """Row-wise Kronecker product (tensor-product basis): column ``i * b.n_cols + j`` is
    ``a[:, i] * b[:, j]``; stays row-sparse with ``a.m × b.m`` non-zeros per row."""
    if a.n_rows != b.n_rows:
        raise ValueError(f"row_kron: {a.n_rows} rows vs {b.n_rows}")
    n = a.n_rows
    values = (a.values[:, :, None] * b.values[:, None, :]).reshape(n, -1)
    cols = (a.cols[:, :, None] * b.n_cols + b.cols[:, None, :]).reshape(n, -1)
    start = a.start * b.n_starts + b.start
    return RowSparse(values, cols, start, a.n_starts * b.n_starts, a.n_cols * b.n_cols)


def dense(features: np.ndarray) -> RowSparse:
    """A dense (n, p) block as a :class:`RowSparse` (every row one pattern)."""
    features = np.asarray(features, dtype=float)
    n, p = features.shape
    cols = np.broadcast_to(np.arange(p, dtype=np.int64), (n, p))
    return RowSparse(features, cols, np.zeros(n, dtype=np.int64), 1, p)


def hstack(blocks: list[RowSparse]) -> RowSparse:
    """Blocks side by side (columns offset); the pattern id combines the blocks' ids."""
    values = np.concatenate([b.values for b in blocks], axis=1)
    offsets = np.cumsum([0] + [b.n_cols for b in blocks])
    cols = np.concatenate([b.cols + o for b, o in zip(blocks, offsets[:-1], strict=True)],
                          axis=1)
    start = np.zeros(blocks[0].n_rows, dtype=np.int64)
    n_starts = 1
    for b in blocks:
        start = start * b.n_starts + b.start
        n_starts *= b.n_starts
    return RowSparse(values, cols, start, n_starts, int(offsets[-1]))


def lagged(x: np.ndarray, segment: np.ndarray, n_lags: int, n_basis: int,
           first_lag: int = 0) -> np.ndarray:
    """A series filtered by log-stretched raised cosines over past lags, within segments.

    Args:
        x: (n, d) series (NaN counts as 0).
        segment: (n,) segment id; a lag never reaches into another segment.
        n_lags: lags ``first_lag .. first_lag + n_lags - 1`` bins.
        n_basis: raised cosines (:func:`neurorec.core.bases.raised_cosine_log`).
        first_lag: 0 for a covariate filter (acts at once), 1 for spike history.
    Returns:
        (n, d, n_basis): ``out[t, j, k] = Σ_l basis[l, k] x[t - l - first_lag, j]`` over lags
        inside ``t``'s segment.
    """
    x = np.nan_to_num(np.asarray(x, dtype=float))
    if x.ndim == 1:
        x = x[:, None]
    basis = raised_cosine_log(n_lags, n_basis)
    n = len(x)
    out = np.zeros((n, x.shape[1], n_basis))
    for row in range(n_lags):
        lag = row + first_lag
        if lag >= n:
            break
        if lag == 0:
            past, t0 = x, 0
        else:
            same = segment[lag:] == segment[:-lag]
            past, t0 = x[:-lag] * same[:, None], lag
        out[t0:] += past[:, :, None] * basis[row]
    return out


def _bounds(x: np.ndarray, bounds: tuple[float, float] | None) -> tuple[float, float]:
    if bounds is not None:
        return float(bounds[0]), float(bounds[1])
    if len(x) == 0:
        raise ValueError("bspline: no finite samples to take the range from")
    return float(np.min(x)), float(np.max(x))


__all__ = ["RowSparse", "bspline", "clamped_knots", "cyclic_bspline", "dense", "hstack",
           "lagged", "pattern_groups", "row_kron"]
