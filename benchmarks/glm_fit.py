"""Fit time and held-out log-likelihood of neurorec's GLM vs statsmodels' per-neuron IRLS and
nemos' PopulationGLM.

All fit the same V1 session with the same design in one process (nemos in a child process
of its own Python 3.12 venv) and under the same thread limits; the script prints tables and
the ratios ``statsmodels time / neurorec time``, ``nemos time / neurorec time`` (per unit
fitted) and the held-out LL differences (absolute and relative to statsmodels').

Sections:

1. Stimulus-only GLM (history and coupling off, early stopping off, ``penalty.stimulus_l2 = 0``
   and ``penalty.l2 = 0``): per-condition raised cosines, the design statsmodels can fit as
   per-neuron Poisson regression. Both estimate the same unpenalised MLE, so coefficients and
   held-out LL must agree.

   1b. The same design with an intercept column, ``[X, 1]``: nemos' PopulationGLM always adds
   one intercept per unit and ``raised_cosine_linear`` does not span a constant, so nemos'
   model is ``[X, 1]``. On that design: neurorec's batched Newton solver called directly
   (``neurorec.fit.newton.fit_batched_glm`` with the same ``StimulusBlock`` the GLM uses, the
   ones column as its one dense column), statsmodels IRLS on ``[X, 1]`` and nemos on ``X``
   (default solver; first call = trace + XLA compile + solve, warm calls). Skipped for nemos
   with a message when its venv is missing (``bash benchmarks/peers/setup.sh``) or with
   ``--no-nemos``.

   Hessian pass: the fraction of the machine's measured float64 GEMM FLOP/s
   (``matmul_peak.peak_flops``) reached by one call of the solver's Hessian pass
   (``neurorec.fit.newton._gram``, all kept units), for the stimulus-only and (section 2)
   full designs. Flops counted (n rows, U units, R dense shared columns, E per-unit columns,
   D = R + E; stimulus block: C conditions, T bins, K basis functions):
   ``2 n R² U + 2 n E² U + 2 n R E U`` (per-unit weighted Grams) ``+ n U + 2 U C T K²``
   (block-diagonal part) ``+ 2 n U D + 2 U C T K D`` (block × dense cross terms); the
   elementwise weighting of the design is not counted.
2. Full GLM (stimulus + spike history + coupling). neurorec with its default spec and as a
   plain MLE (early stopping off, no penalties); statsmodels fits the MLE per unit on the same
   design built by hand (stimulus columns, the unit's own history features, the other units'
   coupling features). Skipped with ``--no-full-statsmodels``. (With ``fit.solver: auto`` the
   GLM is fitted by batched Newton, which ignores early stopping: the default spec differs
   from the MLE only by ``penalty.stimulus_l2 = 1e-6``.)
3. Scaling (``--scaling``; on by default, off with ``--quick``): neurorec's fit time and time
   per Newton iteration on subsets, stimulus-only and full GLM (default penalties, early
   stopping off): units (first 2, 4, 8, all kept), training rows (every 4th, every 2nd, every
   trial), columns (stimulus ``n_basis`` 3, 6, 12), one axis varied at a time from the
   section's setting; each exponent ``p`` of ``cost ∝ size^p`` is the least-squares slope in
   log-log.

Units are restricted to those whose MLE is finite in the stimulus-only design: every column
(condition × basis function) carries > 5 basis-weighted training spikes.

Usage::

    python benchmarks/glm_fit.py [--session 3] [--n-basis 6] [--threads 2] [--device cpu]
                                 [--repeats 3] [--no-full] [--no-full-statsmodels]
                                 [--no-nemos] [--nemos-venv DIR] [--scaling|--no-scaling]
                                 [--json PATH] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import statsmodels
import statsmodels.api as sm
import torch
from threadpoolctl import threadpool_limits

import neurorec
from neurorec.core.bases import raised_cosine_linear
from neurorec.core.metrics import bits_per_spike, log_likelihood
from neurorec.data import bin_trials
from neurorec.data.recording import BinnedTrials
from neurorec.datasets import load
from neurorec.families import GLM
from neurorec.families.glm.glm import history_features
from neurorec.families.glm.spec import GLMSpec
from neurorec.fit.newton import StimulusBlock, _gram, _single_block, fit_batched_glm
from neurorec.workflows.pipeline import resolve_device

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # matmul_peak (on sys.path already when run as a script)
    sys.path.insert(0, str(HERE))
from matmul_peak import peak_flops  # noqa: E402


def _load_peers():
    """benchmarks/peers/run.py (numpy + stdlib) under a name of its own."""
    spec = importlib.util.spec_from_file_location("neurorec_bench_peers_run",
                                                  HERE / "peers" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


peers = _load_peers()

MIN_COLUMN_SPIKES = 5  # basis-weighted training spikes per design column for a finite MLE


# ------------------------------------------------------------------------------------ designs
def stimulus_design(condition: np.ndarray, n_conditions: int, basis: np.ndarray) -> np.ndarray:
    """Rows (trial, bin) × columns (condition, basis): one-hot condition ⊗ basis."""
    n_trials, n_bins = len(condition), basis.shape[0]
    X = np.zeros((n_trials, n_bins, n_conditions, basis.shape[1]))
    X[np.arange(n_trials), :, condition, :] = basis[None]
    return X.reshape(n_trials * n_bins, -1)


def lag_features(counts: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """(trials · bins, units, n_basis) past spikes filtered by ``basis`` (neurorec's own)."""
    y = torch.as_tensor(counts, dtype=torch.float64)
    out = history_features(y, torch.as_tensor(basis, dtype=torch.float64)).numpy()
    return out.reshape(-1, counts.shape[2], basis.shape[1])


def full_design(X_stim: np.ndarray, hist: np.ndarray, coup: np.ndarray, unit: int) -> np.ndarray:
    """Unit ``unit``'s design: stimulus | own history | other units' coupling features."""
    others = np.delete(coup, unit, axis=1).reshape(len(coup), -1)
    return np.hstack([X_stim, hist[:, unit], others])


def select_units(data: BinnedTrials, units: np.ndarray) -> BinnedTrials:
    return dataclasses.replace(data, counts=data.counts[:, :, units], unit_ids=data.unit_ids[units])


# ------------------------------------------------------------------------------------ timing
def timed(fn: Callable[[], object], repeats: int) -> tuple[object, list[float]]:
    """Run ``fn`` ``repeats`` times; the last result and every wall time (s)."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, times


def fit_neurorec(spec: GLMSpec, train: BinnedTrials, device: str) -> GLM:
    model = GLM(spec, device=device).fit(train, progress=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return model


def fit_statsmodels(designs: Callable[[int], np.ndarray], y: np.ndarray) -> list:
    """One ``sm.GLM(...).fit()`` (default IRLS) per unit, in turn."""
    fits = []
    for i in range(y.shape[1]):
        fits.append(sm.GLM(y[:, i], designs(i), family=sm.families.Poisson()).fit())
    return fits


def summary(times: list[float]) -> dict:
    return {"best_s": min(times), "median_s": statistics.median(times), "all_s": times}


def scores(counts: np.ndarray, rates: np.ndarray) -> dict:
    return {"heldout_ll_nats": log_likelihood(counts, rates),
            "heldout_bits_per_spike": bits_per_spike(counts, rates)}


def max_rel_coef_diff(ours: np.ndarray, refs: list) -> float:
    """max over units of max|β_neurorec - β_statsmodels| / max|β_statsmodels|."""
    return float(max(np.abs(ours[i] - r.params).max() / np.abs(r.params).max()
                     for i, r in enumerate(refs)))


def statsmodels_rates(fits: list, designs: Callable[[int], np.ndarray],
                      shape: tuple[int, int, int]) -> np.ndarray:
    rates = np.stack([np.exp(designs(i) @ f.params) for i, f in enumerate(fits)], axis=1)
    return rates.reshape(shape)


def rel(a: float, ref: float) -> float:
    """|a - ref| / |ref|."""
    return abs(a - ref) / abs(ref)


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def fit_newton_design(X: np.ndarray, y: np.ndarray, block: StimulusBlock,
                      device: str):
    """neurorec's batched Newton on a hand-built design (numpy in, the solver's result out):
    what the GLM calls, with the GLM's tolerance (1e-10) and iteration cap (200)."""
    res = fit_batched_glm(torch.as_tensor(X, device=device), torch.as_tensor(y, device=device),
                          blocks=block, tol=1e-10, max_iter=200)
    sync(device)
    return res


