"""Batched Newton for per-unit Poisson regressions on a row-sparse spline design.

Every unit ``u`` of ``Y`` (n_rows, n_units, integer counts) gets its own coefficients and the
penalised objective (exponential link, the exact Poisson NLL without ``log y!``)

    f_u = Σ_n [exp(η_nu) - y_nu η_nu] + n_rows Σ_j ridge_j w_uj²,
    η_nu = X[n] @ w_u[:P] + H[n, u] @ w_u[P:],

with ``X`` a shared design given as column blocks (:class:`~neurorec.core.splines.RowSparse`:
B-splines, cyclic B-splines, tensor products, dense blocks such as the bias) and ``H`` optional
per-unit features (n_rows, n_units, K) (each unit's own spike history). The ridge is "per
row", as elsewhere in neurorec (the objective divided by ``n_rows`` is the mean NLL plus
``Σ ridge w²``).

Local support is what makes this fast. A row of a B-spline block has ``order`` non-zeros at
columns fixed by its knot interval (the block's ``start``), so the Gram block between blocks
``A`` and ``B`` is a sum over the distinct ``(start_A, start_B)`` of small dense products:
rows sharing a pattern are gathered once (a permutation computed before the first
iteration) and each pattern's ``Σ_n w_nu a_n b_nᵀ`` for all units is one GEMM of the
(rows × m_A m_B) pair products with the (rows × units) weights. The cost per iteration is
``O(n_rows · (Σ_A m_A)² · n_units)`` instead of ``O(n_rows · P² · n_units)`` for a dense
design (P columns, Σ m_A non-zeros per row), and no (n_rows × P) dense matrix is ever made.
The gradient and linear predictor use the same patterns.

Newton steps are damped per unit (backtracking on ``f_u``); a unit stops when its Newton
decrement ``λ²/2 ≤ tol · max(1, |f_u|)``, as in :mod:`neurorec.fit.newton`.
Units are processed in chunks (``chunk`` units at a time; units are independent), so memory
is O(n_rows · chunk · K) beside the data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from neurorec.core.splines import RowSparse


@dataclass
class _Pattern:
    """Rows grouped by one key: ``groups`` of (rows, cols_a, cols_b)."""

    groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]]


def _group(key: np.ndarray, cols_a: np.ndarray, cols_b: np.ndarray) -> _Pattern:
    order = np.argsort(key, kind="stable")
    bounds = np.flatnonzero(np.diff(key[order])) + 1
    groups = []
    for rows in np.split(order, bounds):
        if len(rows):
            groups.append((rows, cols_a[rows[0]], cols_b[rows[0]]))
    return _Pattern(groups)


class BlockDesign:
    """A shared design as column blocks with their row patterns precomputed.

    Args:
        blocks: column blocks, all with the same rows; columns are concatenated in order.
    """

    def __init__(self, blocks: list[RowSparse]):
        if not blocks:
            raise ValueError("BlockDesign: no blocks")
        n = {b.n_rows for b in blocks}
        if len(n) != 1:
            raise ValueError(f"BlockDesign: blocks have different row counts {sorted(n)}")
        self.blocks = blocks
        self.n_rows = blocks[0].n_rows
        self.offsets = np.cumsum([0] + [b.n_cols for b in blocks])
        self.n_cols = int(self.offsets[-1])
        self.single = [_group(b.start, b.cols + o, b.cols + o)
                       for b, o in zip(blocks, self.offsets[:-1], strict=True)]
        self.pairs: dict[tuple[int, int], _Pattern] = {}
        for i, a in enumerate(blocks):
            for j in range(i + 1, len(blocks)):
                b = blocks[j]
                key = a.start * b.n_starts + b.start
                self.pairs[i, j] = _group(key, a.cols + self.offsets[i],
                                          b.cols + self.offsets[j])

    @property
    def nnz_per_row(self) -> int:
        return sum(b.nnz_per_row for b in self.blocks)

    def dot(self, coef: np.ndarray) -> np.ndarray:
        """(n_rows, n_out) ``X @ coef`` for ``coef`` (n_cols, n_out)."""
        out = np.zeros((self.n_rows, coef.shape[1]))
        for b, pat in zip(self.blocks, self.single, strict=True):
            for rows, cols, _ in pat.groups:
                out[rows] += b.values[rows] @ coef[cols]
        return out

    def tdot(self, r: np.ndarray) -> np.ndarray:
        """(n_cols, n_out) ``Xᵀ @ r`` for ``r`` (n_rows, n_out)."""
        out = np.zeros((self.n_cols, *r.shape[1:]))
        flat = r.reshape(self.n_rows, -1)
        for b, pat in zip(self.blocks, self.single, strict=True):
            for rows, cols, _ in pat.groups:
                out[cols] += (b.values[rows].T @ flat[rows]).reshape((len(cols), *r.shape[1:]))
        return out

    def gram(self, w: np.ndarray) -> np.ndarray:
        """(n_units, P, P) ``Xᵀ diag(w_u) X`` for weights ``w`` (n_rows, n_units)."""
        n_units = w.shape[1]
        out = np.zeros((n_units, self.n_cols, self.n_cols))
        for b, pat in zip(self.blocks, self.single, strict=True):
            m = b.nnz_per_row
            for rows, cols, _ in pat.groups:
                v = b.values[rows]
                pv = (v[:, :, None] * v[:, None, :]).reshape(len(rows), m * m)
                local = (pv.T @ w[rows]).T.reshape(n_units, m, m)
                out[:, cols[:, None], cols[None, :]] += local
        for (i, j), pat in self.pairs.items():
            a, b = self.blocks[i], self.blocks[j]
            ma, mb = a.nnz_per_row, b.nnz_per_row
            for rows, ca, cb in pat.groups:
                pv = (a.values[rows][:, :, None] * b.values[rows][:, None, :]).reshape(
                    len(rows), ma * mb)
                local = (pv.T @ w[rows]).T.reshape(n_units, ma, mb)
                out[:, ca[:, None], cb[None, :]] += local
                out[:, cb[:, None], ca[None, :]] += local.transpose(0, 2, 1)
        return out

    def take(self, rows: np.ndarray) -> BlockDesign:
        """The design restricted to ``rows``."""
        return BlockDesign([b.take(rows) for b in self.blocks])


@dataclass
class SparseNewtonResult:
    """``coef`` (n_units, P + K): shared-design columns then per-unit features;
    ``converged`` (n_units,) bool; ``n_iter`` (n_units,); ``objective`` (n_units,) final
    ``f_u``; ``wall_s`` seconds."""

    coef: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray
    objective: np.ndarray
    wall_s: float = 0.0
    history: list[float] = field(default_factory=list)


def _objective(eta: np.ndarray, y: np.ndarray, coef: np.ndarray, ridge: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        nll = (np.exp(eta) - y * eta).sum(axis=0)
    return nll + (ridge[None] * coef**2).sum(axis=1)


def fit_poisson(design: BlockDesign, counts: np.ndarray, own: np.ndarray | None = None,
                ridge: np.ndarray | None = None, init: np.ndarray | None = None,
                tol: float = 1e-10, max_iter: int = 50,
                callback: Callable[[int, int], None] | None = None) -> SparseNewtonResult:
    """Fit every unit's penalised Poisson regression (see the module docstring).

    Args:
        design: the shared design (n_rows rows, P columns).
        counts: (n_rows, n_units) integer counts (converted per chunk, never copied whole).
        own: (n_rows, n_units, K) per-unit features, or None (K = 0).
        ridge: (P + K,) ridge per column, per row (multiplied by n_rows here); None: 0.
        init: (n_units, P + K) start; None: zeros with no other start (give the bias).
        tol: Newton-decrement tolerance (relative to the objective).
        max_iter: iterations at most.
        callback: called with (iteration, active units) after each iteration.
    Returns:
        :class:`SparseNewtonResult`.
    """
    import time

    t0 = time.perf_counter()
    n_rows, n_units = counts.shape
    n_own = 0 if own is None else own.shape[2]
    n_coef = design.n_cols + n_own
    lam = (np.zeros(n_coef) if ridge is None else np.asarray(ridge, float)) * n_rows
    coef = np.zeros((n_units, n_coef)) if init is None else np.array(init, dtype=float)
    y = counts.astype(np.float64)

    def predictor(c: np.ndarray, units: np.ndarray) -> np.ndarray:
        eta = design.dot(c[:, :design.n_cols].T)
        if n_own:
            eta += np.einsum("nuk,uk->nu", own[:, units], c[:, design.n_cols:])
        return eta

    active = np.arange(n_units)
    converged = np.zeros(n_units, bool)
    n_iter = np.zeros(n_units, np.int64)
    eta = predictor(coef, active)
    obj = _objective(eta, y, coef, lam)
    history = []
    for it in range(max_iter):
        if len(active) == 0:
            break
        ya, ea, ca = y[:, active], eta, coef[active]
        mu = np.exp(ea)
        r = mu - ya
        grad = np.empty((len(active), n_coef))
        grad[:, :design.n_cols] = design.tdot(r).T
        hess = np.zeros((len(active), n_coef, n_coef))
        hess[:, :design.n_cols, :design.n_cols] = design.gram(mu)
        if n_own:
            oa = own[:, active]
            grad[:, design.n_cols:] = np.einsum("nuk,nu->uk", oa, r)
            wo = oa * mu[:, :, None]
            cross = design.tdot(wo)  # (P, units, K)
            hess[:, :design.n_cols, design.n_cols:] = cross.transpose(1, 0, 2)
            hess[:, design.n_cols:, :design.n_cols] = cross.transpose(1, 2, 0)
            hess[:, design.n_cols:, design.n_cols:] = np.einsum("nuk,nul->ukl", wo, oa)
        grad += 2 * lam[None] * ca
        hess[:, np.arange(n_coef), np.arange(n_coef)] += 2 * lam[None]
        try:
            step = -np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            step = -np.stack([np.linalg.lstsq(h, g, rcond=None)[0]
                              for h, g in zip(hess, grad, strict=True)])
        decrement = -(grad * step).sum(axis=1)
        d_eta = predictor(step, active)
        alpha = np.ones(len(active))
        new_obj = obj[active].copy()
        accepted = np.zeros(len(active), bool)
        for _ in range(50):
            trial = ea + alpha * d_eta
            f = _objective(trial, ya, ca + alpha[:, None] * step, lam)
            ok = np.isfinite(f) & (f <= obj[active] - 1e-4 * alpha * decrement) & ~accepted
            new_obj[ok] = f[ok]
            accepted |= ok
            if accepted.all():
                break
            alpha = np.where(accepted, alpha, alpha / 2)
        coef[active[accepted]] += alpha[accepted, None] * step[accepted]
        eta = np.where(accepted[None], ea + alpha[None] * d_eta, ea)
        obj[active] = np.where(accepted, new_obj, obj[active])
        n_iter[active] += 1
        done = decrement / 2 <= tol * np.maximum(1.0, np.abs(obj[active]))
        converged[active[done & accepted]] = True
        stop = done | ~accepted
        history.append(float(obj.sum()))
        active, eta = active[~stop], eta[:, ~stop]
        if callback is not None:
            callback(it, len(active))
    return SparseNewtonResult(coef, converged, n_iter, obj, time.perf_counter() - t0, history)


__all__ = ["BlockDesign", "SparseNewtonResult", "fit_poisson"]
