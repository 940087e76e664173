"""Fit time per rung of the R-GLM ladder vs statsmodels, as ratios measured in one run.

Every rung's spec comes from ``models/ladder/`` with the penalty and early stopping switched
off, so that neurorec and statsmodels estimate the same maximum-likelihood model on the same
design; statsmodels fits one ``sm.GLM`` (IRLS) per unit on a design built by hand:

1. independent    stimulus columns (condition ⊗ raised cosines)
2. correlated     + same-bin counts of the units before it in neurorec's unit order
3. glm            stimulus + own history + coupling features of the other units
4. glm_corr       3 + same-bin counts of earlier units
5. rglm_corr      no peer (the latent state is not a GLM design): timed as specified in
                  its YAML (penalty and early stopping on); the ratio is to rung 4's fit.

A correlated model's likelihood factorises over units given the earlier units' same-bin
counts, so each unit is an ordinary Poisson GLM: the peer is exact, not an approximation.
Prints per rung: times, ``statsmodels / neurorec`` time ratio, held-out LL difference.

Usage::

    python benchmarks/rglm_fit.py [--session 12] [--n-basis 6] [--threads 2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from glm_fit import (
    MIN_COLUMN_SPIKES,
    fit_statsmodels,
    lag_features,
    scores,
    select_units,
    statsmodels_rates,
    stimulus_design,
)

from neurorec.core.bases import raised_cosine_linear
from neurorec.data import bin_trials
from neurorec.datasets import load
from neurorec.families import model_for
from neurorec.spec import load_model_spec

LADDER = Path(__file__).resolve().parents[1] / "models" / "ladder"
RUNGS = ("1_independent", "2_correlated", "3_glm", "4_glm_corr", "5_rglm_corr")


def unit_design(i: int, X_stim: np.ndarray, y: np.ndarray, order: np.ndarray,
                hist: np.ndarray | None, coup: np.ndarray | None, correlated: bool) -> np.ndarray:
    """Unit ``i``'s columns: stimulus | own history | others' coupling | earlier same-bin."""
    cols = [X_stim]
    if hist is not None:
        cols.append(hist[:, i])
    if coup is not None:
        cols.append(np.delete(coup, i, axis=1).reshape(len(coup), -1))
    if correlated:
        before = order[: int(np.flatnonzero(order == i)[0])]
        cols.append(y[:, before])
    return np.hstack(cols)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--session", type=int, default=12, help="bundled v1_gratings session")
    ap.add_argument("--n-basis", type=int, default=6, help="stimulus raised cosines")
    ap.add_argument("--threads", type=int, default=2, help="torch and BLAS threads")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    ap.add_argument("--quick", action="store_true", help="4 basis functions, rungs 1-4 only")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_basis = 4
    torch.set_num_threads(args.threads)
    with threadpool_limits(args.threads):
        return run(args)


def run(args: argparse.Namespace) -> dict:
    source = f"v1_gratings:{args.session}"
    data = bin_trials(load(source), 0.01, seed=0)
    train_all, test_all = data.subset(~data.is_test), data.subset(data.is_test)
    n_bins = train_all.counts.shape[1]
    basis = raised_cosine_linear(n_bins, args.n_basis)
    X_tr = stimulus_design(train_all.condition, train_all.n_conditions, basis)
    X_te = stimulus_design(test_all.condition, test_all.n_conditions, basis)
    support = X_tr.T @ train_all.counts.reshape(-1, train_all.counts.shape[2]).astype(float)
    units = np.flatnonzero((support > MIN_COLUMN_SPIKES).all(axis=0))
    train, test = select_units(train_all, units), select_units(test_all, units)
    y_tr = train.counts.reshape(-1, len(units)).astype(float)
    y_te = test.counts.reshape(-1, len(units)).astype(float)
    print(f"{source}: {len(units)} units with a finite MLE, {train.counts.shape[0]} training / "
          f"{test.counts.shape[0]} test trials × {n_bins} bins; threads {args.threads}; "
          f"stimulus basis {args.n_basis} per condition")
    print(f"{'rung':<14}{'neurorec (s)':>13}{'statsmodels (s)':>16}{'ratio sm/nr':>12}"
          f"{'ΔLL nr-sm (nats)':>18}{'bits/spike':>11}")
    results: dict = {"session": source, "n_units": len(units), "rungs": {}}
    times: dict[str, float] = {}
    for rung in RUNGS[:4] if args.quick else RUNGS:
        peer = rung != "5_rglm_corr"
        overrides = [f"stimulus.n_basis={args.n_basis}"]
        if peer:
            overrides += ["penalty.l2=0", "fit.early_stopping=false"]
        spec = load_model_spec(LADDER / f"{rung}.yaml", overrides)
        start = time.perf_counter()
        model = model_for(spec, seed=0).fit(train, progress=False)
        t_nr = time.perf_counter() - start
        times[rung] = t_nr
        s_nr = scores(test.counts, model.predict_rate(test))
        entry = {"neurorec_s": t_nr, **{f"neurorec_{k}": v for k, v in s_nr.items()}}
        if peer:
            hist = coup = hist_te = coup_te = None
            if spec.history.enabled:
                hb = model.history_basis(train.bin_size)
                hist, hist_te = lag_features(train.counts, hb), lag_features(test.counts, hb)
            if spec.coupling.enabled:
                cb = model.coupling_basis(train.bin_size)
                coup, coup_te = lag_features(train.counts, cb), lag_features(test.counts, cb)
            order, corr = model.unit_order_, spec.correlated.enabled

            def design_tr(i, hist=hist, coup=coup, order=order, corr=corr):
                return unit_design(i, X_tr, y_tr, order, hist, coup, corr)

            def design_te(i, hist=hist_te, coup=coup_te, order=order, corr=corr):
                return unit_design(i, X_te, y_te, order, hist, coup, corr)

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                start = time.perf_counter()
                refs = fit_statsmodels(design_tr, y_tr)
                t_sm = time.perf_counter() - start
            s_sm = scores(test.counts, statsmodels_rates(refs, design_te, test.counts.shape))
            entry.update(statsmodels_s=t_sm, ratio=t_sm / t_nr,
                         ll_diff=s_nr["heldout_ll_nats"] - s_sm["heldout_ll_nats"])
            print(f"{rung:<14}{t_nr:>13.2f}{t_sm:>16.2f}{t_sm / t_nr:>12.2f}"
                  f"{entry['ll_diff']:>+18.2e}{s_nr['heldout_bits_per_spike']:>11.4f}")
        else:
            entry["ratio_to_glm_corr_fit"] = t_nr / times["4_glm_corr"]
            print(f"{rung:<14}{t_nr:>13.2f}{'(no peer)':>16}{'':>12}{'':>18}"
                  f"{s_nr['heldout_bits_per_spike']:>11.4f}  "
                  f"{entry['ratio_to_glm_corr_fit']:.1f}× the glm_corr fit")
        results["rungs"][rung] = entry
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