def peak(threads: int, device: str) -> float | None:
    try:
        return peak_flops("float64", device=device, threads=threads)
    except Exception as exc:  # a benchmark aside: report and go on
        print(f"(float64 GEMM peak not measured: {exc})")
        return None


def hessian_pass(X: torch.Tensor, unit_X: torch.Tensor | None, block: StimulusBlock | None,
                 c: torch.Tensor, repeats: int, device: str, gemm_peak: float | None) -> dict:
    """Time one Hessian pass of the solver (``_gram`` for all units) and count its flops.

    ``c``: (units, rows) curvature weights (fitted rates). The set-up mirrors
    ``fit_batched_glm``: block columns first, the other shared columns dense, then ``unit_X``.
    """
    X = X.to(device=device, dtype=torch.float64)
    UX = None if unit_X is None else unit_X.to(device=device, dtype=torch.float64)
    c = c.to(device=device, dtype=torch.float64).contiguous()
    blk = _single_block(block, X)
    p = X.shape[1]
    e = 0 if UX is None else UX.shape[2]
    q = p + e
    if blk is None:
        rest = torch.arange(p, device=X.device)
        order = torch.arange(q, device=X.device)
    else:
        in_block = torch.zeros(p, dtype=torch.bool, device=X.device)
        in_block[blk.columns] = True
        rest = (~in_block).nonzero().flatten()
        order = torch.cat([torch.arange(blk.start, blk.start + blk.n_cols, device=X.device),
                           rest, torch.arange(p, q, device=X.device)])
    order_inv = torch.argsort(order)
    X_rest = X[:, rest].contiguous()
    u, n = c.shape
    r_cols = X_rest.shape[1]
    d_cols = r_cols + e
    gram_flops = 2.0 * n * u * (r_cols**2 + e**2 + r_cols * e)
    block_flops = 0.0
    if blk is not None:
        n_cond, (t_bins, k) = int(blk.n_conditions), blk.basis.shape
        block_flops = (n * u + 2.0 * u * n_cond * t_bins * k * k
                       + (2.0 * n * u * d_cols + 2.0 * u * n_cond * t_bins * k * d_cols
                          if d_cols else 0.0))
    _gram(c, X_rest, UX, blk, order_inv)  # warm-up
    sync(device)
    times = []
    for _ in range(max(repeats, 3)):
        start = time.perf_counter()
        _gram(c, X_rest, UX, blk, order_inv)
        sync(device)
        times.append(time.perf_counter() - start)
    flops = gram_flops + block_flops
    best = min(times)
    out = {"n_rows": n, "n_units": u, "dense_shared_columns_R": r_cols,
           "per_unit_columns_E": e, "block_columns": 0 if blk is None else blk.n_cols,
           "gram_flops": gram_flops, "block_flops": block_flops, "flops": flops,
           "best_s": best, "all_s": times, "flop_per_s": flops / best,
           "fp64_gemm_peak_flop_per_s": gemm_peak,
           "fraction_of_fp64_gemm_peak": None if not gemm_peak else flops / best / gemm_peak}
    return out


