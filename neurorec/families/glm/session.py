"""The GLM on a continuous session: behavioural covariates in spline bases plus each unit's
own spike history, fitted by the row-sparse batched Newton (:mod:`neurorec.fit.sparse_newton`).

Drive of unit ``u`` in bin ``t`` (exponential link, Poisson counts):

    η_tu = b_u + Σ_c B_c(x_c(t)) · β_cu + Σ_k h_uk Σ_l H_k(l) y_u(t − l),

with ``B_c`` the basis of covariate term ``c`` (``spec.covariates``: B-splines, cyclic
B-splines, tensor products, products, raised-cosine lags; :mod:`neurorec.core.splines`) and
``H`` the spike-history basis of ``spec.history`` (log-stretched raised cosines,
:func:`neurorec.core.bases.raised_cosine_log`), applied within segments: a lag never reaches
into another segment. The fit uses the ``train`` bins; scores use the NLB definition on the
evaluated bins (:func:`neurorec.core.metrics.bits_per_spike`).

:func:`covariate_design` (spec + session → sparse blocks) is the piece other session models
reuse (the R-GLM's covariate drive).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurorec.core.errors import DataError
from neurorec.core.metrics import bits_per_spike, per_neuron_bits_per_spike
from neurorec.core.splines import (
    RowSparse,
    bspline,
    cyclic_bspline,
    dense,
    lagged,
    row_kron,
)
from neurorec.data.session import BinnedSession
from neurorec.fit.distributed import map_chunks
from neurorec.fit.run import Run
from neurorec.fit.sparse_newton import (
    BlockDesign,
    SparseNewtonResult,
    fit_poisson,
    poisson_information,
)


@dataclass
class CovariateDesign:
    """The covariate part of a session design.

    ``blocks``: one :class:`RowSparse` per term (n_bins rows); ``names``: term names;
    ``ridge``: (n_cols,) ridge per column; ``bounds``: term name -> the ranges used (so a
    prediction on other bins uses the fitted knots); ``slices``: term name -> its columns.
    """

    blocks: list[RowSparse]
    names: list[str]
    ridge: np.ndarray
    bounds: dict[str, tuple[float, ...]]
    slices: dict[str, slice]

    @property
    def n_cols(self) -> int:
        return int(sum(b.n_cols for b in self.blocks))


def _series(entry: Any, session: BinnedSession, where: str) -> np.ndarray:
    key = entry.series or entry.name
    if key not in session.covariates:
        raise DataError(f"{where}: covariates: {entry.name}: series '{key}' is not in the "
                        f"session (has {sorted(session.covariates)})")
    x = np.asarray(session.covariates[key], dtype=float)
    return x[:, None] if x.ndim == 1 else x


def _range_of(x: np.ndarray, rows: np.ndarray | None) -> tuple[float, float]:
    v = x if rows is None else x[rows]
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise DataError("covariates: no finite values to take a range from")
    lo, hi = float(v.min()), float(v.max())
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def entry_basis(entry: Any, x: np.ndarray, bounds: tuple[float, ...] | None,
                built: dict[str, RowSparse] | None = None,
                segment: np.ndarray | None = None,
                bin_size: float = 0.01) -> tuple[RowSparse, tuple[float, ...]]:
    """The basis of one covariate entry evaluated at ``x`` (n, d), with the ranges used.

    ``built``: earlier entries' bases on the same rows (for a ``product``); ``segment``:
    (n,) segment ids (for ``raised_cosine_lags``).
    """
    if entry.basis == "product":
        a, b = (built or {})[entry.of[0]], (built or {})[entry.of[1]]
        return row_kron(a, b), ()
    if entry.basis == "raised_cosine_lags":
        n_lags = max(1, round(entry.duration / bin_size))
        if entry.n_basis > n_lags:
            raise DataError(f"covariates: {entry.name}: n_basis {entry.n_basis} needs ≥ "
                            f"{entry.n_basis} lags; duration {entry.duration} s is {n_lags} bins")
        seg = np.zeros(len(x), np.int64) if segment is None else segment
        feats = lagged(x, seg, n_lags, int(entry.n_basis), first_lag=0)
        return dense(feats.reshape(len(x), -1)), ()
    if entry.basis == "cyclic_bspline":
        period = tuple(entry.range) if entry.range is not None else (0.0, 2 * np.pi)
        return cyclic_bspline(x[:, 0], int(entry.n_basis), entry.order, period), period
    if entry.basis == "bspline":
        lo, hi = bounds
        return bspline(x[:, 0], int(entry.n_basis), entry.order, (lo, hi)), (lo, hi)
    if entry.basis == "tensor_bspline":
        if x.shape[1] != 2:
            raise DataError(f"covariates: {entry.name}: tensor_bspline needs a 2-column "
                            f"series, got {x.shape[1]} columns")
        nx, ny = ((entry.n_basis, entry.n_basis) if isinstance(entry.n_basis, int)
                  else entry.n_basis)
        bx = bspline(x[:, 0], nx, entry.order, bounds[0:2])
        by = bspline(x[:, 1], ny, entry.order, bounds[2:4])
        return row_kron(bx, by), tuple(bounds)
    raise ValueError(f"unknown basis {entry.basis}")


def covariate_design(entries: Any, session: BinnedSession, where: str = "spec",
                     bounds: dict[str, tuple[float, ...]] | None = None,
                     fit_rows: np.ndarray | None = None) -> CovariateDesign:
    """The covariate blocks of ``entries`` (a spec's ``covariates``) on all of ``session``'s
    bins.

    Args:
        bounds: ranges from an earlier design (prediction with fitted knots); None: from
            ``entry.range`` or the ``fit_rows`` bins' range.
        fit_rows: (n_bins,) bool, the bins a range is taken from (default: train bins).
    """
    rows = session.mask("train") if fit_rows is None else fit_rows
    built: dict[str, RowSparse] = {}
    ridge, used, slices, blocks, names = [], {}, {}, [], []
    start = 1  # column 0 is the bias, added by the model
    for entry in entries:
        x = None if entry.basis == "product" else _series(entry, session, where)
        rng = None
        if bounds is not None and entry.name in bounds:
            rng = bounds[entry.name]
        elif entry.basis in ("bspline", "tensor_bspline"):
            if entry.range is not None:
                rng = tuple(entry.range)
            else:
                rng = tuple(v for j in range(x.shape[1] if entry.basis == "tensor_bspline"
                                             else 1) for v in _range_of(x[:, j], rows))
        block, rng = entry_basis(entry, x, rng, built, session.segment, session.bin_size)
        built[entry.name] = block
        blocks.append(block)
        names.append(entry.name)
        used[entry.name] = tuple(float(v) for v in rng)
        slices[entry.name] = slice(start, start + block.n_cols)
        start += block.n_cols
        ridge.append(np.full(block.n_cols, entry.ridge))
    ridge_arr = np.concatenate(ridge) if ridge else np.zeros(0)
    return CovariateDesign(blocks, names, ridge_arr, used, slices)


def history_features(counts: np.ndarray, segment: np.ndarray, n_basis: int,
                     duration: float, bin_size: float) -> np.ndarray:
    """(n_bins, n_units, n_basis) own-history features within segments (lags 1 .. duration)."""
    n_lags = max(1, round(duration / bin_size))
    if n_basis > n_lags:
        raise DataError(f"history.n_basis: {n_basis} functions need ≥ {n_basis} lags, but "
                        f"history.duration {duration * 1e3:g} ms is {n_lags} bins")
    return lagged(counts, segment, n_lags, n_basis, first_lag=1)


def fit_unit_chunk(shared: dict, task: dict) -> SparseNewtonResult:
    """One chunk of units of :meth:`SessionGLM.fit` (a Dask task, or run in-process).

    ``shared``: ``design`` (:class:`BlockDesign` on the train bins), ``train`` (n_bins,)
    bool, ``segment`` (n_bins,), ``ridge`` (1 + P + K,), ``history`` (n_basis, duration s,
    bin size s). ``task``: ``counts`` (n_bins, k) the chunk's counts on every bin (taken out
    of ``task``, so only the training rows stay held), ``history`` (bool: own-history
    columns), ``start`` (k, ≥ width) or None, ``offset`` (n_train, k) or None.
    """
    train, counts = shared["train"], task.pop("counts")
    y = counts[train]
    own = None
    if task["history"]:
        own = history_features(counts, shared["segment"], *shared["history"])[train]
    del counts
    width = shared["design"].n_cols + (0 if own is None else own.shape[2])
    if task["start"] is None:
        init = np.zeros((y.shape[1], width))
        init[:, 0] = np.log(np.maximum(y.mean(axis=0), 1e-3 / max(len(y), 1)))
    else:
        init = np.array(task["start"][:, :width], dtype=float)
    return fit_poisson(shared["design"], y, own, shared["ridge"][:width], init, tol=1e-10,
                       offset=task["offset"])


class SessionGLM:
    """A GLM fitted to a :class:`~neurorec.data.session.BinnedSession`.

    Learned state (after :meth:`fit`): ``coef_`` (n_units, 1 + P + K) (bias, covariate
    columns, history weights), ``bounds_`` (term -> ranges), ``slices_`` (term -> columns of
    ``coef_``), ``converged_`` (n_units,), ``fit_time_s_``.
    """

    fitted_attribute = "coef_"
    #: the session path's declarations (:class:`neurorec.families.base.Model`)
    session_glm = "self"
    counts_parameters = True

    def __init__(self, spec: Any, *, seed: int = 0, heldout: np.ndarray | None = None,
                 chunk: int = 32):
        self.spec, self.seed, self.heldout, self.chunk = spec, seed, heldout, chunk

    # ------------------------------------------------------------------ design
    @property
    def n_history(self) -> int:
        return self.spec.history.n_basis if self.spec.history.enabled else 0

    def _design(self, session: BinnedSession, bounds=None) -> tuple[list[RowSparse],
                                                                    CovariateDesign]:
        cov = covariate_design(self.spec.covariates, session, self.spec.name, bounds)
        return [dense(np.ones((session.n_bins, 1))), *cov.blocks], cov

    def _history(self, session: BinnedSession, units: np.ndarray) -> np.ndarray | None:
        if not self.n_history:
            return None
        h = history_features(session.counts[:, units], session.segment, self.n_history,
                             self.spec.history.duration, session.bin_size)
        if self.heldout is not None:  # a held-out unit's own history is not used
            h[:, self.heldout[units]] = 0.0
        return h

    def _ridge(self, cov: CovariateDesign) -> np.ndarray:
        """(1 + P + K,) ridge per coefficient, per bin: the bias unpenalised, each covariate
        column its entry's ``ridge``, the history weights ``penalty.l2``."""
        return np.concatenate([[0.0], cov.ridge, np.full(self.n_history, self.spec.penalty.l2)])

    def _heldout_mask(self, n_units: int) -> np.ndarray:
        return np.zeros(n_units, bool) if self.heldout is None else np.asarray(self.heldout,
                                                                                 bool)

    def _unit_chunks(self, n_units: int) -> list[np.ndarray]:
        """The units fitted together, ``chunk`` at a time: held-in units, then held-out units
        (co-smoothing: they have no own-history term, so their chunks are fitted without
        those columns and their history weights stay 0)."""
        ho = self._heldout_mask(n_units)
        return [group[a:a + self.chunk] for group in (np.flatnonzero(~ho), np.flatnonzero(ho))
                for a in range(0, len(group), self.chunk)]

    # ------------------------------------------------------------------ fit
    def fit(self, session: BinnedSession, *, progress: bool = False, run: Run | None = None,
            offset: np.ndarray | None = None, start: np.ndarray | None = None) -> SessionGLM:
        """Fit every unit on the session's ``train`` bins.

        ``offset``: (n_bins, n_units) fixed drive added to every unit's linear predictor
        while fitting (the R-GLM refits the covariate and history weights beside its latent's
        drive); it is not part of the fitted model's :meth:`drive`.

        ``run`` (:class:`~neurorec.fit.run.Run`): each finished chunk of units is saved in
        its checkpoint folder (``chunk_<i>.npz``); with ``run.resume`` the saved chunks are
        loaded instead of refitted (bitwise the same coefficients: the chunks are independent).
        """
        work_dir = None if run is None else run.checkpoint_dir
        resume = run is not None and run.resume
        t0 = time.perf_counter()
        train = session.mask("train")
        if not train.any():
            raise DataError(f"{session.source}: split: no 'train' bins to fit")
        blocks, cov = self._design(session)
        design = BlockDesign([b.take(train) for b in blocks])
        n_units, n_h = session.n_units, self.n_history
        n_coef = design.n_cols + n_h
        ridge = self._ridge(cov)
        coef = np.zeros((n_units, n_coef))
        converged = np.zeros(n_units, bool)
        n_iter = np.zeros(n_units, np.int64)
        if work_dir is not None:
            work_dir = Path(work_dir)
            work_dir.mkdir(parents=True, exist_ok=True)
        ho = self._heldout_mask(n_units)
        chunks = self._unit_chunks(n_units)
        todo = []  # (i, units) of the chunks to fit (the rest loaded from checkpoints)
        for i, units in enumerate(chunks):
            path = None if work_dir is None else work_dir / f"chunk_{i}.npz"
            if resume and path is not None and path.exists():
                saved = np.load(path)
                if saved["coef"].shape == (len(units), n_coef) and np.array_equal(
                        saved["units"], units):
                    coef[units], converged[units] = saved["coef"], saved["converged"]
                    n_iter[units] = saved["n_iter"]
                    continue
            todo.append((i, units))
        # the chunks are independent fits: here one after another, or on the workers of a
        # Dask units split (neurorec.fit.distributed: the design sent once, bit for bit)
        shared = {"design": design, "train": train, "segment": session.segment,
                  "ridge": ridge, "history": (n_h, self.spec.history.duration,
                                              session.bin_size)}
        rows = np.flatnonzero(train)
        payloads = ({"counts": session.counts[:, units],
                     "history": bool(n_h) and not ho[units[0]],
                     "start": None if start is None else start[units],
                     "offset": None if offset is None else offset[np.ix_(rows, units)]}
                    for _, units in todo)

        def finished(k: int, res) -> None:
            i, units = todo[k]
            path = None if work_dir is None else work_dir / f"chunk_{i}.npz"
            coef[units, :res.coef.shape[1]] = res.coef
            converged[units], n_iter[units] = res.converged, res.n_iter
            if path is not None:
                tmp = path.with_suffix(".tmp.npz")
                np.savez(tmp, coef=coef[units], converged=res.converged, n_iter=res.n_iter,
                         units=units)
                tmp.replace(path)
            if progress:
                print(f"  units {units[0]}..{units[-1]}: {int(res.n_iter.max())} Newton "
                      f"iterations, {res.wall_s:.1f} s", flush=True)

        map_chunks(fit_unit_chunk, payloads, shared, on_result=finished)
        self.coef_, self.converged_, self.n_iter_ = coef, converged, n_iter
        self.bounds_, self.names_ = cov.bounds, cov.names
        self.slices_ = dict(cov.slices)
        self.n_units_, self.bin_size_ = n_units, session.bin_size
        self.fit_time_s_ = time.perf_counter() - t0
        return self

    def check_fitted(self) -> None:
        from neurorec.core.errors import NotFittedError

        if not hasattr(self, "coef_"):
            raise NotFittedError(f"{type(self).__name__}: call fit first")

    # ------------------------------------------------------------------ predict / score
    def drive(self, session: BinnedSession) -> np.ndarray:
        """(n_bins, n_units) linear predictor on every bin of ``session``."""
        self.check_fitted()
        blocks, _ = self._design(session, self.bounds_)
        design = BlockDesign(blocks)
        p = design.n_cols
        eta = design.dot(self.coef_[:, :p].T)
        if self.n_history:
            for a in range(0, session.n_units, self.chunk):
                units = np.arange(a, min(a + self.chunk, session.n_units))
                own = self._history(session, units)
                eta[:, units] += np.einsum("nuk,uk->nu", own, self.coef_[units, p:])
        return eta

    def predict_rate(self, session: BinnedSession) -> np.ndarray:
        """(n_bins, n_units) expected counts per bin."""
        return np.exp(self.drive(session))

    def score(self, session: BinnedSession, split: str = "test",
              rates: np.ndarray | None = None) -> float:
        """NLB bits/spike on the bins of ``split``."""
        rates = self.predict_rate(session) if rates is None else rates
        rows = session.mask(split)
        return bits_per_spike(session.counts[rows][None], rates[rows][None])

    def per_neuron_score(self, session: BinnedSession, split: str = "test",
                         rates: np.ndarray | None = None) -> np.ndarray:
        rates = self.predict_rate(session) if rates is None else rates
        rows = session.mask(split)
        return per_neuron_bits_per_spike(session.counts[rows][None], rates[rows][None])

    def n_parameters(self) -> int:
        self.check_fitted()
        return int(self.coef_.size)

    def standard_errors(self, session: BinnedSession) -> dict[str, np.ndarray]:
        """Standard errors of the coefficients from the observed information of each unit's
        penalised training objective (the ``train`` bins):
        ``sqrt(diag((Z_u' diag(mu_u) Z_u + 2 n Λ)^-1))``, ``Λ`` the ridges the fit used — the
        Bayesian covariance of a penalised GLM (Wood 2006). The ridges are needed: spline
        bases sum to one, so without them the bias and every spline block are collinear and
        the information is singular. With zero ridges (no covariates) this is the usual
        ``(Z' W Z)^-1`` (statsmodels' ``bse``).

        Returns:
            ``coef`` (n_units, 1 + P + K) like ``coef_``, and its parts: ``bias`` (n_units,),
            one (n_units, columns) array per covariate term, ``history`` (n_units, K). NaN for
            a held-out unit's history columns (not fitted) and for every coefficient of a
            unit whose information is singular (e.g. a spline column never visited).
        """
        self.check_fitted()
        train = session.mask("train")
        blocks, cov = self._design(session, self.bounds_)
        # float64 pair products (the fit's float32 Gram is enough for Newton steps, not for
        # a covariance: ~1e-4 relative there)
        design = BlockDesign([b.take(train) for b in blocks], dtype=np.float64)
        p = design.n_cols
        lam = 2 * int(train.sum()) * self._ridge(cov)
        ho = self._heldout_mask(session.n_units)
        se = np.full(self.coef_.shape, np.nan)
        for units in self._unit_chunks(session.n_units):
            own = None if ho[units[0]] else self._history(session, units)
            own = None if own is None else own[train]
            width = p if own is None else self.coef_.shape[1]
            info = poisson_information(design, self.coef_[units, :width], own)
            info[:, np.arange(width), np.arange(width)] += lam[:width]
            for u, h in zip(units, info, strict=True):
                if np.linalg.cond(h) < 1e12:
                    se[u, :width] = np.sqrt(np.diag(np.linalg.inv(h)))
        out = {"coef": se, "bias": se[:, 0]}
        for name, sl in self.slices_.items():
            out[name] = se[:, sl]
        out["history"] = se[:, p:]
        return out

    # ------------------------------------------------------------------ tuning
    def partial_dependence(self, session: BinnedSession, name: str,
                           grid: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Model tuning of term ``name`` on ``grid``, Hz: partial dependence (Friedman 2001)
        over the bins ``rows`` (default train), ``mean_t exp(η_t − f(x_t) + f(g)) / bin``.

        Args:
            grid: (n_grid, d) covariate values (d = the series' columns).
        Returns:
            (n_units, n_grid) rates, Hz.
        """
        self.check_fitted()
        entry = next(e for e in self.spec.covariates if e.name == name)
        if entry.basis in ("product", "raised_cosine_lags"):
            raise DataError(f"covariates: {name}: no tuning curve for a {entry.basis} term")
        rows = session.mask("train") if rows is None else rows
        blocks, _cov = self._design(session, self.bounds_)
        sl = self.slices_[name]
        w = self.coef_[:, sl]  # (units, cols)
        own_f = blocks[self.names_.index(name) + 1].dot(w.T)  # (n_bins, units)
        rest = self.drive(session) - own_f
        rest = rest[rows]
        shift = rest.max(axis=0)
        base = np.log(np.mean(np.exp(rest - shift), axis=0)) + shift  # (units,)
        g, _ = entry_basis(entry, np.atleast_2d(np.asarray(grid, float)).reshape(len(grid), -1),
                           self.bounds_[name])
        fg = g.dot(w.T)  # (n_grid, units)
        return (np.exp(fg + base[None]) / self.bin_size_).T

    # ------------------------------------------------------------------ save / load
    def save(self, directory: Path) -> None:
        from neurorec.spec.load import dump_spec

        self.check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        held = {} if self.heldout is None else {"heldout": np.asarray(self.heldout, bool)}
        np.savez(directory / "session_glm.npz", coef=self.coef_, converged=self.converged_,
                 n_iter=self.n_iter_, **held)
        meta = {"bounds": {k: list(v) for k, v in self.bounds_.items()}, "names": self.names_,
                "slices": {k: [s.start, s.stop] for k, s in self.slices_.items()},
                "n_units": self.n_units_, "bin_size": self.bin_size_,
                "fit_time_s": self.fit_time_s_}
        (directory / "session_glm.json").write_text(json.dumps(meta, indent=1))
        (directory / "spec.yaml").write_text(dump_spec(self.spec))

    @classmethod
    def load(cls, directory: Path) -> SessionGLM:
        from neurorec.spec.load import load_model_spec

        directory = Path(directory)
        arrays = np.load(directory / "session_glm.npz")
        model = cls(load_model_spec(directory / "spec.yaml"),
                    heldout=arrays["heldout"] if "heldout" in arrays.files else None)
        meta = json.loads((directory / "session_glm.json").read_text())
        model.coef_, model.converged_ = arrays["coef"], arrays["converged"]
        model.n_iter_ = arrays["n_iter"]
        model.bounds_ = {k: tuple(v) for k, v in meta["bounds"].items()}
        model.names_ = meta["names"]
        model.slices_ = {k: slice(*v) for k, v in meta["slices"].items()}
        model.n_units_, model.bin_size_ = meta["n_units"], meta["bin_size"]
        model.fit_time_s_ = meta["fit_time_s"]
        return model


__all__ = ["CovariateDesign", "SessionGLM", "covariate_design", "entry_basis",
           "fit_unit_chunk", "history_features"]
