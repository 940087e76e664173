"""nemos' PopulationGLM on a session's covariates, with nemos' own bases (peer venv side).

Runs with the Python >= 3.12 venv that holds nemos (see ``README.md``), called by
``benchmarks/peers/nemos_session.py``::

    VENV/bin/python benchmarks/peers/nemos_session_fit.py IN.npz OUT.npz [--threads 2]
        [--repeats 1] [--n-position 8] [--n-hd 8] [--n-speed 8] [--l2 2e-6]

IN.npz: ``x``, ``y`` (n_bins,) position (m), ``hd`` (n_bins,) head direction (rad),
``speed`` (n_bins,) m/s, ``counts`` (n_bins, n_units), ``train``, ``test`` (n_bins,) bool,
``bounds`` (6,) = x_lo, x_hi, y_lo, y_hi, speed_lo, speed_hi (the same ranges neurorec uses).

Model: ``BSplineEval(n_position) * BSplineEval(n_position)`` on position (tensor product),
``CyclicBSplineEval(n_hd)`` on head direction (bounds −π..π), ``BSplineEval(n_speed)`` on
speed, all order 4, summed (``+``), no history; ``PopulationGLM(observation_model="Poisson",
regularizer="Ridge", regularizer_strength=l2)`` with its default solver (nemos' loss: the mean
NLL over rows plus ``0.5 · l2 · ‖coef‖²``, so ``l2 = 2 × neurorec's per-bin ridge``).
Timing: ``t_features_s`` (``compute_features`` on all bins), ``t_first_s`` (first fit:
tracing, compilation and solve), ``t_warm_s`` (each further fit of a fresh model, jax's
persistent compilation cache on, as in ``nemos_glm.py``); ``cpu_*`` the same as process CPU
time (all threads), which a shared, loaded machine distorts less than wall time.

OUT.npz: ``rates`` (n_test, n_units) expected counts on the test bins, ``times`` json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nemos_glm import limit_threads


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--n-position", type=int, default=8)
    ap.add_argument("--n-hd", type=int, default=8)
    ap.add_argument("--n-speed", type=int, default=8)
    ap.add_argument("--l2", type=float, default=2e-6)
    args = ap.parse_args(argv)
    limit_threads(args.threads)

    import tempfile

    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="nemos_jax_"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    import nemos as nmo
    import numpy as np

    f = np.load(args.inp)
    x, y, hd, speed = f["x"], f["y"], f["hd"], f["speed"]
    counts = np.asarray(f["counts"], dtype=np.float64)
    train, test = f["train"].astype(bool), f["test"].astype(bool)
    b = [float(v) for v in f["bounds"]]

    t0 = time.perf_counter()
    basis = (nmo.basis.BSplineEval(args.n_position, order=4, bounds=(b[0], b[1]))
             * nmo.basis.BSplineEval(args.n_position, order=4, bounds=(b[2], b[3]))
             + nmo.basis.CyclicBSplineEval(args.n_hd, order=4, bounds=(-np.pi, np.pi))
             + nmo.basis.BSplineEval(args.n_speed, order=4, bounds=(b[4], b[5])))
    X = np.asarray(basis.compute_features(np.clip(x, b[0], b[1]), np.clip(y, b[2], b[3]),
                                          np.mod(hd + np.pi, 2 * np.pi) - np.pi,
                                          np.clip(speed, b[4], b[5])))
    t_features = time.perf_counter() - t0
    Xtr, Ytr = jax.numpy.asarray(X[train]), jax.numpy.asarray(counts[train])

    def fit():
        start, cpu = time.perf_counter(), time.process_time()
        model = nmo.glm.PopulationGLM(observation_model="Poisson", regularizer="Ridge",
                                      regularizer_strength=args.l2).fit(Xtr, Ytr)
        jax.block_until_ready((model.coef_, model.intercept_))
        return model, time.perf_counter() - start, time.process_time() - cpu

    model, t_first, cpu_first = fit()
    warm, warm_cpu = [], []
    for _ in range(args.repeats):
        model, t, c = fit()
        warm.append(t)
        warm_cpu.append(c)
    rates = np.asarray(model.predict(X[test]))
    times = {"t_features_s": t_features, "t_first_s": t_first, "t_warm_s": warm,
             "cpu_first_s": cpu_first, "cpu_warm_s": warm_cpu,
             "n_cols": int(X.shape[1]), "n_train_bins": int(train.sum()),
             "n_units": int(counts.shape[1]), "nemos": nmo.__version__,
             "jax": jax.__version__, "threads": args.threads,
             "solver": type(model.solver).__name__ if hasattr(model, "solver") else
             str(getattr(model, "solver_name", "")),
             "cpu_count": os.cpu_count()}
    np.savez(args.out, rates=rates, times=json.dumps(times))


if __name__ == "__main__":
    main()
