"""The machine's measured matmul throughput (FLOP/s) in float32 and float64: the ceiling other
benchmarks divide by to report "fraction of peak" for GEMM-bound work.

Torch square GEMMs ``C = A @ B`` (``2 n³`` flops each) at a few sizes under a thread limit; the
peak is the best rate over sizes and repeats. numpy's BLAS runs the same products in the same
process as the peer, so the ratio ``torch / numpy`` says whether torch reaches the machine's
BLAS ceiling.

Reuse from another benchmark (``benchmarks/`` is on ``sys.path`` when a script there runs)::

    from matmul_peak import peak_flops
    peak = peak_flops("float64", threads=1)          # FLOP/s, measured once per process
    print(f"fraction of fp64 matmul peak: {flops / elapsed / peak:.2f}")

Usage::

    python benchmarks/matmul_peak.py [--threads 2] [--device cpu] [--sizes 256 512 1024]
                                     [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np
import torch

DEFAULT_SIZES = (256, 512, 1024, 2048)
QUICK_SIZES = (256, 512, 1024)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def torch_gemm_rate(n: int, dtype: torch.dtype, device: str = "cpu", repeats: int = 5,
                    min_time_s: float = 0.05) -> float:
    """Best FLOP/s of ``(n×n) @ (n×n)`` in torch over ``repeats`` timed batches."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen, dtype=dtype).to(device)
    b = torch.randn(n, n, generator=gen, dtype=dtype).to(device)
    c = a @ b  # warm-up: thread pool, allocator, cuBLAS handle
    _sync(device)
    inner = 1
    while True:  # enough products per batch that the timer's resolution does not matter
        start = time.perf_counter()
        for _ in range(inner):
            c = a @ b
        _sync(device)
        if time.perf_counter() - start > min_time_s or inner > 1 << 14:
            break
        inner *= 2
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            c = a @ b
        _sync(device)
        best = max(best, 2.0 * n**3 * inner / (time.perf_counter() - start))
    del c
    return best


def numpy_gemm_rate(n: int, dtype: type, repeats: int = 5, min_time_s: float = 0.05) -> float:
    """Best FLOP/s of ``(n×n) @ (n×n)`` in numpy (its BLAS), same protocol as torch."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)).astype(dtype), rng.standard_normal((n, n)).astype(dtype)
    inner = 1
    while True:
        start = time.perf_counter()
        for _ in range(inner):
            a @ b
        if time.perf_counter() - start > min_time_s or inner > 1 << 14:
            break
        inner *= 2
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            a @ b
        best = max(best, 2.0 * n**3 * inner / (time.perf_counter() - start))
    return best


@functools.cache
def peak_flops(dtype: str = "float64", device: str = "cpu", threads: int | None = None,
               sizes: tuple[int, ...] = QUICK_SIZES, repeats: int = 3) -> float:
    """Measured torch matmul peak (FLOP/s) for ``dtype`` on ``device``; cached per process.

    ``threads``: torch threads while measuring (restored afterwards); None keeps the current
    setting, which is what the calling benchmark uses.
    """
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return max(torch_gemm_rate(n, getattr(torch, dtype), device, repeats) for n in sizes)
    finally:
        torch.set_num_threads(before)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch and BLAS threads")
    ap.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    ap.add_argument("--sizes", type=int, nargs="+", default=None)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="sizes 256-1024, 3 repeats")
    args = ap.parse_args(argv)
    sizes = tuple(args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES))
    repeats = 3 if args.quick else args.repeats
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: torch.cuda.is_available() is False here")
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    name = (torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
            else f"{torch.get_num_threads()} torch threads")
    print(f"square GEMM, best of {repeats} batches; device {args.device} ({name}); "
          f"torch {torch.__version__}, numpy {np.__version__}")
    print(f"{'n':>6} {'dtype':>8} {'torch GFLOP/s':>14} {'numpy GFLOP/s':>14} {'torch/numpy':>12}")
    results: dict = {"threads": args.threads, "device": args.device, "rows": []}
    with threadpool_limits(args.threads):
        for dtype in ("float32", "float64"):
            for n in sizes:
                t = torch_gemm_rate(n, getattr(torch, dtype), args.device, repeats)
                npr = numpy_gemm_rate(n, getattr(np, dtype), repeats)
                results["rows"].append({"n": n, "dtype": dtype, "torch": t, "numpy": npr})
                print(f"{n:>6} {dtype:>8} {t / 1e9:>14.1f} {npr / 1e9:>14.1f} {t / npr:>12.2f}")
    for dtype in ("float32", "float64"):
        rows = [r for r in results["rows"] if r["dtype"] == dtype]
        best_t, best_np = max(r["torch"] for r in rows), max(r["numpy"] for r in rows)
        results[f"peak_{dtype}"] = best_t
        print(f"peak {dtype}: {best_t / 1e9:.1f} GFLOP/s (torch), numpy {best_np / 1e9:.1f}; "
              f"ratio torch / numpy {dtype}: {best_t / best_np:.2f}")
    print(f"ratio fp32 / fp64 peak: {results['peak_float32'] / results['peak_float64']:.2f}")
    return results


if __name__ == "__main__":
    main()
