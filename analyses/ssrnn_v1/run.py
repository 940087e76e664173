"""Spike-and-slab RNN on natural movies, probed like V1 (Pachitariu & Sahani 2012).

    python analyses/ssrnn_v1/run.py --out analyses/ssrnn_v1/full_run [--quick] [--seed 0]
        [--model-set k=v ...] [--movie-set k=v ...] [--no-compact-filters] [--overwrite]

Runs the study through the commands a user would run:

1. ``neurorec train models/ssrnn_movies.yaml --stimulus stimuli/natural_movie_12px.yaml
   --out OUT/fit`` (greedy filtering + STDP-like learning of R);
2. ``neurorec probe OUT/fit --protocol stimuli/ssrnn_direction_probe.yaml --out OUT/probe``:
   drifting gratings without aliasing (temporal frequency <= 7.5 Hz, 4 start phases, whole
   cycles) at the contrast matched to the movie's whitened energy, plus a contrast sweep, with
   the controls R = 0, shuffled R and the untrained network;
3. ``neurorec connectomics OUT/fit --tuning OUT/probe/tuning.csv --out OUT/connectomics``.

Then V1 DI computed the same way (27 bundled sessions, units with contamination < 0.05; with
and without baseline subtraction), small drifting Gabors for polar plots, and the
compact-filter view (a 12x12x30 drifting-Gabor bank as ``R^tau W0``). Writes ``metrics.json``
(``di_median``, ``di_frac_above_0_5``, ``di_median_r_zero``, ``di_median_r_shuffled``,
``di_median_untrained``, ``n_ds_units``, ... over responsive units at the matched contrast),
``tuning.csv``, ``predictions.csv``, ``di_v1.csv``, ``RESULTS.md``, ``report.html`` and the
figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from neurorec.analysis import compact_filters as cf
from neurorec.analysis.tuning import direction_index, v1_direction_responses, vector_selectivity
from neurorec.core.errors import NeurorecError
from neurorec.datasets.v1_gratings import N_SESSIONS
from neurorec.families.ssrnn.model import SpikeSlabRNN
from neurorec.report import html
from neurorec.spec import dump_spec, load_model_spec, load_stimulus_spec
from neurorec.stimuli.gabors import conditions as gabor_conditions
from neurorec.stimuli.gabors import gabor
from neurorec.stimuli.movies import Whitener
from neurorec.stimuli.timing import n_frames
from neurorec.workflows import study
from neurorec.workflows.probe import WHITENER_FILE, load_protocol

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "ssrnn_movies.yaml"
MOVIE = ROOT / "stimuli" / "natural_movie_12px.yaml"
PROBE = ROOT / "stimuli" / "ssrnn_direction_probe.yaml"
GABORS = ROOT / "stimuli" / "drifting_gabors_polar.yaml"
SETTLE_FRAMES = 5  # Gabor polar plots: mean over frames after the state has settled
QUICK = {"model": ["learning.n_iterations=60"], "movie": ["n_clips=200"]}


def command(argv: list[str]) -> None:
    """Run a ``neurorec`` command in this process; its user errors stop the study."""
    from neurorec.cli import main as cli_main

    rc = cli_main(argv)
    if rc != 0:
        raise NeurorecError(f"neurorec {argv[0]}: exit code {rc} (see above)")


def check_fit(fit_dir: Path, mspec, vspec) -> None:
    """``--fit`` must hold a model of this spec trained on this movie."""
    for name, spec in (("spec.yaml", mspec), ("stimulus.yaml", vspec)):
        path = Path(fit_dir) / name
        if not path.is_file():
            raise NeurorecError(f"{fit_dir}: {name}: not found (not a `neurorec train "
                                "--stimulus` output directory)")
        if path.read_text() != dump_spec(spec):
            raise NeurorecError(f"{path}: differs from the study's {spec.kind} spec (with "
                                "the --model-set / --movie-set given)")


def load_fit(fit_dir: Path) -> tuple[SpikeSlabRNN, Whitener]:
    model = SpikeSlabRNN.load(fit_dir)
    with np.load(fit_dir / WHITENER_FILE) as f:
        w = Whitener(f["mean"], f["matrix"], np.zeros(len(f["mean"])), float(f["eps"]))
    return model, w


def gabor_responses(model, whitener, spec) -> tuple[np.ndarray, list[dict]]:
    conds = gabor_conditions(spec)
    t = np.arange(n_frames(spec.timing.duration, spec.timing.frame_rate)) / spec.timing.frame_rate
    frames = np.stack([gabor(c["direction"], c["speed"], c["spatial_frequency"],
                             (c["x"], c["y"]), spec.sigma, t, spec.size_px,
                             spec.degrees_per_px, c["contrast"]) for c in conds])
    z, _ = model.infer(whitener.apply(frames), batch_size=256)
    return np.maximum(z[:, SETTLE_FRAMES:], 0.0).mean(axis=1), conds


def v1_di() -> list[dict]:
    """DI of every bundled V1 unit (contamination < 0.05), from the mean spike count 0-500 ms
    after onset, as is and with the spontaneous count subtracted (``di_baseline``)."""
    rows = []
    for s in range(N_SESSIONS):
        resp, dirs = v1_direction_responses(s, max_contamination=0.05)
        sub, _ = v1_direction_responses(s, max_contamination=0.05, subtract_baseline=True)
        di, pref = direction_index(resp, dirs)
        di_b, _ = direction_index(sub, dirs)
        dsi, _ = vector_selectivity(resp, dirs, 1)
        osi, _ = vector_selectivity(resp, dirs, 2)
        rows += [{"session": s, "unit": u, "di": di[u], "di_baseline": di_b[u],
                  "preferred_direction": pref[u], "dsi": dsi[u], "osi": osi[u],
                  "r_pref": resp[u].max()} for u in range(len(resp))]
    return rows


def summary(x: np.ndarray) -> dict:
    x = x[np.isfinite(x)]
    q = np.quantile(x, [0.25, 0.5, 0.75]) if len(x) else [np.nan] * 3
    return {"n": len(x), "mean": float(np.mean(x)) if len(x) else np.nan,
            "q25": float(q[0]), "median": float(q[1]), "q75": float(q[2]),
            "frac_di_gt_0.5": float(np.mean(x > 0.5)) if len(x) else np.nan}


def compact_filter_study(quick: bool) -> tuple[list[dict], dict]:
    rows, info = [], {}
    for bank, rigid in (("quadrature", False), ("rigid", True)):
        r, i = _compact_filters(quick, rigid)
        rows += [{"bank": bank, **x} for x in r]
        info[bank] = i
    return rows, info


def _compact_filters(quick: bool, rigid: bool) -> tuple[list[dict], dict]:
    F, _ = cf.drifting_gabor_bank(patch_px=12, n_lags=30, rigid=rigid)
    steps = 100 if quick else 200
    t0 = time.perf_counter()
    dense = cf.fit_compact_filters(F, n_steps=steps)
    mask = cf.prune_mask(dense.R, 0.05)
    sparse = cf.fit_compact_filters(F, mask=mask, n_steps=steps, init=(dense.R * mask, dense.W0))
    fit_s = time.perf_counter() - t0
    K, T, D = F.shape
    flops = cf.flops_per_frame(K, D, T, float(mask.mean()))
    times = cf.time_per_frame(F, dense.R, dense.W0, sparse.R, batch=64, n_frames=200)
    times1 = cf.time_per_frame(F, dense.R, dense.W0, sparse.R, batch=1, n_frames=200)
    err = {"feed_forward": 0.0, "recurrent_dense": dense.error,
           "recurrent_sparse": sparse.error}
    rows = [{"implementation": k, "relative_error": err[k], "flops_per_frame": flops[k],
             "us_per_frame_batch64": 1e6 * times[k], "us_per_frame_batch1": 1e6 * times1[k]}
            for k in flops]
    info = {"n_filters": K, "n_lags": T, "n_pixels": D, "density": float(mask.mean()),
            "fit_s": fit_s, "dense_losses": dense.losses.tolist()[-1],
            "sparse_losses": sparse.losses.tolist()[-1]}
    return rows, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    study.add_common_args(parser, "out", "seed")
    parser.add_argument("--quick", action="store_true",
                        help="reduced run: 200 clips, 60 iterations, shorter filter fits")
    parser.add_argument("--model-set", action="append", default=[], metavar="K=V")
    parser.add_argument("--movie-set", action="append", default=[], metavar="K=V")
    parser.add_argument("--no-compact-filters", action="store_true",
                        help="skip the compact-filter timing study")
    parser.add_argument("--fit", type=Path, default=None, metavar="DIR",
                        help="reuse this `neurorec train --stimulus` output (of the same "
                        "model and movie) instead of training again; it is copied to OUT/fit")
    study.add_common_args(parser, "device", "quiet", "overwrite",
                          choices={"device": ["cpu", "cuda"]})
    args = parser.parse_args()
    study.apply_thread_policy(1)
    extra = QUICK if args.quick else {"model": [], "movie": []}
    model_sets = extra["model"] + args.model_set
    mspec = load_model_spec(MODEL, model_sets)  # every input checked before any training
    vspec = load_stimulus_spec(MOVIE, extra["movie"] + args.movie_set)
    load_protocol(PROBE)
    bspec = load_stimulus_spec(GABORS)
    study.refuse_existing(args.out, args.overwrite)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()

    with study.output_dir(args) as tmp, tempfile.TemporaryDirectory() as scratch:
        movie_yaml = Path(scratch) / "movie.yaml"  # the movie with --movie-set applied
        movie_yaml.write_text(dump_spec(vspec))
        quiet = ["--quiet"] if args.quiet else []
        t0 = time.perf_counter()
        if args.fit is not None:
            check_fit(args.fit, mspec, vspec)
            shutil.copytree(args.fit, tmp / "fit")
        else:
            command(["train", str(MODEL), "--stimulus", str(movie_yaml), "--out",
                     str(tmp / "fit"), "--seed", str(args.seed), "--device", args.device,
                     *quiet, *[a for kv in model_sets for a in ("--set", kv)]])
        timings["train_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        command(["probe", str(tmp / "fit"), "--protocol", str(PROBE), "--out",
                 str(tmp / "probe"), "--seed", str(args.seed)])
        timings["probe_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        command(["connectomics", str(tmp / "fit"), "--tuning", str(tmp / "probe" / "tuning.csv"),
                 "--out", str(tmp / "connectomics"), "--seed", str(args.seed)])
        timings["connectomics_s"] = time.perf_counter() - t0

        model, whitener = load_fit(tmp / "fit")
        tun = pd.read_csv(tmp / "probe" / "tuning.csv")
        pm = json.loads((tmp / "probe" / "metrics.json").read_text())
        preds = pd.read_csv(tmp / "connectomics" / "predictions.csv")
        t0 = time.perf_counter()
        v1 = v1_di()
        timings["v1_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        b_resp, _ = gabor_responses(model, whitener, bspec)
        timings["gabor_s"] = time.perf_counter() - t0
        cf_rows, cf_info = [], {}
        if not args.no_compact_filters:
            t0 = time.perf_counter()
            cf_rows, cf_info = compact_filter_study(args.quick)
            timings["compact_filters_s"] = time.perf_counter() - t0
        timings["total_s"] = time.perf_counter() - t_start

        ok = tun["responsive"].to_numpy(bool)
        di_model = tun.loc[ok, "di"].to_numpy(float)
        di_v1 = np.array([r["di"] for r in v1], float)
        di_v1_b = np.array([r["di_baseline"] for r in v1], float)
        fm = json.loads((tmp / "fit" / "metrics.json").read_text())
        keys = [f"{m}{c}" for m in ("di_median", "di_frac_above_0_5", "n_ds_units")
                for c in ("", "_r_zero", "_r_shuffled", "_r_shuffled_offdiag", "_r_diagonal",
                          "_untrained")]
        keys += ["n_responsive", "n_units", "osi_median", "contrast_sweep", "matched_contrast",
                 "responsive_criterion", "di_definition"]
        metrics = {
            **{k: pm[k] for k in keys},
            "di_v1": summary(di_v1), "di_v1_baseline_subtracted": summary(di_v1_b),
            "di_model": summary(di_model),
            "predictions": preds.to_dict(orient="records"),
            "training": {k: fm[k] for k in fm if k.endswith("_last20") or k in (
                "n_iterations", "train_s", "spectral_radius_R", "frame_energy")},
            "compact_filters": cf_rows, "compact_filters_info": cf_info,
            "timings_s": timings, "model_spec": mspec.model_dump(mode="json"),
            "movie_spec": vspec.model_dump(mode="json"), "quick": args.quick,
            "seed": args.seed,
            "commands": [f"neurorec train {MODEL.relative_to(ROOT)} --stimulus MOVIE --out "
                         "OUT/fit", f"neurorec probe OUT/fit --protocol "
                         f"{PROBE.relative_to(ROOT)} --out OUT/probe", "neurorec connectomics "
                         "OUT/fit --tuning OUT/probe/tuning.csv --out OUT/connectomics"]}
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
        shutil.copy(tmp / "probe" / "tuning.csv", tmp / "tuning.csv")
        shutil.copy(tmp / "connectomics" / "predictions.csv", tmp / "predictions.csv")
        study.write_csv(tmp / "di_v1.csv", v1)
        if cf_rows:
            study.write_csv(tmp / "compact_filters.csv", cf_rows)
        figs = figures(tmp, model, whitener, tun, di_model, di_v1, di_v1_b, bspec, b_resp)
        (tmp / "RESULTS.md").write_text(results_md(metrics, args))
        study.write_report(tmp, "Spike-and-slab RNN on natural movies", [
            ("Direction index: model (with controls) vs V1",
             html.pre((tmp / "RESULTS.md").read_text())
             + html.figure(figs["di"], "DI, model (responsive units, matched contrast) and "
                           "V1")),
            ("Tuning", html.figure("probe/speed_tuning.png", "speed tuning; DI vs contrast")
             + html.figure(figs["polar"], "small drifting Gabors (polar)")),
            ("Connectomics", html.figure("connectomics/outgoing_maps.png", "outgoing targets "
                                         "of DS units; spectrum of R")),
            ("Model", html.figure("fit/training.png", "training")
             + html.figure(figs["filters"], "W (un-whitened), sorted by DI")),
        ])
    print(json.dumps({k: metrics[k] for k in ("di_median", "di_frac_above_0_5",
                                              "di_median_r_zero", "di_median_r_shuffled",
                                              "di_median_r_shuffled_offdiag",
                                              "di_median_r_diagonal",
                                              "di_median_untrained", "n_ds_units",
                                              "n_responsive", "timings_s")}, indent=1,
                     default=float))


def figures(tmp: Path, model, whitener, tun: pd.DataFrame, di_model, di_v1, di_v1_b, bspec,
            b_resp) -> dict[str, str]:
    """DI histograms model vs V1, the dictionary, Gabor polar plots."""
    figs = {}
    n, p = model.W_.shape[1], int(np.sqrt(model.W_.shape[0]))
    fig, ax = plt.subplots(1, 2, figsize=(8, 3), sharex=True)
    bins = np.linspace(0, 1, 21)
    ax[0].hist(di_model[np.isfinite(di_model)], bins, color="C0")
    ax[0].set(title=f"ssrnn, responsive units (n={np.isfinite(di_model).sum()})", xlabel="DI",
              ylabel="units")
    ax[1].hist(di_v1[np.isfinite(di_v1)], bins, color="C1", label="spike count")
    ax[1].hist(di_v1_b[np.isfinite(di_v1_b)], bins, histtype="step", color="k",
               label="baseline subtracted")
    ax[1].set(title=f"macaque V1 (n={np.isfinite(di_v1).sum()})", xlabel="DI")
    ax[1].legend(fontsize=7)
    figs["di"] = study.save_figure(fig, tmp / "di_model_vs_v1.png")
    pix = whitener.unwhiten_matrix() @ model.W_
    order = np.argsort(-np.nan_to_num(tun["di"].to_numpy(float)))
    cols = 16
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(12, 0.8 * rows + 0.5))
    for k, a in enumerate(np.ravel(axes)):
        a.axis("off")
        if k < n:
            a.imshow(pix[:, order[k]].reshape(p, p), cmap="gray")
            a.set_title(f"{tun['di'][order[k]]:.2f}", fontsize=6)
    figs["filters"] = study.save_figure(fig, tmp / "filters.png")
    pos = np.array(bspec.positions)
    bdirs = np.asarray(bspec.directions, float)
    bgrid = b_resp.T.reshape(n, len(pos), len(bdirs))  # conditions: position-major
    by_pos = bgrid.mean(axis=2)
    ok = tun["responsive"].to_numpy(bool)
    ranked = [k for k in order if ok[k]][:8]  # the most direction-selective responsive units
    fig, axes = plt.subplots(2, 4, figsize=(10, 5), subplot_kw={"projection": "polar"})
    for a, k in zip(axes.ravel(), ranked, strict=False):
        at = int(by_pos[k].argmax())
        th = np.deg2rad(np.r_[bdirs, bdirs[:1]])
        a.plot(th, np.r_[bgrid[k, at], bgrid[k, at, :1]], lw=1.2)
        a.set_title(f"unit {k}, grating DI {tun['di'][k]:.2f}\nGabor at ({pos[at][0]:.1f}, "
                    f"{pos[at][1]:.1f}) deg", fontsize=8)
        a.set_xticklabels([])
        a.set_yticklabels([])
    figs["polar"] = study.save_figure(fig, tmp / "gabor_polar.png")
    return figs


def _fmt(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.3g}"


def results_md(m: dict, args) -> str:
    """The study's numbers as markdown (RESULTS.md)."""
    cmd = ("    python analyses/ssrnn_v1/run.py --out analyses/ssrnn_v1/full_run"
           + (" --quick" if args.quick else "")
           + "".join(f" --model-set {k}" for k in args.model_set)
           + "".join(f" --movie-set {k}" for k in args.movie_set))
    lines = ["# Spike-and-slab RNN on natural movies — measured results", "", cmd, "",
             f"Timings (s): {json.dumps({k: round(v) for k, v in m['timings_s'].items()})}", "",
             "## Direction index at the training-matched contrast (responsive units)", "",
             f"{m['di_definition']}. Responsive: {m['responsive_criterion']}. Matched "
             f"contrast per spatial frequency (cyc/deg: contrast): {m['matched_contrast']}.", "",
             "| network | median DI | fraction DI > 0.5 | units DI >= 0.3 |",
             "| --- | --- | --- | --- |"]
    for name, suf in (("learned", ""), ("R = 0", "_r_zero"),
                      ("R, entries shuffled", "_r_shuffled"),
                      ("R, off-diagonal entries shuffled", "_r_shuffled_offdiag"),
                      ("R, diagonal only", "_r_diagonal"),
                      ("untrained", "_untrained")):
        lines.append(f"| {name} | {_fmt(m['di_median' + suf])} | "
                     f"{_fmt(m['di_frac_above_0_5' + suf])} | {m['n_ds_units' + suf]} |")
    v, vb = m["di_v1"], m["di_v1_baseline_subtracted"]
    lines += [f"| macaque V1, spike counts (n={v['n']}) | {_fmt(v['median'])} | "
              f"{_fmt(v['frac_di_gt_0.5'])} | |",
              f"| macaque V1, baseline subtracted (n={vb['n']}) | {_fmt(vb['median'])} | "
              f"{_fmt(vb['frac_di_gt_0.5'])} | |", "",
              f"{m['n_responsive']} of {m['n_units']} units responsive; median OSI "
              f"{_fmt(m['osi_median'])}.", "", "Contrast sweep (learned network):", "",
              "| contrast | responsive | median DI | fraction DI > 0.5 | DI >= 0.3 |",
              "| --- | --- | --- | --- | --- |"]
    lines += [f"| {s['contrast']:g} | {s['n']} | {_fmt(s['median'])} | "
              f"{_fmt(s['frac_above_0_5'])} | {s['n_ds']} |" for s in m["contrast_sweep"]]
    lines += ["", "## In-silico connectomics", "",
              "| prediction | effect | value | 95 % CI | p | units | shuffled R |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    pipe = "\\|"  # a literal | inside a markdown cell
    lines += [f"| {r['prediction']} | {r['effect_name'].replace('|', pipe)} | "
              f"{_fmt(r['effect'])} | "
              f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] | {_fmt(r['p'])} | "
              f"{r['n_units']} | {_fmt(r['effect_r_shuffled'])} |" for r in m["predictions"]]
    if m["compact_filters"]:
        lines += ["", "## Compact filters", "",
                  "| bank | implementation | relative error | flops / frame | µs / frame "
                  "(batch 64) | µs / frame (batch 1) |", "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['bank']} | {r['implementation']} | {_fmt(r['relative_error'])} | "
                  f"{r['flops_per_frame']:,} | {r['us_per_frame_batch64']:.0f} | "
                  f"{r['us_per_frame_batch1']:.0f} |" for r in m["compact_filters"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from neurorec.core.errors import run_script

    run_script(main)
