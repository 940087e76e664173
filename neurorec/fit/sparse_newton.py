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

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from neurorec.core.splines import RowSparse, dense


class BlockDesign:
    """A shared design as column blocks, its rows grouped by column pattern once.

    Rows whose blocks all have the same ``start`` share their columns; they are stored
    contiguously (a permutation of the rows), with the products of every pair of a row's
    non-zeros precomputed (the upper triangle: ``m (m + 1) / 2`` per row for ``m`` non-zeros),
    so a Gram is one GEMM per pattern and no dense (n_rows × n_cols) matrix is ever built.

    Args:
        blocks: column blocks, all with the same rows; columns are concatenated in order.
        dtype: float type of the stored pair products and of the Gram's accumulation
            (float32 halves memory and Gram time; the gradient, objective and solve stay
            float64, so the optimum is unchanged: an inexact Hessian only changes the path).
        min_rows: a block keeps its row patterns while the rows per pattern stay ≥ this
            (on average); narrower blocks beyond that are stored densely, since patterns
            of a few rows each make many tiny products.
    """

    def __init__(self, blocks: list[RowSparse], dtype: type = np.float32,
                 min_rows: int = 64):
        if not blocks:
            raise ValueError("BlockDesign: no blocks")
        n = {b.n_rows for b in blocks}
        if len(n) != 1:
            raise ValueError(f"BlockDesign: blocks have different row counts {sorted(n)}")
        self.blocks = blocks
        self.n_rows = blocks[0].n_rows
        offsets = np.cumsum([0] + [b.n_cols for b in blocks])
        self.n_cols = int(offsets[-1])
        # narrow blocks (a cyclic head-direction basis, a speed basis) are stored densely:
        # splitting rows by their patterns too would leave patterns of a few rows each
        parts = list(blocks)
        patterns = 1
        for i in sorted(range(len(blocks)), key=lambda i: -blocks[i].n_cols):
            b = blocks[i]
            if b.n_starts == 1:
                continue
            if self.n_rows / (patterns * b.n_starts) >= min_rows and b.n_cols > b.nnz_per_row:
                patterns *= b.n_starts
            else:
                parts[i] = dense(b.toarray())
        values = np.concatenate([b.values for b in parts], axis=1)
        cols = np.concatenate([b.cols + o for b, o in zip(parts, offsets[:-1], strict=True)],
                              axis=1)
        group = np.zeros(self.n_rows, dtype=np.int64)
        for b in parts:  # mixed radix; renumbered when it would overflow
            if b.n_starts > 1:
                group = group * b.n_starts + b.start
                if group.max(initial=0) > 2**40:
                    group = np.unique(group, return_inverse=True)[1].ravel()
        self.perm = np.argsort(group, kind="stable")
        bounds = np.concatenate([[0], np.flatnonzero(np.diff(group[self.perm])) + 1,
                                 [self.n_rows]])
        self.values = np.ascontiguousarray(values[self.perm])
        m = self.values.shape[1]
        ia, ib = np.triu_indices(m)
        vt = self.values_t = np.ascontiguousarray(self.values.T)
        self.pairs_t = (vt[ia] * vt[ib]).astype(dtype)  # (m (m + 1) / 2, n_rows)
        self.dtype = dtype
        self.groups: list[tuple[int, int, np.ndarray, np.ndarray]] = []
        for a, b in itertools.pairwise(bounds):
            if b > a:
                c = cols[self.perm[a]]
                self.groups.append((int(a), int(b), c, c[ia] * self.n_cols + c[ib]))

    @property
    def nnz_per_row(self) -> int:
        return int(self.values.shape[1])

    def dot(self, coef: np.ndarray) -> np.ndarray:
        """(n_rows, n_out) ``X @ coef`` for ``coef`` (n_cols, n_out)."""
        out = np.empty((self.n_rows, coef.shape[1]))
        for a, b, cols, _ in self.groups:
            out[a:b] = self.values[a:b] @ coef[cols]
        result = np.empty_like(out)
        result[self.perm] = out
        return result

    def tdot(self, r: np.ndarray) -> np.ndarray:
        """(n_cols, ...) ``Xᵀ @ r`` for ``r`` (n_rows, ...)."""
        flat = r.reshape(self.n_rows, -1)[self.perm]
        out = np.zeros((self.n_cols, flat.shape[1]))
        for a, b, cols, _ in self.groups:
            out[cols] += self.values[a:b].T @ flat[a:b]
        return out.reshape((self.n_cols, *r.shape[1:]))

    def gram(self, w: np.ndarray) -> np.ndarray:
        """(n_units, P, P) ``Xᵀ diag(w_u) X`` for weights ``w`` (n_rows, n_units)."""
        n_units = w.shape[1]
        ws = np.ascontiguousarray(w[self.perm], dtype=self.dtype)
        out = np.zeros((self.n_cols * self.n_cols, n_units))
        for a, b, _, flat in self.groups:
            out[flat] += self.pairs_t[:, a:b] @ ws[a:b]
        out = np.ascontiguousarray(out.T).reshape(n_units, self.n_cols, self.n_cols)
        diag = np.einsum("uii->ui", out).copy()
        out += out.transpose(0, 2, 1)
        idx = np.arange(self.n_cols)
        out[:, idx, idx] = diag
        return out

    # -- the solver's layout: rows in pattern order, unit-major (n_units, n_rows) arrays --
    def sorted_dot(self, coef: np.ndarray) -> np.ndarray:
        """(n_units, n_rows) ``(X @ coefᵀ)ᵀ`` in pattern row order for ``coef`` (n_units, P)."""
        out = np.empty((coef.shape[0], self.n_rows))
        for a, b, cols, _ in self.groups:
            out[:, a:b] = coef[:, cols] @ self.values_t[:, a:b]
        return out

    def sorted_tdot(self, r: np.ndarray) -> np.ndarray:
        """(n_out, P) ``r @ X`` for ``r`` (n_out, n_rows) in pattern row order."""
        out = np.zeros((r.shape[0], self.n_cols))
        for a, b, cols, _ in self.groups:
            out[:, cols] += r[:, a:b] @ self.values[a:b]
        return out

    def sorted_gram(self, w: np.ndarray) -> np.ndarray:
        """(n_units, P, P) ``Xᵀ diag(w_u) X`` for ``w`` (n_units, n_rows) in pattern order."""
        n_units = w.shape[0]
        ws = np.asarray(w, dtype=self.dtype)
        out = np.zeros((n_units, self.n_cols * self.n_cols))
        for a, b, _, flat in self.groups:
            out[:, flat] += ws[:, a:b] @ self.pairs_t[:, a:b].T
        out = out.reshape(n_units, self.n_cols, self.n_cols)
        diag = np.einsum("uii->ui", out).copy()
        out += out.transpose(0, 2, 1)
        idx = np.arange(self.n_cols)
        out[:, idx, idx] = diag
        return out

    def take(self, rows: np.ndarray) -> BlockDesign:
        """The design restricted to ``rows``."""
        return BlockDesign([b.take(rows) for b in self.blocks], self.dtype)


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


