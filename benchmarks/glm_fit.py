"""Fit time and held-out log-likelihood of neurorec's GLM vs statsmodels' per-neuron IRLS.

Both fit the same V1 session with the same design in one process and under the same thread
limits; the script prints a table and the ratios ``statsmodels time / neurorec time`` and
``held-out LL(neurorec) - LL(statsmodels)``.

Sections:

1. Stimulus-only GLM (history and coupling off, early stopping off): per-condition raised
   cosines, the design statsmodels can fit as per-neuron Poisson regression. Both estimate the
   same MLE, so coefficients and held-out LL must agree.
2. Full GLM (stimulus + spike history + coupling). neurorec as used by default (early stopping
   on) and as a plain MLE (early stopping off); statsmodels fits the MLE per unit on the same
   design built by hand (stimulus columns, the unit's own history features, the other units'
   coupling features). Skipped with ``--no-full-statsmodels``.

Units are restricted to those whose MLE is finite in the stimulus-only design: every column
(condition × basis function) carries > 5 basis-weighted training spikes.

Usage::

    python benchmarks/glm_fit.py [--session 3] [--n-basis 6] [--threads 2] [--device cpu]
                                 [--repeats 3] [--no-full] [--json PATH] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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
from neurorec.workflows.pipeline import resolve_device

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


# ------------------------------------------------------------------------------------ report
def row(name: str, t: dict, s: dict, note: str = "") -> str:
    return (f"{name:<34} {t['best_s']:>9.3f} {t['median_s']:>9.3f} "
            f"{s['heldout_ll_nats']:>16.2f} {s['heldout_bits_per_spike']:>10.5f}  {note}")


HEADER = (f"{'method':<34} {'best (s)':>9} {'median':>9} {'held-out LL':>16} "
          f"{'bits/spike':>10}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--session", type=int, default=3, help="bundled v1_gratings session")
    ap.add_argument("--n-basis", type=int, default=6, help="stimulus raised cosines per condition")
    ap.add_argument("--threads", type=int, default=2, help="torch and BLAS threads")
    ap.add_argument("--device", default="cpu", help="neurorec device: cpu or cuda")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats of each fit")
    ap.add_argument("--no-full", action="store_true", help="skip section 2 (full GLM)")
    ap.add_argument("--no-full-statsmodels", action="store_true",
                    help="skip statsmodels on the full (history + coupling) design")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    ap.add_argument("--quick", action="store_true",
                    help="section 1 only, session 14, 3 basis functions, 1 repeat")
    args = ap.parse_args(argv)
    if args.quick:  # benchmarks/run_all.py --quick: the ratio on a small session
        args.session, args.n_basis, args.repeats, args.no_full = 14, 3, 1, True
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
    n_kept = len(units)

    print(f"neurorec {neurorec.__version__ if hasattr(neurorec, '__version__') else '?'}, "
          f"torch {torch.__version__}, statsmodels {statsmodels.__version__}, "
          f"numpy {np.__version__}, Python {platform.python_version()}")
    print(f"{source}: {n_tr} training / {n_te} test trials × {n_bins} bins of 10 ms, "
          f"{train.n_conditions} conditions")
    print(f"units kept (finite MLE: every design column > {MIN_COLUMN_SPIKES} basis-weighted "
          f"training spikes): {n_kept} of {n_units}")
    print(f"threads: {args.threads} (torch.set_num_threads + threadpoolctl), "
          f"neurorec device: {device}, float64; times: best and median of {args.repeats} "
          "repeats, each a complete fit of all kept units")
    print(f"held-out test spikes: {int(test.counts.sum())}")
    results: dict = {
        "session": source, "n_basis": args.n_basis, "threads": args.threads, "device": device,
        "repeats": args.repeats, "n_units_total": int(n_units), "n_units_kept": n_kept,
        "unit_ids_kept": [str(u) for u in train.unit_ids],
        "n_train_trials": int(n_tr), "n_test_trials": int(n_te), "n_bins": int(n_bins),
        "n_conditions": int(train.n_conditions), "n_test_spikes": int(test.counts.sum()),
        "versions": {"torch": torch.__version__, "statsmodels": statsmodels.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
    }

    # ------------------------------------------------------------ 1. stimulus-only GLM
    spec = GLMSpec(stimulus={"n_basis": args.n_basis}, history={"enabled": False},
                   fit={"early_stopping": False})
    model, t_nr = timed(lambda: fit_neurorec(spec, train, device), args.repeats)
    s_nr = scores(test.counts, model.predict_rate(test))
    refs, t_sm = timed(lambda: fit_statsmodels(lambda i: X_train, y_train), args.repeats)
    s_sm = scores(test.counts, statsmodels_rates(refs, lambda i: X_test, test.counts.shape))
    t_nr, t_sm = summary(t_nr), summary(t_sm)
    coef_diff = max_rel_coef_diff(model.params_["beta"].reshape(n_kept, -1), refs)
    rep = model.fit_report_
    stim = {
        "n_columns_per_unit": int(X_train.shape[1]),
        "neurorec": {**t_nr, **s_nr, "converged": rep.converged, "reason": rep.reason,
                     "n_iter": rep.n_iter, "max_abs_grad": rep.max_abs_grad},
        "statsmodels": {**t_sm, **s_sm, "all_converged": all(r.converged for r in refs),
                        "irls_iterations": [int(r.fit_history["iteration"]) for r in refs]},
        "time_ratio_statsmodels_over_neurorec": t_sm["best_s"] / t_nr["best_s"],
        "heldout_ll_diff_neurorec_minus_statsmodels":
            s_nr["heldout_ll_nats"] - s_sm["heldout_ll_nats"],
        "max_rel_coef_diff": coef_diff,
    }
    results["stimulus_only"] = stim
    print(f"\n1. Stimulus-only GLM ({train.n_conditions} conditions × {args.n_basis} raised "
          f"cosines = {X_train.shape[1]} columns per unit, {len(y_train)} training rows), "
          "early stopping off")
    print(HEADER)
    print(row("neurorec (L-BFGS + Newton-CG)", t_nr, s_nr, rep.reason))
    print(row(f"statsmodels IRLS ({n_kept} × sm.GLM.fit)", t_sm, s_sm,
              f"all converged: {stim['statsmodels']['all_converged']}"))
    print(f"time ratio statsmodels / neurorec (best): "
          f"{stim['time_ratio_statsmodels_over_neurorec']:.2f}")
    print(f"held-out LL neurorec - statsmodels: "
          f"{stim['heldout_ll_diff_neurorec_minus_statsmodels']:+.3e} nats")
    print(f"max relative coefficient difference: {coef_diff:.2e} "
          "(max over units of max|Δβ| / max|β_statsmodels|)")

    if args.no_full:
        return finish(args, results)

    # ------------------------------------------------------------ 2. full GLM
    full_es = GLMSpec(stimulus={"n_basis": args.n_basis}, coupling={"enabled": True})
    full_mle = GLMSpec(stimulus={"n_basis": args.n_basis}, coupling={"enabled": True},
                       fit={"early_stopping": False})
    m_es, t_es = timed(lambda: fit_neurorec(full_es, train, device), args.repeats)
    m_mle, t_mle = timed(lambda: fit_neurorec(full_mle, train, device), args.repeats)
    s_es = scores(test.counts, m_es.predict_rate(test))
    s_mle = scores(test.counts, m_mle.predict_rate(test))
    t_es, t_mle = summary(t_es), summary(t_mle)
    h_spec, c_spec = full_mle.history, full_mle.coupling
    full = {
        "history": {"n_basis": h_spec.n_basis, "duration_s": h_spec.duration},
        "coupling": {"n_basis": c_spec.n_basis, "duration_s": c_spec.duration},
        "neurorec_early_stopping": {**t_es, **s_es, "reason": m_es.fit_report_.reason,
                                    "n_iter": m_es.fit_report_.n_iter},
        "neurorec_mle": {**t_mle, **s_mle, "converged": m_mle.fit_report_.converged,
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
        t_smf = summary(t_smf)
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
        full["max_rel_coef_diff_mle"] = max_rel_coef_diff(ours, refs_f)
    results["full"] = full
    print(HEADER)
    print(row("neurorec, early stopping", t_es, s_es, m_es.fit_report_.reason))
    print(row("neurorec MLE (early stopping off)", t_mle, s_mle, m_mle.fit_report_.reason))
    if "statsmodels" in full:
        sf = full["statsmodels"]
        print(row(f"statsmodels IRLS ({n_kept} × sm.GLM.fit)", t_smf, s_smf,
                  f"all converged: {sf['all_converged']}; + {design_time:.2f} s to build "
                  "lag features (not in the time)"))
        print(f"time ratio statsmodels / neurorec MLE (best): "
              f"{full['time_ratio_statsmodels_over_neurorec_mle']:.2f}; "
              f"statsmodels / neurorec early stopping: "
              f"{full['time_ratio_statsmodels_over_neurorec_early_stopping']:.2f}")
        print(f"held-out LL neurorec MLE - statsmodels: "
              f"{full['heldout_ll_diff_neurorec_mle_minus_statsmodels']:+.3e} nats")
        print(f"max relative coefficient difference (MLE): {full['max_rel_coef_diff_mle']:.2e}")
    print(f"held-out LL neurorec early stopping - neurorec MLE: "
          f"{s_es['heldout_ll_nats'] - s_mle['heldout_ll_nats']:+.2f} nats")

    return finish(args, results)


def finish(args: argparse.Namespace, results: dict) -> dict:
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
