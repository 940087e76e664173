"""Spike-and-slab RNN on natural movies, probed like V1 (Pachitariu & Sahani 2012).

    python analyses/ssrnn_v1/run.py --out results/ssrnn_v1 [--quick] [--seed 0]
        [--checkpoint PATH] [--model-set k=v ...] [--movie-set k=v ...] [--overwrite]

1. Makes the whitened natural movie of ``stimuli/natural_movie_12px.yaml`` and trains
   ``models/ssrnn_movies.yaml`` on it (greedy filtering + STDP-like learning), checkpointing to
   ``--checkpoint`` (default ``<out>.checkpoint.pt``); a rerun resumes or, when the checkpoint
   is complete, just loads it.
2. Probes the model with the drifting gratings of ``stimuli/ssrnn_probe_gratings.yaml``
   (16 directions × 4 speeds × 4 spatial frequencies) and the small drifting Gabors of
   ``stimuli/drifting_gabors_polar.yaml``, whitened by the movie's ZCA matrix. A unit's
   response is its mean rectified activity ``max(z, 0)`` over the stimulus frames after the
   first ``SETTLE_FRAMES``.
3. Direction index ``DI = 1 − r_nonpref / r_pref`` (``neurorec.analysis.tuning``) for the model
   units and, computed the same way, for every bundled V1 unit with contamination < 0.05
   (mean spike count 0–500 ms after onset, 16 directions; Ecker et al. 2010).
4. In-silico connectomics from the learned R (``neurorec.analysis.connectomics``), R's
   spectrum, and the compact-filter view (a 12×12×30 drifting-Gabor bank as ``R^τ W0``;
   feed-forward vs recurrent vs 5 %-sparse-recurrent cost).

Writes ``report.html``, ``results.json``, ``di_model.csv``, ``di_v1.csv``,
``predictions.csv``, ``tuning.npz``, ``compact_filters.csv`` and the figures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from neurorec.analysis import compact_filters as cf
from neurorec.analysis import connectomics as cx
from neurorec.analysis.tuning import (
    direction_index,
    grating_tuning,
    v1_direction_responses,
    vector_selectivity,
)
from neurorec.datasets.v1_gratings import N_SESSIONS
from neurorec.families.ssrnn.model import SpikeSlabRNN
from neurorec.report import html
from neurorec.spec import load_model_spec, load_stimulus_spec
from neurorec.stimuli import generate
from neurorec.stimuli.gabors import conditions as gabor_conditions
from neurorec.stimuli.gabors import gabor
from neurorec.stimuli.gratings import conditions as grating_conditions
from neurorec.stimuli.gratings import grating
from neurorec.stimuli.timing import n_frames
from neurorec.workflows import study

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "ssrnn_movies.yaml"
MOVIE = ROOT / "stimuli" / "natural_movie_12px.yaml"
GRATINGS = ROOT / "stimuli" / "ssrnn_probe_gratings.yaml"
GABORS = ROOT / "stimuli" / "drifting_gabors_polar.yaml"
SETTLE_FRAMES = 5  # response = mean over frames after the recurrent state has settled
OSI_TUNED = 0.1  # orientation-tuned units for the co-orientation predictions
DI_SELECTIVE = 0.3  # direction-selective units for the projection prediction
K_TOP = 3  # strongest outgoing connections per unit
QUICK = {"model": ["learning.n_iterations=300"], "movie": ["n_clips=600"]}


def probe(model: SpikeSlabRNN, whitener, frames: np.ndarray) -> np.ndarray:
    """(n_conditions, n_units) mean rectified response to (n_conditions, T, h, w) frames."""
    z, _ = model.infer(whitener.apply(frames), batch_size=128)
    return np.maximum(z[:, SETTLE_FRAMES:], 0.0).mean(axis=1)


def grating_responses(model, whitener, spec) -> tuple[np.ndarray, list[dict]]:
    conds = grating_conditions(spec)
    t = np.arange(n_frames(spec.timing.duration, spec.timing.frame_rate)) / spec.timing.frame_rate
    frames = np.stack([grating(c["direction"], c["speed"], c["spatial_frequency"], t,
                               spec.size_px, spec.degrees_per_px, c["contrast"], spec.waveform)
                       for c in conds])
    return probe(model, whitener, frames), conds


def gabor_responses(model, whitener, spec) -> tuple[np.ndarray, list[dict]]:
    conds = gabor_conditions(spec)
    t = np.arange(n_frames(spec.timing.duration, spec.timing.frame_rate)) / spec.timing.frame_rate
    frames = np.stack([gabor(c["direction"], c["speed"], c["spatial_frequency"],
                             (c["x"], c["y"]), spec.sigma, t, spec.size_px,
                             spec.degrees_per_px, c["contrast"]) for c in conds])
    return probe(model, whitener, frames), conds


def v1_di() -> list[dict]:
    rows = []
    for s in range(N_SESSIONS):
        resp, dirs = v1_direction_responses(s, max_contamination=0.05)
        di, pref = direction_index(resp, dirs)
        dsi, _ = vector_selectivity(resp, dirs, 1)
        osi, _ = vector_selectivity(resp, dirs, 2)
        rows += [{"session": s, "unit": u, "di": di[u], "preferred_direction": pref[u],
                  "dsi": dsi[u], "osi": osi[u], "r_pref": resp[u].max()}
                 for u in range(len(resp))]
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
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--quick", action="store_true",
                        help="reduced run: 600 clips, 300 iterations, shorter filter fits")
    parser.add_argument("--model-set", action="append", default=[], metavar="K=V")
    parser.add_argument("--movie-set", action="append", default=[], metavar="K=V")
    study.add_common_args(parser, "device", "quiet", "overwrite",
                          choices={"device": ["cpu", "cuda"]})
    args = parser.parse_args()
    study.apply_thread_policy(1)
    extra = QUICK if args.quick else {"model": [], "movie": []}
    mspec = load_model_spec(MODEL, extra["model"] + args.model_set)
    vspec = load_stimulus_spec(MOVIE, extra["movie"] + args.movie_set)
    gspec, bspec = load_stimulus_spec(GRATINGS), load_stimulus_spec(GABORS)
    study.refuse_existing(args.out, args.overwrite)  # say so now, not after the training
    ckpt = args.checkpoint or study.beside(args.out, ".checkpoint.pt", hidden=False)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    movie = generate(vspec)
    timings["movie_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = SpikeSlabRNN(mspec, device=args.device, seed=args.seed).fit(
        movie.clips, progress=not args.quiet, checkpoint=ckpt)
    timings["train_s"] = time.perf_counter() - t0  # this session's share (resumed runs less)
    p = vspec.patch_px
    n = mspec.n_units

    t0 = time.perf_counter()
    g_resp, _g_conds = grating_responses(model, movie.whitener, gspec)
    dirs = np.asarray(gspec.directions, float)
    speeds = np.asarray(gspec.speeds, float)
    sfs = np.asarray(gspec.spatial_frequencies, float)
    grid = g_resp.T.reshape(n, len(dirs), len(speeds), len(sfs), len(gspec.contrasts))[..., 0]
    tun = grating_tuning(grid, dirs, speeds, sfs)
    b_resp, _b_conds = gabor_responses(model, movie.whitener, bspec)
    timings["probe_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    v1 = v1_di()
    timings["v1_s"] = time.perf_counter() - t0
    di_v1 = np.array([r["di"] for r in v1], float)
    responsive = np.nanmax(tun.responses.reshape(n, -1), axis=1) > 0
    di_model = np.where(responsive, tun.di, np.nan)

    centres = cx.rf_centres(model.W_, p, vspec.degrees_per_px)
    tuned = responsive & (tun.osi >= OSI_TUNED)
    selective = responsive & (tun.di >= DI_SELECTIVE)
    t0 = time.perf_counter()
    preds = []
    if tuned.sum() >= 5:
        preds.append(cx.coorientation(model.R_, tun.preferred_orientation, tuned, K_TOP,
                                      seed=args.seed))
        w_pred, bin_c, bin_w = cx.weight_vs_orientation(model.R_, tun.preferred_orientation,
                                                         tuned, seed=args.seed)
        preds.append(w_pred)
    if selective.sum() >= 5:
        preds.append(cx.projection_along_direction(model.R_, tun.preferred_direction, centres,
                                                   selective, K_TOP, seed=args.seed))
        preds.append(cx.weight_vs_direction(model.R_, tun.preferred_direction, selective,
                                            seed=args.seed))
    else:  # say so in the table rather than drop the prediction silently
        nan = float("nan")
        preds.append(cx.Prediction(
            f"direction-selective units project along their preferred direction: not tested, "
            f"{int(selective.sum())} units with DI >= {DI_SELECTIVE} (needs 5)", nan, nan, nan,
            nan, int(selective.sum()), "mean cos(displacement angle − preferred direction)"))
    timings["connectomics_s"] = time.perf_counter() - t0
    eig = np.linalg.eigvals(model.R_)

    t0 = time.perf_counter()
    cf_rows, cf_info = compact_filter_study(args.quick)
    timings["compact_filters_s"] = time.perf_counter() - t0

    with study.output_dir(args) as tmp:
        figs = {}
        # training curve
        h = model.history_
        fig, ax = plt.subplots(1, 3, figsize=(11, 3))
        it = [r.iteration for r in h]
        for a, key, lab in zip(ax, ("log_likelihood_per_frame", "mse_per_pixel",
                                    "fraction_active"),
                               ("log-likelihood / frame (nats)", "MSE / pixel",
                                "fraction of units on"), strict=False):
            a.plot(it, [getattr(r, key) for r in h], lw=0.6)
            a.set(xlabel="iteration", ylabel=lab)
        figs["training"] = study.save_figure(fig, tmp / "training.png")
        # dictionary (unwhitened back to pixels for display)
        pix = movie.whitener.unwhiten_matrix() @ model.W_
        order = np.argsort(-np.nan_to_num(tun.di))
        fig, axes = plt.subplots(8, 16, figsize=(12, 6.2))
        for k, a in enumerate(axes.ravel()):
            a.axis("off")
            if k < n:
                a.imshow(pix[:, order[k]].reshape(p, p), cmap="gray")
                a.set_title(f"{tun.di[order[k]]:.2f}", fontsize=6)
        figs["filters"] = study.save_figure(fig, tmp / "filters.png")
        # DI side by side
        fig, ax = plt.subplots(1, 2, figsize=(8, 3), sharex=True)
        bins = np.linspace(0, 1, 21)
        ax[0].hist(di_model[np.isfinite(di_model)], bins, color="C0")
        ax[0].set(title=f"ssrnn units (n={np.isfinite(di_model).sum()})", xlabel="DI",
                  ylabel="units")
        ax[1].hist(di_v1[np.isfinite(di_v1)], bins, color="C1")
        ax[1].set(title=f"macaque V1 (n={np.isfinite(di_v1).sum()})", xlabel="DI")
        figs["di"] = study.save_figure(fig, tmp / "di_model_vs_v1.png")
        # speed tuning of the most direction-selective units among the strongly responding
        # half (a unit that barely responds can have DI = 1 from one tiny response)
        r_pref = tun.responses.reshape(n, -1).max(axis=1)
        strong = responsive & (r_pref >= np.median(r_pref[responsive]))
        top = [k for k in order if strong[k]][:8]
        fig, ax = plt.subplots(1, 2, figsize=(8, 3))
        for k in top:
            c = tun.speed_curve[k]
            ax[0].plot(speeds, c / max(c.max(), 1e-12), marker="o", lw=0.8)
        ax[0].set(xscale="log", xlabel="speed (deg/s)", ylabel="response / max",
                  title="speed tuning: 8 most direction-selective\nof the strongly responding")
        vals, cnt = np.unique(tun.preferred_speed[responsive], return_counts=True)
        ax[1].bar([str(v) for v in vals], cnt)
        ax[1].set(xlabel="preferred speed (deg/s)", ylabel="units")
        figs["speed"] = study.save_figure(fig, tmp / "speed_tuning.png")
        # direction tuning, polar plots of small drifting Gabors at each unit's RF centre
        pos = np.array(bspec.positions)
        bdirs = np.asarray(bspec.directions, float)
        bgrid = b_resp.T.reshape(n, len(pos), len(bdirs))  # conditions: position-major
        # the 8 units responding most to a Gabor, each at its best Gabor position
        by_pos = bgrid.mean(axis=2)  # (n, n_positions)
        polar_units = np.argsort(-by_pos.max(axis=1))[:8]
        fig, axes = plt.subplots(2, 4, figsize=(10, 5), subplot_kw={"projection": "polar"})
        for a, k in zip(axes.ravel(), polar_units, strict=False):
            at = int(by_pos[k].argmax())
            th = np.deg2rad(np.r_[bdirs, bdirs[:1]])
            a.plot(th, np.r_[bgrid[k, at], bgrid[k, at, :1]], lw=1.2)
            a.set_title(f"unit {k}, DI {tun.di[k]:.2f}\nGabor at ({pos[at][0]:.1f}, "
                        f"{pos[at][1]:.1f}) deg", fontsize=8)
            a.set_xticklabels([])
            a.set_yticklabels([])
        figs["polar"] = study.save_figure(fig, tmp / "gabor_polar.png")
        # connectomics figures
        fig, ax = plt.subplots(1, 3, figsize=(12, 3.4))
        if tuned.sum() >= 5:
            ax[0].plot(bin_c, bin_w, marker="o")
        ax[0].set(xlabel="|Δ preferred orientation| (deg)", ylabel="mean R[j, k]",
                  title="weight vs orientation difference")
        targets = cx.strongest_targets(model.R_, K_TOP)
        for k in np.flatnonzero(selective):
            th = np.deg2rad(tun.preferred_direction[k])
            for j in targets[k][targets[k] >= 0]:
                d = centres[j] - centres[k]
                rot = np.array([d[0] * np.cos(th) + d[1] * np.sin(th),
                                -d[0] * np.sin(th) + d[1] * np.cos(th)])
                ax[1].plot(*rot, ".", color="C2", ms=3)
        ax[1].axhline(0, color="0.7", lw=0.5)
        ax[1].axvline(0, color="0.7", lw=0.5)
        ax[1].set(xlabel="along preferred direction (deg)", ylabel="orthogonal (deg)",
                  title="targets of direction-selective units", aspect="equal")
        ax[2].scatter(eig.real, eig.imag, s=6)
        ax[2].set(xlabel="Re λ", ylabel="Im λ", title="spectrum of R", aspect="equal")
        figs["connectomics"] = study.save_figure(fig, tmp / "connectomics.png")

        model_rows = [{"unit": k, "di": tun.di[k], "preferred_direction":
                       tun.preferred_direction[k], "dsi": tun.dsi[k], "osi": tun.osi[k],
                       "preferred_orientation": tun.preferred_orientation[k],
                       "preferred_speed": tun.preferred_speed[k], "responsive":
                       bool(responsive[k]), "rf_x": centres[k, 0], "rf_y": centres[k, 1]}
                      for k in range(n)]
        study.write_csv(tmp / "di_model.csv", model_rows)
        study.write_csv(tmp / "di_v1.csv", v1)
        pred_rows = [{"statement": q.statement, "effect_name": q.effect_name,
                      "effect": q.effect, "ci_low": q.ci_low, "ci_high": q.ci_high,
                      "p_value": q.p_value, "n_units": q.n_units} for q in preds]
        if pred_rows:
            study.write_csv(tmp / "predictions.csv", pred_rows)
        study.write_csv(tmp / "compact_filters.csv", cf_rows)
        np.savez(tmp / "tuning.npz", responses=tun.responses, directions=dirs, speeds=speeds,
                 spatial_frequencies=sfs, gabor_responses=bgrid, gabor_positions=pos,
                 W=model.W_, R=model.R_, b=model.b_, eigenvalues=eig,
                 zca=movie.whitener.matrix, zca_mean=movie.whitener.mean)
        results = {
            "di_definition": "DI = 1 - r_nonpref / r_pref; r = mean rectified response "
                             "max(z,0) (model) or mean spike count 0-500 ms (V1); pref = argmax "
                             "over 16 directions, nonpref = pref + 180 deg",
            "di_model": summary(di_model), "di_v1": summary(di_v1),
            "n_tuned": int(tuned.sum()), "n_selective": int(selective.sum()),
            "n_responsive": int(responsive.sum()),
            "predictions": pred_rows, "compact_filters": cf_rows,
            "compact_filters_info": cf_info,
            "spectral_radius_R": float(np.abs(eig).max()),
            "final_training": h[-1].__dict__ if h else None,
            "training_mean_last_20": {k: float(np.mean([getattr(r, k) for r in h[-20:]]))
                                      for k in ("log_likelihood_per_frame", "mse_per_pixel",
                                                "fraction_active")} if h else None,
            "timings_s": timings, "model_spec": mspec.model_dump(mode="json"),
            "movie_spec": vspec.model_dump(mode="json"), "quick": args.quick,
            "seed": args.seed, "checkpoint": str(ckpt)}
        (tmp / "results.json").write_text(json.dumps(results, indent=2, default=float))

        hdr = ["", "n", "mean", "q25", "median", "q75", "frac DI>0.5"]
        di_tab = html.table([[name] + [summary(x)[k] for k in ("n", "mean", "q25", "median",
                                                               "q75", "frac_di_gt_0.5")]
                             for name, x in (("ssrnn units", di_model),
                                             ("macaque V1 (27 sessions)", di_v1))], hdr)
        sections = [
            ("Direction index: model vs V1",
             f"<p>{results['di_definition']}. Model responses to 12×12-pixel drifting sine "
             f"gratings whitened by the movie's ZCA matrix, at each unit's preferred speed and "
             f"spatial frequency; V1: every bundled unit with contamination &lt; 0.05 (Ecker "
             f"et al. 2010; CC BY-NC-ND 3.0).</p>" + di_tab
             + html.figure(figs["di"], "DI distributions")),
            ("In-silico connectomics predictions",
             f"<p>Tuned: OSI ≥ {OSI_TUNED} (n={int(tuned.sum())}); direction-selective: DI ≥ "
             f"{DI_SELECTIVE} (n={int(selective.sum())}); {K_TOP} strongest outgoing "
             f"connections per unit; permutation p (2000 shuffles of tuning labels), 95 % "
             f"bootstrap CI over presynaptic units.</p>"
             + html.table([[q.statement, q.effect_name, q.effect, f"[{q.ci_low:.3g}, "
                            f"{q.ci_high:.3g}]", q.p_value, q.n_units] for q in preds],
                          ["prediction", "effect", "value", "95% CI", "p", "units"])
             + html.figure(figs["connectomics"], "weight vs orientation difference; "
                           "displacements to targets in each unit's preferred-direction "
                           "frame; eigenvalues of R")),
            ("Tuning", html.figure(figs["speed"], "speed tuning")
             + html.figure(figs["polar"], "responses to small drifting Gabors (polar)")),
            ("Compact filters",
             f"<p>{cf_info['rigid']['n_filters']} drifting-Gabor filters of 12×12 pixels × "
             f"{cf_info['rigid']['n_lags']} lags as R^τ W0 (dense R, then R pruned to "
             f"{100 * cf_info['rigid']['density']:.1f} % of entries and refitted). "
             f"quadrature: the carrier drifts under a fixed envelope (exactly R^τ W0 with "
             f"2×2 rotation blocks); rigid: the whole Gabor translates. Times are float32, "
             f"1 thread, CSR for the sparse R.</p>"
             + html.table([[r["bank"], r["implementation"], r["relative_error"],
                            r["flops_per_frame"], r["us_per_frame_batch64"],
                            r["us_per_frame_batch1"]] for r in cf_rows],
                          ["bank", "implementation", "relative error", "flops / frame",
                           "µs / frame (batch 64)", "µs / frame (batch 1)"])),
            ("Model", html.figure(figs["training"], "training")
             + html.figure(figs["filters"], "W (un-whitened), sorted by DI")
             + html.pre(json.dumps({"timings_s": timings, "spectral_radius_R":
                                    results["spectral_radius_R"],
                                    "training_mean_last_20": results["training_mean_last_20"]},
                                   indent=1))),
        ]
        study.write_report(tmp, "Spike-and-slab RNN on natural movies", sections)
    print(json.dumps({k: results[k] for k in ("di_model", "di_v1", "predictions",
                                              "compact_filters", "spectral_radius_R",
                                              "timings_s")}, indent=1, default=float))


if __name__ == "__main__":
    from neurorec.core.errors import run_script

    run_script(main)
