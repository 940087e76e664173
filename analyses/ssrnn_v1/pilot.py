"""One training-settings attempt of issue 31 (does R's lateral structure carry direction
selectivity, and is tuning as broad as V1's?): train, then a reduced full-direction probe.

    python analyses/ssrnn_v1/pilot.py --name NAME --out DIR [--model-set k=v ...]
        [--movie-set k=v ...] [--seed 0] [--phases 90 270] [--reprobe]

Trains ``models/ssrnn_movies.yaml`` on ``stimuli/natural_movie_12px.yaml`` with the overrides
given (``neurorec train --stimulus``, into DIR/NAME/fit), then probes it with
``stimuli/ssrnn_direction_probe.yaml`` restricted to the matched contrast and the start phases
given (16 directions x 3 speeds x 3 spatial frequencies, the full protocol's window and
responsiveness rule): the learned network, R = 0, R shuffled, R with its off-diagonal entries
shuffled, R's diagonal alone and the untrained network. Writes DIR/NAME/pilot.json: median DI,
DS units (DI >= 0.3) and responsive units per network, and over the learned network's
responsive units the median OSI, the fraction at OSI >= 0.99 and the median half-width of the
direction tuning (:func:`~neurorec.analysis.tuning.half_width`). ``--reprobe`` probes an
existing DIR/NAME/fit again.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from neurorec.analysis.tuning import di_summary, grating_tuning, half_width, responsive_units
from neurorec.spec import load_model_spec, load_stimulus_spec
from neurorec.workflows import study
from neurorec.workflows.probe import (
    DI_SELECTIVE,
    _grid,
    load_protocol,
    load_target,
    shuffled,
    train_on_stimulus,
)

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "ssrnn_movies.yaml"
MOVIE = ROOT / "stimuli" / "natural_movie_12px.yaml"
PROBE = ROOT / "stimuli" / "ssrnn_direction_probe.yaml"


def pilot_probe(fit_dir: Path, phases: tuple[float, ...], seed: int) -> dict:
    """The reduced probe's summary of ``fit_dir`` (see the module docstring)."""
    spec = load_protocol(PROBE)
    single = spec.model_copy(update={"contrasts": (1.0,), "phases": tuple(phases)})
    target = load_target(fit_dir)
    matched = target.matched_contrast(single)
    variants = {"learned": {}, "r_zero": {"R": np.zeros_like(target.R)},
                "r_shuffled": {"R": shuffled(target.R, seed)},
                "r_shuffled_offdiag": {"R": shuffled(target.R, seed, keep_diagonal=True)},
                "r_diagonal": {"R": np.diag(np.diag(target.R))},
                "untrained": {"untrained_model": True}}
    dirs = np.asarray(spec.directions, float)
    speeds = np.asarray(spec.speeds, float)
    sfs = np.asarray(spec.spatial_frequencies, float)
    out: dict = {}
    for name, kw in variants.items():
        resp = _grid(single, target.respond(single, matched, **kw))[..., 0]
        tun = grating_tuning(resp, dirs, speeds, sfs)
        ok = responsive_units(resp.reshape(target.n_units, -1).max(axis=1),
                              spec.probe.responsive_fraction)
        s = di_summary(tun.di, ok, DI_SELECTIVE)
        out[name] = {"di_median": s["median"], "n_ds": s["n_ds"], "n_responsive": s["n"]}
        if name == "learned":
            osi = tun.osi[ok]
            curves = tun.responses[np.arange(target.n_units), :, *np.unravel_index(
                tun.responses.mean(axis=1).reshape(target.n_units, -1).argmax(axis=1),
                tun.responses.shape[2:])]
            width = half_width(curves[ok])
            out["osi_median"] = float(np.median(osi)) if len(osi) else float("nan")
            out["osi_frac_ge_0_99"] = float(np.mean(osi >= 0.99)) if len(osi) else float("nan")
            out["half_width_median_deg"] = float(np.median(width)) if len(width) else float(
                "nan")
    out["diag_R_mean"] = float(np.mean(np.diag(target.R)))
    off = target.R[~np.eye(len(target.R), dtype=bool)]
    out["offdiag_R_sd"] = float(np.std(off))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model-set", action="append", default=[], metavar="K=V")
    parser.add_argument("--movie-set", action="append", default=[], metavar="K=V")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--phases", type=float, nargs="+", default=[90.0, 270.0])
    parser.add_argument("--reprobe", action="store_true")
    args = parser.parse_args()
    study.apply_thread_policy(1)
    mspec = load_model_spec(MODEL, args.model_set)
    vspec = load_stimulus_spec(MOVIE, args.movie_set)
    fit_dir = args.out / args.name / "fit"
    t0 = time.perf_counter()
    train = {}
    if not args.reprobe:
        train = train_on_stimulus(mspec, vspec, fit_dir, seed=args.seed, overwrite=True,
                                  progress=False)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = pilot_probe(fit_dir, tuple(args.phases), args.seed)
    res.update({"name": args.name, "model_set": args.model_set, "movie_set": args.movie_set,
                "seed": args.seed, "phases": args.phases, "train_s": train_s,
                "probe_s": time.perf_counter() - t0,
                "fraction_active_last20": train.get("fraction_active_last20"),
                "mse_per_pixel_last20": train.get("mse_per_pixel_last20")})
    (args.out / args.name / "pilot.json").write_text(json.dumps(res, indent=1, default=float))
    print(json.dumps(res, default=float))


if __name__ == "__main__":
    from neurorec.core.errors import run_script

    run_script(main)