def print_hessian(name: str, h: dict) -> None:
    frac = h["fraction_of_fp64_gemm_peak"]
    peak_txt = ("peak not measured" if frac is None else
                f"fraction of fp64 GEMM peak ({h['fp64_gemm_peak_flop_per_s'] / 1e9:.1f} "
                f"GFLOP/s): {frac:.3f}")
    print(f"Hessian pass, {name}: n={h['n_rows']} rows, U={h['n_units']} units, "
          f"R={h['dense_shared_columns_R']} dense + E={h['per_unit_columns_E']} per-unit + "
          f"{h['block_columns']} block columns: {h['flops'] / 1e9:.4g} GFLOP "
          f"(Grams {h['gram_flops'] / 1e9:.4g}, block {h['block_flops'] / 1e9:.4g}) in "
          f"{h['best_s'] * 1e3:.1f} ms = {h['flop_per_s'] / 1e9:.3g} GFLOP/s; {peak_txt}")


def exponent(sizes: list[float], costs: list[float]) -> float:
    """Least-squares slope of log(cost) vs log(size)."""
    return float(np.polyfit(np.log(sizes), np.log(costs), 1)[0])


# ------------------------------------------------------------------------------------ report
def row(name: str, t: dict, s: dict, note: str = "") -> str:
    return (f"{name:<40} {t['best_s']:>9.3f} {t['median_s']:>9.3f} {t['per_unit_s']:>9.4f} "
            f"{s['heldout_ll_nats']:>14.2f} {s['heldout_bits_per_spike']:>10.5f}  {note}")


HEADER = (f"{'method':<40} {'best (s)':>9} {'median':>9} {'per unit':>9} {'held-out LL':>14} "
          f"{'bits/spike':>10}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--session", type=int, default=3, help="bundled v1_gratings session")
    ap.add_argument("--n-basis", type=int, default=6, help="stimulus raised cosines per condition")
    ap.add_argument("--threads", type=int, default=2, help="torch, BLAS and nemos (XLA) threads")
    ap.add_argument("--device", default="cpu", help="neurorec device: cpu or cuda")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed repeats of each fit (nemos: warm fits after the first)")
    ap.add_argument("--no-full", action="store_true", help="skip section 2 (full GLM)")
    ap.add_argument("--no-full-statsmodels", action="store_true",
                    help="skip statsmodels on the full (history + coupling) design")
    ap.add_argument("--no-nemos", action="store_true", help="skip nemos in section 1b")
    ap.add_argument("--nemos-venv", type=Path, default=None,
                    help="nemos venv (default benchmarks/peers/.venv or $NEUROREC_NEMOS_VENV)")
    ap.add_argument("--scaling", action=argparse.BooleanOptionalAction, default=None,
                    help="section 3, cost vs units / rows / columns (default: on, off with "
                    "--quick)")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    ap.add_argument("--quick", action="store_true",
                    help="sections 1 and 1b only, session 14, 3 basis functions, 1 repeat")
    args = ap.parse_args(argv)
    if args.quick:  # benchmarks/run_all.py --quick: the ratio on a small session
        args.session, args.n_basis, args.repeats, args.no_full = 14, 3, 1, True
    if args.scaling is None:
        args.scaling = not args.quick
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)

    with threadpool_limits(args.threads):
        return run(args, device)


