"""Continuous-time rate RNN simulation speed: torch vs Brian 2 vs a plain numpy loop, steps/s.

The network is the `ctrnn` model (study settings: ReLU, τ = 100 ms, Δt = 10 ms, zero diagonal,
σ = 0 so every backend computes the same deterministic map) with one input channel driven by a
random signal ``u`` (T, B): one Euler step for a batch of B trials is

    r ← (1 − α) r + α f(r W_recᵀ + u_t w_inᵀ + b),      α = Δt / τ,

a (B × N) @ (N × N) product (``2·B·N²`` flops) plus O(B·N) element-wise work. All backends run
float64 (Brian 2's precision) from the same weights and inputs, record only the final state
(monitoring every unit at N = 6400, B = 64, 1000 steps would be 3.3 GB), and the final states are
compared (max abs difference printed). Subnormal floats are flushed to zero in every backend
(``torch.set_flush_denormal``, which sets the FTZ/DAZ bits numpy and Brian's Cython code also
obey; the standalone binary links with ``-ffast-math``): silent units otherwise decay into
subnormals and each step gets ~35× slower.

- **torch**: the model's own step (``CTRNN.step_map``'s maths) in a
  Python loop under ``torch.no_grad``; float32 is timed too.
- **numpy**: the same loop in numpy.
- **brian2 runtime** (Cython): the backend's own network
  (:func:`neurorec.families.ctrnn.brian2.build_network`, B·N units), the recurrent input either
  from a ``network_operation`` (numpy mat-mul; the backend's default on the runtime device)
  or from ``Synapses`` with a summed variable (block-diagonal, B·N·(N−1) synapses: skipped
  above ``--max-synapses``).
- **brian2 cpp_standalone**: the Synapses network built and run in a child process (a device
  must be set before any Brian object exists); the time is the C++ run's own
  (``device._last_run_time``), compilation excluded. Skipped above ``--max-synapses`` too, or
  with ``--no-standalone``.

Brian 2 runtime is timed after a 1-step warm-up run of the same network (code generation and
Cython compilation excluded), less the fixed cost of a ``run()`` call (median of three timed
1-step runs; not subtracted when it is > 90 % of the run). The torch step's throughput is
divided by the machine's measured fp64 matmul peak (``matmul_peak.py``) for "fraction of fp64
matmul peak".

Sparse W_rec: at N = 1600 (``--sparse-n``), 5 % non-zero weights (the spec's ``density``),
torch CSR ``torch.sparse.mm`` (COO is slower than dense here) vs the same weights dense,
float32 and float64; the sparse step keeps rates as (N, B) so that no transpose is needed.

Usage::

    python benchmarks/ctrnn_sim.py [--sizes 256 1600 6400] [--batch 64] [--steps 1000]
                                   [--threads 1] [--device cpu] [--no-brian2]
                                   [--no-standalone] [--max-synapses 2e7] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from neurorec.families.ctrnn.model import activation, init_weights
from neurorec.families.ctrnn.spec import CTRNNSpec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matmul_peak import peak_flops

NONLINEARITY = "relu"


def network(n: int, n_batch: int, n_steps: int, density: float = 1.0, seed: int = 0
            ) -> tuple[CTRNNSpec, dict[str, np.ndarray], np.ndarray]:
    """Spec, float64 weights (``w_rec`` masked, ``w_in`` (N,), ``b`` (N,)) and inputs u (T, B)."""
    spec = CTRNNSpec(n_units=n, sigma=0.0, nonlinearity=NONLINEARITY, density=density,
                     n_inputs=1, n_outputs=1)
    p = init_weights(spec, 1, 1, seed)
    weights = {"w_rec": p["w_rec_raw"] * p["mask"], "w_in": p["w_in"][:, 0],
               "b": p["b"] + 0.1}  # a small positive bias keeps ReLU units from all going silent
    u = np.random.default_rng([seed, 1]).random((n_steps, n_batch))
    return spec, weights, u


def r_initial(n: int, n_batch: int) -> np.ndarray:
    return np.full((n_batch, n), 0.1)


# ------------------------------------------------------------------------------ backends
def run_torch(spec, weights, u, device: str, dtype: torch.dtype) -> tuple[float, np.ndarray]:
    """Seconds for all steps and the final state (B, N)."""
    alpha, f = spec.alpha, activation(spec.nonlinearity)
    w_t = torch.as_tensor(weights["w_rec"].T, dtype=dtype, device=device).contiguous()
    w_in = torch.as_tensor(weights["w_in"], dtype=dtype, device=device)
    b = torch.as_tensor(weights["b"], dtype=dtype, device=device)
    u_t = torch.as_tensor(u, dtype=dtype, device=device)
    r0 = torch.as_tensor(r_initial(spec.n_units, u.shape[1]), dtype=dtype, device=device)

    def loop(n_steps: int) -> torch.Tensor:
        r = r0
        with torch.no_grad():
            for t in range(n_steps):
                x = r @ w_t + u_t[t, :, None] * w_in + b
                r = (1 - alpha) * r + alpha * f(x)
        _sync(device)
        return r

    loop(min(5, len(u)))  # warm-up
    start = time.perf_counter()
    r = loop(len(u))
    return time.perf_counter() - start, r.double().cpu().numpy()


def run_numpy(spec, weights, u) -> tuple[float, np.ndarray]:
    alpha = spec.alpha
    w_t = np.ascontiguousarray(weights["w_rec"].T)
    w_in, b = weights["w_in"], weights["b"]
    start = time.perf_counter()
    r = r_initial(spec.n_units, u.shape[1])
    for t in range(len(u)):
        x = r @ w_t + u[t, :, None] * w_in + b
        r = (1 - alpha) * r + alpha * np.maximum(x, 0.0)
    return time.perf_counter() - start, r


def _brian2_network(spec, weights, u, recurrent: str, standalone: bool = False):
    """The backend's Brian 2 network (no monitor) for inputs u (T, B) and its group."""
    import brian2 as b2

    from neurorec.families.ctrnn.brian2 import build_network

    lib_weights = {"w_rec": weights["w_rec"], "w_in": weights["w_in"][:, None], "b": weights["b"]}
    inputs = np.ascontiguousarray(u.T)[:, :, None]  # (B, T, 1)
    net, group, _ = build_network(spec, lib_weights, inputs, recurrent,
                                  r0=r_initial(spec.n_units, u.shape[1]), record=False,
                                  standalone=standalone)
    return net, group, spec.dt * b2.second


