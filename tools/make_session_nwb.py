"""Write a SIMULATED open-field session as a trial-less NWB file, with its ground truth beside it.

    python tools/make_session_nwb.py --out S.nwb --units 120 --minutes 30 --seed 7 \
        --trajectory tanni --start-min 40

writes ``S.nwb`` (units with spike times, ``processing/behavior`` with ``Position/position``
in metres and ``CompassDirection/head_direction`` in radians, an epochs table with a
``split`` column; no trials; laid out as issue 27's target) and ``S_truth.npz`` (float32
``rates`` and ``rates_no_gain`` (n_bins, n_units) expected counts per bin, ``gain``,
``time``, ``split``, the tuning grids and the generating arguments). The model is
:func:`neurorec.datasets.open_field.simulate_open_field`; the file never holds the truth.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from neurorec.core.errors import run_script
from neurorec.data.sessions_io import write_session_nwb
from neurorec.datasets.open_field import simulate_open_field


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="the NWB file to write")
    ap.add_argument("--units", type=int, default=120)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--trajectory", choices=("sargolini", "tanni"), default="tanni")
    ap.add_argument("--start-min", type=float, default=40.0,
                    help="where in the recorded trajectory the session starts, minutes")
    ap.add_argument("--bin-size", type=float, default=0.01, help="simulation bin, seconds")
    ap.add_argument("--gain-sd", type=float, default=0.5)
    ap.add_argument("--gain-tau", type=float, default=10.0, help="seconds")
    ap.add_argument("--gap", type=float, default=0.1, help="guard band of the split, seconds")
    args = ap.parse_args()
    out = Path(args.out)
    t0 = time.perf_counter()
    session = simulate_open_field(args.units, args.minutes * 60.0, args.trajectory, args.seed,
                                  args.bin_size, args.gain_sd, args.gain_tau, gap_s=args.gap,
                                  start_s=args.start_min * 60.0)
    write_session_nwb(session, out, seed=args.seed, series=("position", "head_direction"))
    truth = {k: (v.astype(np.float32) if k.startswith("rates") else v)
             for k, v in session.truth.items()}
    np.savez_compressed(out.with_name(out.stem + "_truth.npz"), time=session.time,
                        split=session.split, counts_sum=session.counts.sum(0), **truth,
                        arguments=np.array(repr(vars(args))))
    rate = session.counts.sum() / session.n_units / (session.n_bins * session.bin_size)
    labels, n = np.unique(session.split, return_counts=True)
    split = ", ".join(f"{a} {b}" for a, b in zip(labels, n, strict=True))
    print(f"{out}: {session.n_units} units, {session.n_bins} bins of {session.bin_size} s, "
          f"{rate:.2f} Hz mean, bins per split: {split}; {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)


if __name__ == "__main__":
    run_script(main)