def run(args: argparse.Namespace, device: str) -> dict:
    source = f"v1_gratings:{args.session}"
    data = bin_trials(load(source), 0.01, seed=0)
    train_all, test_all = data.subset(~data.is_test), data.subset(data.is_test)
    n_tr, n_bins, n_units = train_all.counts.shape
    n_te = test_all.counts.shape[0]

    basis = raised_cosine_linear(n_bins, args.n_basis)
    X_train = stimulus_design(train_all.condition, train_all.n_conditions, basis)
    X_test = stimulus_design(test_all.condition, test_all.n_conditions, basis)
    support = X_train.T @ train_all.counts.reshape(-1, n_units).astype(float)
    units = np.flatnonzero((support > MIN_COLUMN_SPIKES).all(axis=0))
    train, test = select_units(train_all, units), select_units(test_all, units)
    y_train = train.counts.reshape(-1, len(units)).astype(float)
    y_test = test.counts.reshape(-1, len(units)).astype(float)
    n_kept = len(units)
    load_avg = os.getloadavg()

    print(f"neurorec {neurorec.__version__ if hasattr(neurorec, '__version__') else '?'}, "
          f"torch {torch.__version__}, statsmodels {statsmodels.__version__}, "
          f"numpy {np.__version__}, Python {platform.python_version()}")
    print(f"load average at start (1, 5, 15 min): {load_avg[0]:.2f}, {load_avg[1]:.2f}, "
          f"{load_avg[2]:.2f} on {os.cpu_count()} cores")
    print(f"{source}: {n_tr} training / {n_te} test trials × {n_bins} bins of 10 ms, "
          f"{train.n_conditions} conditions")
    print(f"units kept (finite MLE: every design column > {MIN_COLUMN_SPIKES} basis-weighted "
          f"training spikes): {n_kept} of {n_units}")
    print(f"threads: {args.threads} (torch.set_num_threads + threadpoolctl; nemos: CPU "
          f"affinity), neurorec device: {device}, float64; times: best and median of "
          f"{args.repeats} repeats, each a complete fit of all kept units; per unit = best / "
          f"{n_kept}")
    print(f"held-out test spikes: {int(test.counts.sum())}")
    results: dict = {
        "session": source, "n_basis": args.n_basis, "threads": args.threads, "device": device,
        "repeats": args.repeats, "n_units_total": int(n_units), "n_units_kept": n_kept,
        "unit_ids_kept": [str(u) for u in train.unit_ids],
        "n_train_trials": int(n_tr), "n_test_trials": int(n_te), "n_bins": int(n_bins),
        "n_conditions": int(train.n_conditions), "n_test_spikes": int(test.counts.sum()),
        "load_average_start": list(load_avg),
        "versions": {"torch": torch.__version__, "statsmodels": statsmodels.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
    }

    def summ(times: list[float]) -> dict:
        out = summary(times)
        out["per_unit_s"] = out["best_s"] / n_kept
        return out

    # ------------------------------------------------------------ 1. stimulus-only GLM
    spec = GLMSpec(stimulus={"n_basis": args.n_basis}, history={"enabled": False},
                   fit={"early_stopping": False}, penalty={"stimulus_l2": 0.0, "l2": 0.0})
    model, t_nr = timed(lambda: fit_neurorec(spec, train, device), args.repeats)
    s_nr = scores(test.counts, model.predict_rate(test))
    refs, t_sm = timed(lambda: fit_statsmodels(lambda i: X_train, y_train), args.repeats)
    s_sm = scores(test.counts, statsmodels_rates(refs, lambda i: X_test, test.counts.shape))
    t_nr, t_sm = summ(t_nr), summ(t_sm)
    coef_diff = max_rel_coef_diff(model.params_["beta"].reshape(n_kept, -1), refs)
    rep = model.fit_report_
    stim = {
        "n_columns_per_unit": int(X_train.shape[1]),
        "neurorec": {**t_nr, **s_nr, "solver": model.solver(), "converged": rep.converged,
                     "reason": rep.reason, "n_iter": rep.n_iter,
                     "max_abs_grad": rep.max_abs_grad},
        "statsmodels": {**t_sm, **s_sm, "all_converged": all(r.converged for r in refs),
                        "irls_iterations": [int(r.fit_history["iteration"]) for r in refs]},
        "time_ratio_statsmodels_over_neurorec": t_sm["best_s"] / t_nr["best_s"],
        "heldout_ll_diff_neurorec_minus_statsmodels":
            s_nr["heldout_ll_nats"] - s_sm["heldout_ll_nats"],
        "heldout_ll_rel_diff_neurorec_vs_statsmodels":
            rel(s_nr["heldout_ll_nats"], s_sm["heldout_ll_nats"]),
        "max_rel_coef_diff": coef_diff,
    }
    results["stimulus_only"] = stim
    print(f"\n1. Stimulus-only GLM ({train.n_conditions} conditions × {args.n_basis} raised "
          f"cosines = {X_train.shape[1]} columns per unit, {len(y_train)} training rows), "
          "early stopping off, penalty.stimulus_l2 = penalty.l2 = 0 (unpenalised MLE)")
    print(HEADER)
    print(row(f"neurorec GLM ({model.solver()}, all jointly)", t_nr, s_nr,
              f"{rep.reason}, {rep.n_iter} iterations"))
    print(row(f"statsmodels IRLS ({n_kept} × sm.GLM.fit)", t_sm, s_sm,
              f"all converged: {stim['statsmodels']['all_converged']}, IRLS iterations "
              f"{min(stim['statsmodels']['irls_iterations'])}-"
              f"{max(stim['statsmodels']['irls_iterations'])}"))
    print(f"time ratio statsmodels / neurorec (best): "
          f"{stim['time_ratio_statsmodels_over_neurorec']:.2f}")
    print(f"held-out LL neurorec - statsmodels: "
          f"{stim['heldout_ll_diff_neurorec_minus_statsmodels']:+.3e} nats "
          f"(relative {stim['heldout_ll_rel_diff_neurorec_vs_statsmodels']:.2e})")
    print(f"max relative coefficient difference: {coef_diff:.2e} "
          "(max over units of max|Δβ| / max|β_statsmodels|)")

    # ------------------------------------------------------------ 1b. nemos (+ intercept)
    # nemos always adds an intercept per unit. If the basis spans a constant, [X, 1] is
    # rank-deficient and nemos' model is the same as X's: compare with section 1's fits.
    # Otherwise the intercept is a real extra parameter: refit neurorec and statsmodels on
    # [X, 1] (the same solver the GLM uses, with the ones column as a dense column).
    lsq = np.linalg.lstsq(basis, np.ones(n_bins), rcond=None)[0]
    spans_constant = bool(np.abs(basis @ lsq - 1.0).max() < 1e-10)
    if spans_constant:
        X1_train, X1_test = X_train, X_test
        t_nr1, s_nr1, t_sm1, s_sm1, refs1 = t_nr, s_nr, t_sm, s_sm, refs
        coef1 = model.params_["beta"].reshape(n_kept, -1)
        nr1_label = f"neurorec GLM ({model.solver()}) on X"
        nr1_note = f"section 1's fit, {rep.n_iter} iterations"
        nr1_extra = {"reused": "section 1 (X spans a constant)"}
        design_note = ("X: the basis spans a constant, so nemos' intercept adds nothing "
                       "(same model, same MLE); references are section 1's fits on X")
    else:
        ones_tr, ones_te = np.ones((len(X_train), 1)), np.ones((len(X_test), 1))
        X1_train, X1_test = np.hstack([X_train, ones_tr]), np.hstack([X_test, ones_te])
        block = StimulusBlock(torch.as_tensor(train.condition), torch.as_tensor(basis),
                              train.n_conditions, 0)
        res1, t_nr1 = timed(lambda: fit_newton_design(X1_train, y_train, block, device),
                            args.repeats)
        coef1 = res1.coef.cpu().numpy()
        s_nr1 = scores(test.counts, np.exp(X1_test @ coef1.T).reshape(test.counts.shape))
        refs1, t_sm1 = timed(lambda: fit_statsmodels(lambda i: X1_train, y_train),
                             args.repeats)
        s_sm1 = scores(test.counts,
                       statsmodels_rates(refs1, lambda i: X1_test, test.counts.shape))
        t_nr1, t_sm1 = summ(t_nr1), summ(t_sm1)
        nr1_label = "neurorec Newton (fit_batched_glm)"
        nr1_note = (f"{res1.n_iter} iterations, all converged: {bool(res1.converged.all())}; "
                    "StimulusBlock + dense ones column")
        nr1_extra = {"n_iter": res1.n_iter, "all_converged": bool(res1.converged.all())}
        design_note = ("[X, 1]: the basis does not span a constant, so nemos' intercept is "
                       "an extra parameter; neurorec (fit_batched_glm) and statsmodels refit "
                       "on [X, 1]")
    icpt = {
        "design": design_note, "basis_spans_constant": spans_constant,
        "n_columns_per_unit": int(X1_train.shape[1]),
        "neurorec_newton": {**t_nr1, **s_nr1, **nr1_extra},
        "statsmodels": {**t_sm1, **s_sm1, "all_converged": all(r.converged for r in refs1),
                        "irls_iterations": [int(r.fit_history["iteration"]) for r in refs1]},
        "time_ratio_statsmodels_over_neurorec": t_sm1["best_s"] / t_nr1["best_s"],
        "heldout_ll_diff_neurorec_minus_statsmodels":
            s_nr1["heldout_ll_nats"] - s_sm1["heldout_ll_nats"],
        "heldout_ll_rel_diff_neurorec_vs_statsmodels":
            rel(s_nr1["heldout_ll_nats"], s_sm1["heldout_ll_nats"]),
        "max_rel_coef_diff": max_rel_coef_diff(coef1, refs1),
    }
    nm = None
    if args.no_nemos:
        icpt["nemos"] = {"skipped": "--no-nemos"}
    elif not peers.nemos_available(args.nemos_venv):
        icpt["nemos"] = {"skipped": "nemos venv missing or broken; run bash "
                                    "benchmarks/peers/setup.sh"}
    else:
        try:
            nm = peers.run_nemos(X_train, y_train, X_test, y_test, l2=0.0,
                                 repeats=max(args.repeats, 1), venv=args.nemos_venv,
                                 threads=args.threads)
        except (peers.NemosUnavailable, RuntimeError) as exc:
            icpt["nemos"] = {"skipped": f"nemos failed: {exc}"}
    if nm is not None:
        nemos_rates = np.exp(X_test @ np.asarray(nm["coef"]).T
                             + np.asarray(nm["intercept"])[None, :])
        s_nm = scores(test.counts, nemos_rates.reshape(test.counts.shape))
        warm = nm["t_warm_s"]
        icpt["nemos"] = {
            "t_first_s": nm["t_first_s"], "t_warm_s": warm, "best_s": min(warm),
            "median_s": statistics.median(warm), "per_unit_s": min(warm) / n_kept,
            "first_per_unit_s": nm["t_first_s"] / n_kept, **s_nm,
            "heldout_ll_nemos_script": nm["heldout_ll"], "train_ll": nm["train_ll"],
            "solver_name": nm.get("solver_name"), "solver_state": nm.get("solver_state"),
            "versions": nm.get("versions")}
        icpt["time_ratio_nemos_warm_over_neurorec"] = min(warm) / t_nr1["best_s"]
        icpt["time_ratio_nemos_first_over_neurorec"] = nm["t_first_s"] / t_nr1["best_s"]
        icpt["time_ratio_statsmodels_over_nemos_warm"] = t_sm1["best_s"] / min(warm)
        icpt["heldout_ll_diff_nemos_minus_statsmodels"] = (
            s_nm["heldout_ll_nats"] - s_sm1["heldout_ll_nats"])
        icpt["heldout_ll_rel_diff_nemos_vs_statsmodels"] = rel(s_nm["heldout_ll_nats"],
                                                               s_sm1["heldout_ll_nats"])
        icpt["train_ll_diff_nemos_minus_mle"] = nm["train_ll"] - float(
            sum(r.llf for r in refs1))
        results["versions"]["nemos"] = (nm.get("versions") or {}).get("nemos")
        results["versions"]["jax"] = (nm.get("versions") or {}).get("jax")
    stim["intercept_design"] = icpt
    print("\n1b. nemos PopulationGLM (default solver, unregularised) on X; it adds one "
          "intercept per unit. Design of the references: " + design_note)
    print(HEADER)
    print(row(nr1_label, t_nr1, s_nr1, nr1_note))
    print(row(f"statsmodels IRLS ({n_kept} × sm.GLM.fit)", t_sm1, s_sm1,
              f"all converged: {icpt['statsmodels']['all_converged']}"))
    if nm is not None:
        nmr = icpt["nemos"]
        print(row("nemos PopulationGLM, warm (default)", nmr, s_nm,
                  f"{nmr['solver_name']}, {nmr['solver_state']}; first call (JIT) "
                  f"{nmr['t_first_s']:.2f} s = {nmr['first_per_unit_s']:.4f} s/unit"))
    else:
        print(f"nemos: skipped ({icpt['nemos']['skipped']})")
    print(f"time ratio statsmodels / neurorec on this design (best): "
          f"{icpt['time_ratio_statsmodels_over_neurorec']:.2f}; held-out LL neurorec - "
          f"statsmodels {icpt['heldout_ll_diff_neurorec_minus_statsmodels']:+.3e} nats "
          f"(relative {icpt['heldout_ll_rel_diff_neurorec_vs_statsmodels']:.2e}), max relative "
          f"coefficient difference {icpt['max_rel_coef_diff']:.2e}")
    if nm is not None:
        print(f"time ratio nemos warm / neurorec per unit (best): "
              f"{icpt['time_ratio_nemos_warm_over_neurorec']:.2f}; nemos first (JIT) / "
              f"neurorec: {icpt['time_ratio_nemos_first_over_neurorec']:.2f}")
        print(f"held-out LL nemos - statsmodels: "
              f"{icpt['heldout_ll_diff_nemos_minus_statsmodels']:+.3e} nats (relative "
              f"{icpt['heldout_ll_rel_diff_nemos_vs_statsmodels']:.2e}); training LL nemos - "
              f"MLE: {icpt['train_ll_diff_nemos_minus_mle']:+.3e} nats")

    # ------------------------------------------------------------ Hessian pass vs GEMM peak
    gemm_peak = peak(args.threads, device)
    results["fp64_gemm_peak_flop_per_s"] = gemm_peak
    prob = model.newton_design(train)
    c_stim = torch.as_tensor(model.predict_rate(train).reshape(-1, n_kept).T.copy())
    h_stim = hessian_pass(prob["X"], prob["unit_X"], prob["block"], c_stim, args.repeats,
                          device, gemm_peak)
    results["hessian_pass"] = {"stimulus_only": h_stim}
    print()
    print_hessian("stimulus-only (block only, no dense columns)", h_stim)

    if not args.no_full:
        full_results(args, results, device, train, test, X_train, X_test, y_train, n_kept,
                     summ, gemm_peak)
    if args.scaling:
        results["scaling"] = scaling(args, train, device, n_kept)
    return finish(args, results)


def full_results(args, results, device, train, test, X_train, X_test, y_train, n_kept,
                 summ, gemm_peak) -> None:
    # ------------------------------------------------------------ 2. full GLM
    full_es = GLMSpec(stimulus={"n_basis": args.n_basis}, coupling={"enabled": True})
    full_mle = GLMSpec(stimulus={"n_basis": args.n_basis}, coupling={"enabled": True},
                       fit={"early_stopping": False}, penalty={"stimulus_l2": 0.0, "l2": 0.0})
    m_es, t_es = timed(lambda: fit_neurorec(full_es, train, device), args.repeats)
    m_mle, t_mle = timed(lambda: fit_neurorec(full_mle, train, device), args.repeats)
    s_es = scores(test.counts, m_es.predict_rate(test))
    s_mle = scores(test.counts, m_mle.predict_rate(test))
    t_es, t_mle = summ(t_es), summ(t_mle)
    h_spec, c_spec = full_mle.history, full_mle.coupling
    full = {
        "history": {"n_basis": h_spec.n_basis, "duration_s": h_spec.duration},
        "coupling": {"n_basis": c_spec.n_basis, "duration_s": c_spec.duration},
        "neurorec_early_stopping": {**t_es, **s_es, "solver": m_es.solver(),
                                    "reason": m_es.fit_report_.reason,
                                    "n_iter": m_es.fit_report_.n_iter,
                                    "note": "default spec; with fit.solver auto → newton, "
                                            "early stopping does not apply"},
        "neurorec_mle": {**t_mle, **s_mle, "solver": m_mle.solver(),
                         "converged": m_mle.fit_report_.converged,
                         "reason": m_mle.fit_report_.reason, "n_iter": m_mle.fit_report_.n_iter,
                         "max_abs_grad": m_mle.fit_report_.max_abs_grad},
    }
    n_cols = X_train.shape[1] + h_spec.n_basis + (n_kept - 1) * c_spec.n_basis
    print(f"\n2. Full GLM: stimulus + history ({h_spec.n_basis} log cosines, "
          f"{h_spec.duration * 1e3:.0f} ms) + coupling ({c_spec.n_basis} log cosines, "
          f"{c_spec.duration * 1e3:.0f} ms) among the {n_kept} kept units = {n_cols} columns "
          "per unit")
    if not args.no_full_statsmodels:
        start = time.perf_counter()
        hb, cb = m_mle.history_basis(train.bin_size), m_mle.coupling_basis(train.bin_size)
        H_tr, C_tr = lag_features(train.counts, hb), lag_features(train.counts, cb)
        H_te, C_te = lag_features(test.counts, hb), lag_features(test.counts, cb)
        design_time = time.perf_counter() - start

        def train_design(i: int) -> np.ndarray:
            return full_design(X_train, H_tr, C_tr, i)

        def test_design(i: int) -> np.ndarray:
            return full_design(X_test, H_te, C_te, i)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # perfect-separation / overflow chatter, if any
            refs_f, t_smf = timed(lambda: fit_statsmodels(train_design, y_train), args.repeats)
        s_smf = scores(test.counts, statsmodels_rates(refs_f, test_design, test.counts.shape))
        t_smf = summ(t_smf)
        ours = np.concatenate([
            m_mle.params_["beta"].reshape(n_kept, -1), m_mle.params_["h"],
            np.stack([np.delete(m_mle.params_["J"][i], i, axis=0).reshape(-1)
                      for i in range(n_kept)])], axis=1)
        full["statsmodels"] = {
            **t_smf, **s_smf, "feature_time_s": design_time,
            "all_converged": all(r.converged for r in refs_f),
            "irls_iterations": [int(r.fit_history["iteration"]) for r in refs_f]}
        full["time_ratio_statsmodels_over_neurorec_mle"] = t_smf["best_s"] / t_mle["best_s"]
        full["time_ratio_statsmodels_over_neurorec_early_stopping"] = (
            t_smf["best_s"] / t_es["best_s"])
        full["heldout_ll_diff_neurorec_mle_minus_statsmodels"] = (
            s_mle["heldout_ll_nats"] - s_smf["heldout_ll_nats"])
        full["heldout_ll_rel_diff_neurorec_mle_vs_statsmodels"] = rel(
            s_mle["heldout_ll_nats"], s_smf["heldout_ll_nats"])
        full["max_rel_coef_diff_mle"] = max_rel_coef_diff(ours, refs_f)
    results["full"] = full
    print(HEADER)
    print(row("neurorec, default spec", t_es, s_es,
              f"{m_es.fit_report_.reason}, {m_es.fit_report_.n_iter} it. (stimulus_l2 1e-6; "
              "newton: no early stopping)"))
    print(row("neurorec MLE (no penalty)", t_mle, s_mle,
              f"{m_mle.fit_report_.reason}, {m_mle.fit_report_.n_iter} iterations"))
    if "statsmodels" in full:
        sf = full["statsmodels"]
        print(row(f"statsmodels IRLS ({n_kept} × sm.GLM.fit)", t_smf, s_smf,
                  f"all converged: {sf['all_converged']}, IRLS iterations "
                  f"{min(sf['irls_iterations'])}-{max(sf['irls_iterations'])}; + "
                  f"{design_time:.2f} s to build lag features (not in the time)"))
        print(f"time ratio statsmodels / neurorec MLE (best): "
              f"{full['time_ratio_statsmodels_over_neurorec_mle']:.2f}; "
              f"statsmodels / neurorec default spec: "
              f"{full['time_ratio_statsmodels_over_neurorec_early_stopping']:.2f}")
        print(f"held-out LL neurorec MLE - statsmodels: "
              f"{full['heldout_ll_diff_neurorec_mle_minus_statsmodels']:+.3e} nats (relative "
              f"{full['heldout_ll_rel_diff_neurorec_mle_vs_statsmodels']:.2e})")
        print(f"max relative coefficient difference (MLE): {full['max_rel_coef_diff_mle']:.2e}")
    print(f"held-out LL neurorec default spec - neurorec MLE: "
          f"{s_es['heldout_ll_nats'] - s_mle['heldout_ll_nats']:+.3e} nats")
    prob = m_mle.newton_design(train)
    c_full = torch.as_tensor(m_mle.predict_rate(train).reshape(-1, n_kept).T.copy())
    h_full = hessian_pass(prob["X"], prob["unit_X"], prob["block"], c_full, args.repeats,
                          device, gemm_peak)
    results["hessian_pass"]["full"] = h_full
    print_hessian("full GLM (block + dense coupling + per-unit history)", h_full)


def scaling(args, train: BinnedTrials, device: str, n_kept: int) -> dict:
    """Section 3: neurorec's fit time vs units, rows and columns, one axis at a time."""
    reps = args.repeats
    n_trials = train.counts.shape[0]
    units_axis = sorted({u for u in (2, 4, 8) if u < n_kept} | {n_kept})
    row_axis = [4, 2, 1]  # every m-th training trial
    basis_axis = sorted({3, 6, 12, args.n_basis})
    cache: dict = {}

    def spec_for(kind: str, n_basis: int) -> GLMSpec:
        extra = ({"history": {"enabled": False}} if kind == "stimulus-only" else
                 {"coupling": {"enabled": True}})
        return GLMSpec(stimulus={"n_basis": n_basis}, fit={"early_stopping": False}, **extra)

    def point(kind: str, n_units: int, every: int, n_basis: int) -> dict:
        key = (kind, n_units, every, n_basis)
        if key not in cache:
            data = select_units(train, np.arange(n_units))
            if every > 1:
                data = data.subset(np.arange(n_trials) % every == 0)
            spec = spec_for(kind, n_basis)
            m, times = timed(lambda: fit_neurorec(spec, data, device), reps)
            it = m.fit_report_.n_iter
            cache[key] = {"n_units": n_units, "n_rows": int(np.prod(data.counts.shape[:2])),
                          "n_basis": n_basis, "best_s": min(times), "all_s": times,
                          "n_iter": it, "s_per_iter": min(times) / max(it, 1),
                          "converged": m.fit_report_.converged}
        return cache[key]

    out: dict = {"setup": "default penalties (stimulus_l2 1e-6), early stopping off; best of "
                          f"{reps}; rows: every 4th / 2nd / every training trial"}
    print(f"\n3. Scaling: neurorec fit (batched Newton) time, best of {reps}, vs units / rows / "
          "columns, one axis at a time from all kept units × all training rows × "
          f"n_basis {args.n_basis}; default penalties, early stopping off; size of 'columns' "
          "= stimulus columns C·K (the full GLM adds its history and coupling columns)")
    print(f"{'model':<14} {'axis':<8} {'size':>7} {'units':>5} {'rows':>7} {'K':>3} "
          f"{'fit (s)':>9} {'iters':>5} {'s/iter':>9}")
    for kind in ("stimulus-only", "full"):
        out[kind] = {}
        for axis, values in (("units", units_axis), ("rows", row_axis),
                             ("columns", basis_axis)):
            pts = []
            for v in values:
                if axis == "units":
                    pt = point(kind, v, 1, args.n_basis)
                elif axis == "rows":
                    pt = point(kind, n_kept, v, args.n_basis)
                else:
                    pt = point(kind, n_kept, 1, v)
                size = {"units": pt["n_units"], "rows": pt["n_rows"],
                        "columns": pt["n_basis"] * train.n_conditions}[axis]
                pts.append({**pt, "size": size})
                print(f"{kind:<14} {axis:<8} {size:>7} {pt['n_units']:>5} {pt['n_rows']:>7} "
                      f"{pt['n_basis']:>3} {pt['best_s']:>9.3f} {pt['n_iter']:>5} "
                      f"{pt['s_per_iter']:>9.4f}")
            sizes = [p["size"] for p in pts]
            e_fit = exponent(sizes, [p["best_s"] for p in pts])
            e_it = exponent(sizes, [p["s_per_iter"] for p in pts])
            out[kind][axis] = {"points": pts, "exponent_fit_time": e_fit,
                               "exponent_time_per_iteration": e_it}
            print(f"  {kind} fit exponent vs {axis}: {e_fit:.2f} (per Newton iteration "
                  f"{e_it:.2f})")
    return out


def finish(args: argparse.Namespace, results: dict) -> dict:
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