def run_brian2_runtime(spec, weights, u, recurrent: str) -> tuple[float, np.ndarray]:
    """Seconds for ``len(u)`` steps after a 1-step warm-up run (code generation excluded),
    net of the fixed cost of one ``run()`` call (measured as a 1-step run)."""
    import brian2 as b2

    from neurorec.families.glm.brian2 import _brian2_settings

    b2.start_scope()
    with _brian2_settings():
        net, group, dt = _brian2_network(spec, weights, u, recurrent)
        net.store()
        net.run(dt, namespace={})  # compile and warm up
        net.restore()
        one_step = []  # the fixed cost of a run() call: median of three 1-step runs
        for _ in range(3):
            start = time.perf_counter()
            net.run(dt, namespace={})
            one_step.append(time.perf_counter() - start)
            net.restore()
        overhead = float(np.median(one_step))
        start = time.perf_counter()
        net.run(len(u) * dt, namespace={})
        elapsed = time.perf_counter() - start
    # per-step cost: the run minus a 1-step run's fixed set-up (~0.1-1 s per run() call); when
    # the difference is lost in the timing noise, the plain average
    if elapsed - overhead > 0.1 * elapsed:
        per_step = (elapsed - overhead) / max(len(u) - 1, 1)
    else:
        per_step = elapsed / len(u)
    return per_step * len(u), np.asarray(group.r_[:]).reshape(u.shape[1], spec.n_units)