def _hessian(design: BlockDesign, ha: np.ndarray | None, mu: np.ndarray) -> np.ndarray:
    """(units, P + K, P + K) Hessian of the Poisson NLL (exp link) in the coefficients:
    ``Z_u' diag(mu_u) Z_u`` with ``Z_u`` the shared design beside unit ``u``'s own features
    ``ha`` (units, K, rows; None: K = 0), rows in the design's pattern order."""
    n_units, n_rows = mu.shape
    p = design.n_cols
    n_own = 0 if ha is None else ha.shape[1]
    hess = np.zeros((n_units, p + n_own, p + n_own))
    hess[:, :p, :p] = design.sorted_gram(mu)
    if n_own:
        wo = ha * mu[:, None, :]
        cross = design.sorted_tdot(wo.reshape(-1, n_rows)).reshape(n_units, n_own, p)
        hess[:, p:, :p] = cross
        hess[:, :p, p:] = cross.transpose(0, 2, 1)
        hess[:, p:, p:] = np.einsum("ukn,uln->ukl", wo, ha)
    return hess


def poisson_information(design: BlockDesign, coef: np.ndarray, own: np.ndarray | None = None,
                        offset: np.ndarray | None = None) -> np.ndarray:
    """Observed Fisher information of each unit's Poisson log-likelihood (no penalty) at
    ``coef``: (n_units, P + K, P + K), the Hessian Newton uses (:func:`fit_poisson`).

    Args:
        design: the shared design (n_rows rows, P columns); coef: (n_units, P + K);
        own: (n_rows, n_units, K) per-unit features or None; offset: (n_rows, n_units) or None.
    """
    perm = design.perm
    p = design.n_cols
    eta = design.sorted_dot(coef[:, :p])
    hk = None
    if own is not None:
        hk = np.ascontiguousarray(own[perm].transpose(1, 2, 0))
        eta += np.einsum("ukn,uk->un", hk, coef[:, p:])
    if offset is not None:
        eta += np.ascontiguousarray(offset[perm].T, dtype=np.float64)
    return _hessian(design, hk, np.exp(eta))


