"""Cost of a GLM fit and of the R-GLM recurrence vs N (neurons), T (bins per trial) and batch
(trials), with the exponent ``p`` of ``cost ∝ size^p`` fitted by least squares in log-log.

1. GLM fit (stimulus + history + coupling, the default `glm` model, float64, L-BFGS with early
   stopping and the Newton polish off) on real V1 data: units, bins per trial (a window from
   trial start) and training trials of ``v1_gratings:0`` varied one at a time. The cost is
   seconds per L-BFGS iteration (the fit time divided by its iterations, so convergence speed
   does not enter). Coupling makes the work per bin grow as N² in principle; the design
   (lag features) and per-unit work grow as N.
2. R-GLM recurrence ``x_t = u_t + R x_{t-1}`` (:func:`neurorec.families.glm.rglm.linear_recurrence`)
   forward + backward, float64, vs latent dim N, T and batch. Each step is a
   (batch × N) @ (N × N) GEMM, ``2·batch·N²`` flops forward and twice that backward; the
   fraction of the measured fp64 matmul peak (``matmul_peak.py``) is printed for the largest
   case. Peer: the same recurrence as ``torch.nn.RNN`` (``nonlinearity="relu"`` on a
   positive input, bias off, which is then linear) on identical inputs, ratio printed.

Usage::

    python benchmarks/scaling.py [--threads 1] [--device cpu] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

from neurorec.data import bin_trials
from neurorec.datasets import load
from neurorec.families import GLM
from neurorec.families.glm.rglm import linear_recurrence
from neurorec.families.glm.spec import GLMSpec
from neurorec.workflows.pipeline import resolve_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matmul_peak import peak_flops


def exponent(sizes: list[int], costs: list[float]) -> float:
    """Slope of log(cost) against log(size)."""
    return float(np.polyfit(np.log(sizes), np.log(costs), 1)[0])


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# ------------------------------------------------------------------------------------ GLM
def glm_seconds_per_iter(rec, n_units: int, n_bins: int, n_trials: int, iters: int,
                         device: str, repeats: int) -> float:
    data = bin_trials(rec, 0.01, seed=0, window=(0.0, n_bins * 0.01))
    train = data.subset(~data.is_test)
    idx = np.arange(n_trials) % len(train.counts)  # more trials than recorded: repeat them
    train = dataclasses.replace(
        train, counts=train.counts[idx][:, :, :n_units], condition=train.condition[idx],
        is_test=train.is_test[idx], unit_ids=train.unit_ids[:n_units],
        stimulus=None if train.stimulus is None else train.stimulus[idx])
    spec = GLMSpec(coupling={"enabled": True}, penalty={"l2": 1e-4},
                   fit={"max_iter": iters, "tol": 1e-30, "early_stopping": False,
                        "newton_polish": False})
    per_iter = []
    for _ in range(repeats):
        model = GLM(spec, device=device)
        start = time.perf_counter()
        model.fit(train, progress=False)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        per_iter.append((time.perf_counter() - start) / max(1, model.fit_report_.n_iter))
    return min(per_iter)


def glm_section(args, device: str) -> dict:
    rec = load("v1_gratings:0")  # 38 units, 208 trials (166 training), 90 bins of 10 ms
    iters = 5 if args.quick else 15
    base = {"n_units": 16, "n_bins": 90, "n_trials": 64}
    axes = {
        "n_units": [4, 8, 16, 32] if not args.quick else [4, 8, 16],
        "n_bins": [23, 45, 90] if not args.quick else [30, 90],
        "n_trials": [32, 64, 128, 256] if not args.quick else [32, 64, 128],
    }
    print(f"\n1. GLM fit (stimulus + history + coupling), v1_gratings:0, seconds per L-BFGS "
          f"iteration ({iters} iterations per fit, best of {args.repeats}); base case "
          f"{base}")
    out = {}
    for axis, values in axes.items():
        costs = []
        for v in values:
            case = {**base, axis: v}
            costs.append(glm_seconds_per_iter(rec, case["n_units"], case["n_bins"],
                                              case["n_trials"], iters, device, args.repeats))
            print(f"  {axis}={v:<5} {costs[-1] * 1e3:9.2f} ms/iter")
        p = exponent(values, costs)
        out[axis] = {"sizes": values, "seconds_per_iter": costs, "exponent": p}
        print(f"  GLM fit exponent vs {axis}: {p:.2f}")
    return out


# ------------------------------------------------------------------------------------ R-GLM
def recurrence_cost(batch: int, n_bins: int, dim: int, repeats: int, device: str) -> float:
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(batch, n_bins, dim, generator=gen, dtype=torch.float64).to(device)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    R = (0.9 * q).to(device).requires_grad_(True)

    def step():
        linear_recurrence(u, R).sum().backward()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    step()
    return best(step, repeats)


def rnn_peer_cost(batch: int, n_bins: int, dim: int, repeats: int, device: str) -> float:
    """torch.nn.RNN (relu, bias off) forward + backward on a positive input and a
    non-negative recurrence: every pre-activation stays ≥ 0, so it computes the same linear
    recurrence."""
    rnn = torch.nn.RNN(dim, dim, nonlinearity="relu", bias=False, batch_first=True,
                       dtype=torch.float64).to(device)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.eye(dim, dtype=torch.float64))
        rnn.weight_hh_l0.copy_(torch.full((dim, dim), 0.9 / dim, dtype=torch.float64))
    gen = torch.Generator().manual_seed(0)
    u = torch.rand(batch, n_bins, dim, generator=gen, dtype=torch.float64).to(device)

    def step():
        rnn(u)[0].sum().backward()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    step()
    return best(step, repeats)


def check_same(dim: int = 6) -> float:
    """max |neurorec − nn.RNN| on the same non-negative recurrence (they must agree)."""
    gen = torch.Generator().manual_seed(1)
    u = torch.rand(3, 20, dim, generator=gen, dtype=torch.float64)
    R = torch.full((dim, dim), 0.9 / dim, dtype=torch.float64)
    rnn = torch.nn.RNN(dim, dim, nonlinearity="relu", bias=False, batch_first=True,
                       dtype=torch.float64)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.eye(dim, dtype=torch.float64))
        rnn.weight_hh_l0.copy_(R)
        return float((linear_recurrence(u, R) - rnn(u)[0]).abs().max())


def rglm_section(args, device: str) -> dict:
    base = {"batch": 64, "n_bins": 90, "dim": 64}
    axes = {
        "dim": [16, 64, 256] if args.quick else [16, 32, 64, 128, 256, 512],
        "n_bins": [45, 90, 180] if args.quick else [45, 90, 180, 360],
        "batch": [16, 64, 256] if args.quick else [16, 64, 256, 1024],
    }
    print(f"\n2. R-GLM recurrence x_t = u_t + R x_(t-1), forward + backward, float64, best of "
          f"{args.repeats}; base case {base}; max |neurorec − nn.RNN| on the same recurrence: "
          f"{check_same():.1e}")
    out = {}
    for axis, values in axes.items():
        costs = []
        for v in values:
            case = {**base, axis: v}
            costs.append(recurrence_cost(case["batch"], case["n_bins"], case["dim"],
                                         args.repeats, device))
            print(f"  {axis}={v:<5} {costs[-1] * 1e3:9.2f} ms")
        p = exponent(values, costs)
        out[axis] = {"sizes": values, "seconds": costs, "exponent": p}
        print(f"  R-GLM recurrence exponent vs {axis}: {p:.2f}")
    big = {**base, "dim": axes["dim"][-1], "batch": axes["batch"][-1]}
    t_ours = recurrence_cost(big["batch"], big["n_bins"], big["dim"], args.repeats, device)
    t_rnn = rnn_peer_cost(big["batch"], big["n_bins"], big["dim"], args.repeats, device)
    flops = 3 * 2 * big["batch"] * big["dim"] ** 2 * big["n_bins"]  # forward + 2 backward GEMMs
    peak = peak_flops("float64", device)
    out["largest"] = {**big, "seconds": t_ours, "nn_rnn_seconds": t_rnn,
                      "gflops": flops / t_ours / 1e9, "peak_gflops": peak / 1e9}
    print(f"  largest case {big}: neurorec {t_ours * 1e3:.1f} ms, nn.RNN {t_rnn * 1e3:.1f} ms; "
          f"ratio nn.RNN / neurorec recurrence: {t_rnn / t_ours:.2f}")
    print(f"  {flops / t_ours / 1e9:.1f} GFLOP/s; fraction of fp64 matmul peak "
          f"({peak / 1e9:.1f} GFLOP/s): {flops / t_ours / peak:.2f}")
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer sizes, fewer iterations")
    ap.add_argument("--skip-glm", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats = min(args.repeats, 2)
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} torch threads")
    results = {"device": device, "threads": args.threads}
    if not args.skip_glm:
        results["glm"] = glm_section(args, device)
    results["rglm_recurrence"] = rglm_section(args, device)
    return results


if __name__ == "__main__":
    main()