def run_brian2_standalone(spec, weights, u, build: Path) -> tuple[float, np.ndarray]:
    """Run time of the C++ simulation loop, in a child process (this script's ``--child``)."""
    with tempfile.TemporaryDirectory(prefix="neurorec_ctrnn_bench_") as tmp:
        job = Path(tmp) / "job.npz"
        np.savez(job, u=u, spec=spec.model_dump_json(), **weights)
        proc = subprocess.run([sys.executable, __file__, "--child", str(job), str(build)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"cpp_standalone child failed:\n{proc.stderr[-3000:]}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        return out["seconds"], np.load(Path(tmp) / "r.npy")


def _standalone_child(job: str, build: str) -> None:
    import brian2 as b2

    data = np.load(job)
    spec = CTRNNSpec.model_validate_json(str(data["spec"]))
    weights = {k: data[k] for k in ("w_rec", "w_in", "b")}
    b2.set_device("cpp_standalone", directory=build, build_on_run=True)
    b2.prefs.codegen.cpp.extra_link_args = ["-ffast-math"]  # FTZ/DAZ: subnormals flushed
    net, group, dt = _brian2_network(spec, weights, data["u"], "synapses", standalone=True)
    net.run(len(data["u"]) * dt, namespace={})
    np.save(Path(job).parent / "r.npy",
            np.asarray(group.r_[:]).reshape(data["u"].shape[1], spec.n_units))
    print(json.dumps({"seconds": float(b2.device._last_run_time)}))


# --------------------------------------------------------------------------- sparse vs dense
def sparse_vs_dense(n: int, n_batch: int, n_steps: int, density: float, device: str
                    ) -> None:
    spec, weights, u = network(n, n_batch, n_steps, density=density)
    nnz = int((weights["w_rec"] != 0).sum())
    print(f"\nsparse W_rec: N = {n}, batch {n_batch}, {n_steps} steps, {nnz} non-zero "
          f"({nnz / n**2:.1%}), CSR torch.sparse.mm vs the same weights dense", flush=True)
    alpha = spec.alpha
    for dtype in (torch.float32, torch.float64):
        w = torch.as_tensor(weights["w_rec"], dtype=dtype, device=device)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            w_csr = w.to_sparse_csr()
        w_in = torch.as_tensor(weights["w_in"], dtype=dtype, device=device)[:, None]
        b = torch.as_tensor(weights["b"], dtype=dtype, device=device)[:, None]
        u_t = torch.as_tensor(u, dtype=dtype, device=device)
        r0 = torch.as_tensor(r_initial(n, n_batch).T, dtype=dtype, device=device)

        times, finals = {}, {}
        for name, mat in (("dense", w), ("csr", w_csr)):
            _relu_loop(mat, r0, w_in, b, u_t[:5], alpha, device)  # warm-up
            start = time.perf_counter()
            finals[name] = _relu_loop(mat, r0, w_in, b, u_t, alpha, device)
            times[name] = time.perf_counter() - start
        diff = (finals["dense"] - finals["csr"]).abs().max().item()
        # the dense step as the torch benchmark above runs it, rates (B, N): r @ W_recᵀ
        t_bn, _ = run_torch(spec, weights, u, device, dtype)
        tag = str(dtype).replace("torch.", "")
        print(f"  {tag}: dense W @ r (N, B) {n_steps / times['dense']:.0f} steps/s, dense "
              f"r @ Wᵀ (B, N) {n_steps / t_bn:.0f} steps/s, CSR {n_steps / times['csr']:.0f} "
              f"steps/s (max |Δr| {diff:.1e})", flush=True)
        print(f"  ratio sparse CSR / dense steps/s ({tag}, N={n}, same (N, B) layout): "
              f"{times['dense'] / times['csr']:.2f}; vs the faster dense layout: "
              f"{min(times['dense'], t_bn) / times['csr']:.2f}", flush=True)


def _relu_loop(w: torch.Tensor, r0: torch.Tensor, w_in: torch.Tensor, b: torch.Tensor,
               u: torch.Tensor, alpha: float, device: str) -> torch.Tensor:
    """All steps with rates as (N, B), so ``W r`` needs no transpose; w dense or CSR."""
    mm = torch.sparse.mm if w.layout == torch.sparse_csr else torch.mm
    r = r0
    with torch.no_grad():
        for t in range(len(u)):
            r = (1 - alpha) * r + alpha * torch.relu(mm(w, r) + w_in * u[t] + b)
    _sync(device)
    return r


# ------------------------------------------------------------------------------------ main
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_size(n: int, args, peak: float) -> None:
    spec, weights, u = network(n, args.batch, args.steps)
    n_syn = args.batch * int((weights["w_rec"] != 0).sum())
    flops = 2.0 * args.batch * n * n * args.steps
    print(f"\nN = {n}, batch {args.batch}, {args.steps} steps ({spec.nonlinearity}, "
          f"float64 unless noted)", flush=True)
    rate: dict[str, float] = {}
    final: dict[str, np.ndarray] = {}

    def record(name: str, seconds: float, r: np.ndarray, note: str = "") -> None:
        rate[name] = args.steps / seconds
        final[name] = r
        print(f"  {name:34s} {rate[name]:10.1f} steps/s  ({seconds / args.steps * 1e3:.3f} "
              f"ms/step){note}", flush=True)

    seconds, r = run_torch(spec, weights, u, args.device, torch.float64)
    record("torch", seconds, r, f"; {flops / seconds / 1e9:.1f} GFLOP/s")
    seconds32, _ = run_torch(spec, weights, u, args.device, torch.float32)
    rate["torch float32"] = args.steps / seconds32
    print(f"  {'torch float32':34s} {rate['torch float32']:10.1f} steps/s", flush=True)
    record("numpy", *run_numpy(spec, weights, u))

    def peer(name: str, run) -> None:
        # a peer that cannot run on this machine (no compiler, a broken install) is reported,
        # and the torch figures of this size are still printed
        try:
            record(name, *run())
        except Exception as err:
            print(f"  {name}: failed here, skipped ({type(err).__name__}: "
                  f"{str(err).strip().splitlines()[-1] if str(err).strip() else ''})", flush=True)

    if not args.no_brian2:
        # labels avoid the word "operation": it contains "ratio", which run_all.py quotes
        peer("brian2 runtime (network op)",
             lambda: run_brian2_runtime(spec, weights, u, "network_operation"))
        if n_syn <= args.max_synapses:
            peer("brian2 runtime (synapses)",
                 lambda: run_brian2_runtime(spec, weights, u, "synapses"))
        else:
            print(f"  brian2 runtime (synapses): skipped, {n_syn:.2e} synapses > "
                  f"--max-synapses {args.max_synapses:.0e}")
        if args.no_standalone:
            print("  brian2 cpp_standalone: skipped (--no-standalone)")
        elif n_syn <= args.max_synapses:
            with tempfile.TemporaryDirectory(prefix="neurorec_ctrnn_build_") as build:
                peer("brian2 cpp_standalone (synapses)",
                     lambda: run_brian2_standalone(spec, weights, u, Path(build)))
        else:
            print(f"  brian2 cpp_standalone: skipped, {n_syn:.2e} synapses > "
                  f"--max-synapses {args.max_synapses:.0e}")
    worst = max(np.abs(r_other - final["torch"]).max() for r_other in final.values())
    print(f"  max |r_final − r_final(torch)| over backends: {worst:.1e}")
    print(f"  N={n}: torch fp64 {flops / seconds / 1e9:.1f} GFLOP/s; fraction of fp64 matmul "
          f"peak ({peak / 1e9:.0f} GFLOP/s): {flops / seconds / peak:.2f}")
    print(f"  N={n}: ratio torch float32 / float64 steps/s: "
          f"{rate['torch float32'] / rate['torch']:.2f}")
    for name, value in rate.items():
        if name not in ("torch", "torch float32"):
            print(f"  N={n}: ratio torch / {name} steps/s: {rate['torch'] / value:.2f}",
                  flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1600, 6400])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    ap.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    ap.add_argument("--no-brian2", action="store_true", help="skip every Brian 2 run")
    ap.add_argument("--no-standalone", action="store_true", help="skip cpp_standalone")
    ap.add_argument("--max-synapses", type=float, default=2e7,
                    help="skip Brian 2 Synapses runs (runtime and standalone) above this")
    ap.add_argument("--sparse-n", type=int, default=1600)
    ap.add_argument("--density", type=float, default=0.05)
    ap.add_argument("--quick", action="store_true", help="N ∈ {256, 1600}, 100 steps")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.steps = [256, 1600], 100
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("--device cuda: CUDA is not available here")
    if not args.no_brian2:
        try:
            import brian2  # noqa: F401
        except Exception as err:  # not installed, or broken with this numpy
            print(f"brian2 peer: not importable here ({type(err).__name__}: {err}); every "
                  "Brian 2 run is skipped (as with --no-brian2)", flush=True)
            args.no_brian2 = True
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # FTZ/DAZ for this thread: torch, numpy and Brian's Cython
    print(f"ctrnn simulation: torch {torch.__version__}, numpy {np.__version__}, "
          f"device {args.device}, threads {args.threads} (torch.set_num_threads + "
          f"threadpoolctl), denormals flushed", flush=True)
    with threadpool_limits(args.threads):
        peak = peak_flops("float64", args.device, args.threads)
        for n in args.sizes:
            bench_size(n, args, peak)
        sparse_vs_dense(args.sparse_n, args.batch, args.steps, args.density, args.device)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _standalone_child(*sys.argv[2:4])
    else:
        main()
