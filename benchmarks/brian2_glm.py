"""Sampling time of an R-GLM: the torch ancestral sampler vs the Brian 2 network.

Both draw the same number of trials from the same hand-built R-GLM (stimulus drive,
self-history, coupling, recurrent latent; softplus link) in one process under the same thread
limit. The torch sampler recomputes the history features of the whole prefix at every bin (one
definition of the model for fitting and sampling), so its cost grows as ``n_bins²``; the
network keeps a ring buffer and costs ``n_bins``. The first Brian 2 call (code generation,
Cython compilation or cache load; seconds per new model structure with a cold cache) is timed
separately; then the best of ``--repeats`` calls of each backend is printed with the ratio
``brian2 time / torch time``.

Measured 2026-11-22 on 2 CPU cores. Defaults (20 units, 8 conditions, 90 bins, dim 8,
1000 trials, 2 threads): torch 49.2 s, brian2 0.68 s (ratio 0.014), first Brian call 24.8 s
with a cold cache; the default run takes ~5 min. The test's model (5 units, 2 conditions,
40 bins, dim 2, 4000 trials, 1 thread): torch 2.79 s, brian2 0.51 s (ratio 0.18).

Usage::

    python benchmarks/brian2_glm.py [--units 20] [--conditions 8] [--bins 90] [--dim 8]
                                    [--trials 1000] [--threads 2] [--repeats 3] [--quick]
                                    [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from neurorec.data.recording import TrialLayout
from neurorec.families import RGLM
from neurorec.families.glm.brian2 import simulate_brian2
from neurorec.families.glm.spec import RGLMSpec


def make_model(n_units: int, n_conditions: int, n_bins: int, dim: int, seed: int = 0,
               device: str = "cpu") -> RGLM:
    """An R-GLM with parameters set by hand: rates ~0.1-0.3 spikes per 10 ms bin."""
    rng = np.random.default_rng(seed)
    spec = RGLMSpec(link="softplus", stimulus={"n_basis": 6},
                    history={"n_basis": 4, "duration": 0.1},
                    coupling={"enabled": True, "n_basis": 3, "duration": 0.05},
                    recurrent={"dim": dim})
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    model = RGLM(spec, device=device)
    model.params_ = {
        "beta": np.log(np.expm1(0.3)) + 0.4 * rng.standard_normal((n_units, n_conditions, 6)),
        "h": np.array([-1.0, -0.4, -0.1, 0.0]) + 0.1 * rng.standard_normal((n_units, 4)),
        "J": 0.2 / np.sqrt(n_units) * rng.standard_normal((n_units, n_units, 3)),
        "W0": 0.3 / np.sqrt(n_units) * rng.standard_normal((dim, n_units)),
        "R": 0.8 * q,
        "B": 0.3 / np.sqrt(dim) * rng.standard_normal((n_units, dim)),
    }
    model.n_bins_, model.n_units_, model.n_conditions_ = n_bins, n_units, n_conditions
    model.bin_size_ = 0.01
    return model


def best_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=20)
    parser.add_argument("--conditions", type=int, default=8)
    parser.add_argument("--bins", type=int, default=90)
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="torch sampler's device: cpu or cuda "
                        "(Brian 2 runs on the CPU)")
    parser.add_argument("--quick", action="store_true",
                        help="the test's model: 5 units, 2 conditions, 40 bins, dim 2, "
                             "1000 trials, 1 repeat")
    args = parser.parse_args()
    if args.quick:  # benchmarks/run_all.py --quick
        args.units, args.conditions, args.bins, args.dim = 5, 2, 40, 2
        args.trials, args.repeats = 1000, 1
    torch.set_num_threads(args.threads)
    try:
        import brian2  # noqa: F401
    except Exception as err:  # not installed, or broken with this numpy
        print(f"brian2 peer: not importable here ({type(err).__name__}: {err}); nothing to "
              "compare the torch sampler with, benchmark skipped")
        return
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: torch.cuda.is_available() is False here")

    model = make_model(args.units, args.conditions, args.bins, args.dim, device=args.device)
    condition = np.arange(args.trials) % args.conditions
    layout = TrialLayout(condition, args.bins)
    print(f"R-GLM: {args.units} units, {args.conditions} conditions, {args.bins} bins of 10 ms, "
          f"latent dim {args.dim}; {args.trials} trials; {args.threads} torch threads; torch "
          f"sampler on {args.device}")

    start = time.perf_counter()
    simulate_brian2(model, condition[:2], seed=0)
    print(f"brian2 first call (build + compile or cache load): {time.perf_counter() - start:.2f} s")

    t_torch, y_torch = best_time(lambda: model.sample(len(condition), seed=1, like=layout),
                                 args.repeats)
    t_brian, y_brian = best_time(lambda: simulate_brian2(model, condition, seed=2), args.repeats)
    print(f"torch sampler : {t_torch:8.3f} s   mean count/bin {y_torch.mean():.4f}")
    print(f"brian2 network: {t_brian:8.3f} s   mean count/bin {y_brian.mean():.4f}")
    print(f"ratio brian2 / torch: {t_brian / t_torch:.3f} (torch / brian2: "
          f"{t_torch / t_brian:.1f}; best of {args.repeats})")


if __name__ == "__main__":
    main()
