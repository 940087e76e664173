"""One exploration attempt of the motion study: train a spike-and-slab RNN variant, probe it.

    python analyses/ssrnn_v1/explore.py --name NAME --out DIR [--model-set k=v ...]
        [--movie-set k=v ...] [--seed 0] [--reprobe]

A short single-seed run per attempt (the attempts log in RESULTS.md was made with it): the
model of ``models/ssrnn_movies.yaml`` and the movie of ``stimuli/natural_movie_12px.yaml``
with the overrides given, then a reduced clean probe — 8 directions x 3 speeds (0.5-2 deg/s)
x 3 spatial frequencies (1.25-3.75 cyc/deg) x 2 start phases (90 and 270 deg, a set that a
contrast reversal maps onto itself), temporal frequency <= 7.5 Hz, 60 frames with a 48-frame
whole-cycle window, contrast matched per spatial frequency to the movie's whitened energy —
of the learned network, R = 0, R with off-diagonal / all entries shuffled, and the untrained
network. Responsive: preferred response > 5 % of the median over units that respond.
``--reprobe`` probes DIR/NAME.npz again instead of training. Writes DIR/NAME.json and .npz.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from neurorec.analysis.tuning import direction_index, vector_selectivity
from neurorec.families.ssrnn.model import SpikeSlabRNN
from neurorec.spec import load_model_spec, load_stimulus_spec
from neurorec.stimuli import generate
from neurorec.stimuli.gratings import grating
from neurorec.workflows.probe import shuffled

ROOT = Path(__file__).resolve().parents[2]
DIRS = np.arange(8) * 45.0
SFS = (1.25, 2.5, 3.75)
SPEEDS = (0.5, 1.0, 2.0)
PHASES = (90.0, 270.0)
T, WINDOW = 60, 48


def probe_clips(movie, patch_px: int, dpp: float) -> np.ndarray:
    """(n_conditions, T, D) whitened gratings, per-SF contrast matched to the movie."""
    t = np.arange(T) / 30.0
    frames = np.stack([grating(d, v, f, t, patch_px, dpp, 1.0, "sine", np.deg2rad(ph))
                       for d in DIRS for v in SPEEDS for f in SFS for ph in PHASES])
    y = movie.whitener.apply(frames).reshape(len(DIRS), len(SPEEDS), len(SFS), len(PHASES), T,
                                              -1)
    e_movie = float((movie.clips.astype(np.float64) ** 2).mean())
    scale = np.sqrt(e_movie / (y.astype(np.float64) ** 2).mean(axis=(0, 1, 3, 4, 5)))
    y = y * scale[None, None, :, None, None, None]
    return y.reshape(-1, T, y.shape[-1]).astype(np.float32)


def responses(model, clips, R=None) -> np.ndarray:
    z, _ = model.infer(clips, batch_size=512, R=R)
    r = np.maximum(z[:, T - WINDOW:], 0).mean(1)
    return r.reshape(len(DIRS), len(SPEEDS), len(SFS), len(PHASES), -1).mean(3).transpose(
        3, 0, 1, 2)


def summarise(r: np.ndarray) -> dict:
    n = r.shape[0]
    best = r.mean(1).reshape(n, -1).argmax(1)
    s_i, f_i = np.unravel_index(best, (len(SPEEDS), len(SFS)))
    curves = r[np.arange(n), :, s_i, f_i]
    di, _ = direction_index(curves, DIRS)
    rmax = curves.max(1)
    ok = rmax > 0.05 * np.median(rmax[rmax > 0]) if (rmax > 0).any() else rmax > 0
    osi, _ = vector_selectivity(curves, DIRS, 2)
    d = di[ok]
    return {"n_resp": int(ok.sum()), "di_median": float(np.median(d)),
            "frac_gt_0.5": float(np.mean(d > 0.5)), "n_ds": int((d >= 0.3).sum()),
            "osi_median": float(np.nanmedian(osi[ok])),
            "pref_sf": np.bincount(f_i[ok], minlength=3).tolist(),
            "pref_speed": np.bincount(s_i[ok], minlength=3).tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model-set", action="append", default=[])
    ap.add_argument("--movie-set", action="append", default=[])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reprobe", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    ms = load_model_spec(ROOT / "models" / "ssrnn_movies.yaml", a.model_set)
    vs = load_stimulus_spec(ROOT / "stimuli" / "natural_movie_12px.yaml", a.movie_set)
    a.out.mkdir(parents=True, exist_ok=True)
    movie = generate(vs)
    model = SpikeSlabRNN(ms, seed=a.seed)
    out = {"name": a.name, "model_set": a.model_set, "movie_set": a.movie_set}
    if a.reprobe:
        with np.load(a.out / f"{a.name}.npz") as f:
            model.W_, model.R_, model.b_ = f["W"], f["R"], f["b"]
        model.history_ = []
    else:
        t0 = time.time()
        model.fit(movie.clips, progress=False)
        out["train_s"] = time.time() - t0
        out["final"] = {k: float(np.mean([getattr(r, k) for r in model.history_[-20:]]))
                        for k in ("log_likelihood_per_frame", "mse_per_pixel",
                                  "fraction_active")}
        np.savez(a.out / f"{a.name}.npz", W=model.W_, R=model.R_, b=model.b_)
    untrained = SpikeSlabRNN(ms, seed=a.seed)
    untrained.W_, untrained.R_, untrained.b_ = model.initial_params(movie.clips)
    clips = probe_clips(movie, vs.patch_px, vs.degrees_per_px)
    out["learned"] = summarise(responses(model, clips))
    out["r_zero"] = summarise(responses(model, clips, np.zeros_like(model.R_)))
    out["r_shuffled_all"] = summarise(responses(model, clips, shuffled(model.R_, seed=0)))
    off_shuffled = shuffled(model.R_, seed=1, keep_diagonal=True)
    out["r_shuffled_offdiag"] = summarise(responses(model, clips, off_shuffled))
    out["untrained"] = summarise(responses(untrained, clips))
    print(json.dumps(out, indent=1))
    (a.out / f"{a.name}.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
