"""neurorec's session GLM beside nemos' PopulationGLM on one simulated open-field session.

    python benchmarks/peers/nemos_session.py [--units 120] [--minutes 30] [--seed 7]
        [--trajectory tanni] [--threads 2] [--venv /work/peers/nemos] [--out DIR]

The session: :func:`neurorec.datasets.open_field.simulate_open_field` (a real rat trajectory,
simulated place / head-direction / speed cells with refractory history and a shared slow
gain; 10 ms bins; blocked held-out test blocks). Both models see the same covariates (position,
head direction, running speed derived from position) on the same train bins and are scored
by NLB bits/spike (:func:`neurorec.core.metrics.bits_per_spike`) on the same test bins:

- neurorec: ``models/session_glm.yaml`` with ``history.enabled=false`` and the bases and
  ridge of the options (default 8 × 8 tensor-product cubic B-splines, cyclic cubic B-spline 8,
  cubic B-spline 8 on speed on 0–0.6 m/s, ridge 1e-6 per bin; batched Newton on the
  row-sparse design); wall and CPU time of ``SessionGLM.fit`` (design and fit).
- nemos (its own venv, ``nemos_session_fit.py``): ``BSplineEval(8) * BSplineEval(8) +
  CyclicBSplineEval(8) + BSplineEval(8)`` with the same ranges, ``PopulationGLM`` Poisson,
  Ridge ``l2 = 2e-6`` (the same penalty in nemos' convention), default solver; warm fit time
  (its compilation cached) and the first fit's.

Both run with ``--threads`` BLAS / XLA threads in the same invocation, one after the other.
Writes ``DIR/nemos_session.json`` and prints one line per model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--units", type=int, default=120)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--trajectory", default="tanni")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--venv", default=None, help="venv with nemos (default: /work/peers/nemos "
                    "if present, else benchmarks/peers/.venv)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--skip-nemos", action="store_true")
    ap.add_argument("--n-position", type=int, default=8, help="B-splines per position axis")
    ap.add_argument("--n-hd", type=int, default=8, help="cyclic B-splines, head direction")
    ap.add_argument("--n-speed", type=int, default=8, help="B-splines, speed")
    ap.add_argument("--ridge", type=float, default=1e-6, help="per-bin ridge on every "
                    "covariate (nemos: l2 = 2 × ridge)")
    args = ap.parse_args(argv)
    _threads(args.threads)

    import numpy as np

    from neurorec.core.metrics import bits_per_spike
    from neurorec.datasets.open_field import simulate_open_field
    from neurorec.families.glm.session import SessionGLM
    from neurorec.spec.load import load_model_spec

    session = simulate_open_field(n_units=args.units, duration_s=args.minutes * 60,
                                  trajectory=args.trajectory, seed=args.seed)
    spec = load_model_spec(ROOT / "models" / "session_glm.yaml", ["history.enabled=false"])
    # the bases and ridge of this comparison, whatever the shipped spec says today
    covs = list(spec.covariates)
    sizes = {"position": (args.n_position, args.n_position), "head_direction": args.n_hd,
             "speed": args.n_speed}
    covs = [c.model_copy(update={"n_basis": sizes[c.name], "ridge": args.ridge}) for c in covs]
    spec = spec.model_copy(update={"covariates": tuple(covs)})
    train, test = session.mask("train"), session.mask("test")

    def score(rates):
        return bits_per_spike(session.counts[test][None], rates[None])

    t0, c0 = time.perf_counter(), time.process_time()
    model = SessionGLM(spec).fit(session)
    t_ours, cpu_ours = time.perf_counter() - t0, time.process_time() - c0
    ours = score(model.predict_rate(session)[test])
    result = {"session": {"units": args.units, "minutes": args.minutes, "seed": args.seed,
                          "trajectory": args.trajectory, "n_bins": session.n_bins,
                          "n_train": int(train.sum()), "n_test": int(test.sum()),
                          "n_spikes_test": int(session.counts[test].sum())},
              "threads": args.threads,
              "neurorec": {"bits_per_spike": ours, "fit_s": t_ours, "cpu_s": cpu_ours,
                           "n_cols": int(model.coef_.shape[1]),
                           "converged": int(model.converged_.sum()),
                           "max_newton_iter": int(model.n_iter_.max())},
              "truth_no_gain_bits_per_spike": score(session.truth["rates_no_gain"][test])}
    print(f"neurorec: {ours:.4f} bits/spike, fit {t_ours:.1f} s (CPU {cpu_ours:.1f} s) "
          f"({model.coef_.shape[1]} columns, {args.threads} threads)", flush=True)
    if not args.skip_nemos:
        venv = Path(args.venv) if args.venv else (
            Path("/work/peers/nemos") if Path("/work/peers/nemos/bin/python").exists()
            else HERE / ".venv")
        b = model.bounds_
        speed_rng = b["speed"]
        with tempfile.TemporaryDirectory() as tmp:
            inp, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
            pos = session.covariates["position"]
            np.savez(inp, x=pos[:, 0], y=pos[:, 1],
                     hd=np.ravel(session.covariates["head_direction"]),
                     speed=np.ravel(session.covariates["speed"]), counts=session.counts,
                     train=train, test=test,
                     bounds=np.array([*b["position"], *speed_rng], float))
            t0 = time.perf_counter()
            subprocess.run([str(venv / "bin" / "python"), str(HERE / "nemos_session_fit.py"),
                            str(inp), str(out), "--threads", str(args.threads),
                            "--l2", str(2 * args.ridge), "--n-position", str(args.n_position),
                            "--n-hd", str(args.n_hd), "--n-speed", str(args.n_speed)],
                           check=True)
            t_call = time.perf_counter() - t0
            with np.load(out) as f:
                rates, times = f["rates"], json.loads(str(f["times"]))
        theirs = score(rates)
        warm = min(times["t_warm_s"]) if times["t_warm_s"] else times["t_first_s"]
        result["nemos"] = {"bits_per_spike": theirs, "fit_warm_s": warm, **times,
                           "subprocess_s": t_call}
        result["ratio_warm_over_ours"] = warm / t_ours
        cpu_warm = min(times["cpu_warm_s"]) if times["cpu_warm_s"] else times["cpu_first_s"]
        result["ratio_cpu_warm_over_ours"] = cpu_warm / cpu_ours
        result["bits_per_spike_diff"] = ours - theirs
        print(f"nemos:    {theirs:.4f} bits/spike, fit warm {warm:.1f} s, first "
              f"{times['t_first_s']:.1f} s, features {times['t_features_s']:.1f} s; CPU warm "
              f"{cpu_warm:.1f} s; speed-up wall {warm / t_ours:.1f}x, CPU "
              f"{cpu_warm / cpu_ours:.1f}x; bits/spike ours - nemos {ours - theirs:+.4f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "nemos_session.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