def fit_poisson(design: BlockDesign, counts: np.ndarray, own: np.ndarray | None = None,
                ridge: np.ndarray | None = None, init: np.ndarray | None = None,
                tol: float = 1e-10, max_iter: int = 50,
                callback: Callable[[int, int], None] | None = None,
                offset: np.ndarray | None = None) -> SparseNewtonResult:
    """Fit every unit's penalised Poisson regression (see the module docstring).

    Args:
        design: the shared design (n_rows rows, P columns).
        counts: (n_rows, n_units) integer counts.
        own: (n_rows, n_units, K) per-unit features, or None (K = 0).
        ridge: (P + K,) ridge per column, per row (multiplied by n_rows here); None: 0.
        init: (n_units, P + K) start; None: zeros (give the bias a start instead).
        tol: Newton-decrement tolerance (relative to the objective).
        max_iter: iterations at most.
        callback: called with (iteration, active units) after each iteration.
        offset: (n_rows, n_units) fixed drive added to every unit's linear predictor (e.g.
            a latent's contribution while the covariate weights are refitted), or None.
    Returns:
        :class:`SparseNewtonResult`.
    """
    import time

    t0 = time.perf_counter()
    n_rows, n_units = counts.shape
    p = design.n_cols
    n_own = 0 if own is None else own.shape[2]
    n_coef = p + n_own
    lam = (np.zeros(n_coef) if ridge is None else np.asarray(ridge, float)) * n_rows
    coef = np.zeros((n_units, n_coef)) if init is None else np.array(init, dtype=float)
    perm = design.perm
    y = np.ascontiguousarray(counts[perm].T, dtype=np.float64)  # (units, rows), pattern order
    # (units, K, rows): each unit's own features in pattern order
    hk = None if own is None else np.ascontiguousarray(own[perm].transpose(1, 2, 0))

    def predictor(c: np.ndarray, units: np.ndarray) -> np.ndarray:
        eta = design.sorted_dot(c[:, :p])
        if n_own:
            eta += np.einsum("ukn,uk->un", hk[units], c[:, p:])
        return eta

    active = np.arange(n_units)
    converged = np.zeros(n_units, bool)
    n_iter = np.zeros(n_units, np.int64)
    eta = predictor(coef, active)
    if offset is not None:  # steps never move it: eta is updated by eta + alpha * d_eta
        eta += np.ascontiguousarray(offset[perm].T, dtype=np.float64)
    with np.errstate(over="ignore"):
        mu = np.exp(eta)
    obj = mu.sum(axis=1) - np.einsum("un,un->u", y, eta) + (lam * coef**2).sum(axis=1)
    history = []
    diag = np.arange(n_coef)
    for it in range(max_iter):
        if len(active) == 0:
            break
        ca = coef[active]
        r = mu - y
        grad = np.empty((len(active), n_coef))
        grad[:, :p] = design.sorted_tdot(r)
        ha = hk[active] if n_own else None  # (units, K, rows)
        if n_own:
            grad[:, p:] = np.einsum("ukn,un->uk", ha, r)
        hess = _hessian(design, ha, mu)
        grad += 2 * lam[None] * ca
        hess[:, diag, diag] += 2 * lam[None]
        try:
            step = -np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            step = -np.stack([np.linalg.lstsq(h, g, rcond=None)[0]
                              for h, g in zip(hess, grad, strict=True)])
        decrement = -(grad * step).sum(axis=1)
        d_eta = predictor(step, active)
        alpha = np.ones(len(active))
        accepted = np.zeros(len(active), bool)
        pending = np.arange(len(active))
        for _ in range(50):
            every = len(pending) == len(active)
            e0 = eta if every else eta[pending]
            de = d_eta if every else d_eta[pending]
            trial = e0 + alpha[pending, None] * de
            with np.errstate(over="ignore", invalid="ignore"):
                mu_trial = np.exp(trial)
                c_trial = ca[pending] + alpha[pending, None] * step[pending]
                f = (mu_trial.sum(axis=1) - np.einsum("un,un->u", y[pending], trial)
                     + (lam * c_trial**2).sum(axis=1))
            ok = np.isfinite(f) & (f <= obj[active[pending]]
                                   - 1e-4 * alpha[pending] * decrement[pending])
            if ok.all() and every:
                eta, mu = trial, mu_trial
            elif ok.any():
                good = pending[ok]
                eta[good], mu[good] = trial[ok], mu_trial[ok]
            coef[active[pending[ok]]] = c_trial[ok]
            obj[active[pending[ok]]] = f[ok]
            accepted[pending[ok]] = True
            pending = pending[~ok]
            if len(pending) == 0:
                break
            alpha[pending] /= 2
        n_iter[active] += 1
        done = decrement / 2 <= tol * np.maximum(1.0, np.abs(obj[active]))
        converged[active[done & accepted]] = True
        keep = accepted & ~done
        history.append(float(obj.sum()))
        active = active[keep]
        if not keep.all():
            eta, mu, y = eta[keep], mu[keep], y[keep]
        if callback is not None:
            callback(it, len(active))
    return SparseNewtonResult(coef, converged, n_iter, obj, time.perf_counter() - t0, history)


__all__ = ["BlockDesign", "SparseNewtonResult", "fit_poisson"]
