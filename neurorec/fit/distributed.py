"""Units spread over a Dask cluster: the batched Newton GLM fit split by units.

Given the design, a GLM's units are independent regressions (history, coupling and in-bin
columns read the *observed* counts): :func:`~neurorec.fit.newton.fit_batched_glm` on a subset
of units gives those units' coefficients whatever the other units are. So the units can be
cut into contiguous chunks, each chunk fitted as a task on a worker, and the results stacked.

Bit for bit. Float sums depend on the shapes a BLAS call sees and on the thread count (the
batched fit of 16 V1 units differs from the two 8-unit halves by ~1e-14, and 1 vs 2 torch
threads by ~1e-7 after the Newton iterations diverge in the last bits), so a split fit is
defined by its partition and its thread count: :class:`UnitSplit` fits every chunk with
``threads`` torch threads, in-process (``client=None``) or on the cluster, and the two give
identical coefficients (``tests/test_scale.py``).

Use: ``with unit_split(UnitSplit(client, units_per_task=8)): model.fit(train)`` — every
batched Newton fit inside (the GLM's, the R-GLM's warm start) goes through
:func:`fit_batched_glm_split`; outside such a block it is :func:`fit_batched_glm` unchanged.
``neurorec fit --workers N`` (a ``LocalCluster`` on 127.0.0.1) or ``--scheduler ADDR`` sets it
up (:func:`open_client`).

Sessions: the session GLM (:class:`~neurorec.families.glm.session.SessionGLM`) already fits
its units in independent chunks (32 units, the row-sparse Newton of
:mod:`neurorec.fit.sparse_newton`); :func:`map_chunks` sends those same chunks to the workers
(the shared design scattered once), so the partition is the local fit's and only the BLAS
thread count can change the bits: each chunk runs with ``UnitSplit.blas_threads`` BLAS
threads (None: as many as the calling process has), and the cluster's coefficients equal the
local fit's at that thread count exactly.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from neurorec.fit.newton import NewtonResult, fit_batched_glm

__all__ = ["UnitSplit", "current_split", "fit_batched_glm_split", "map_chunks", "open_client",
           "unit_chunks", "unit_split"]

_CURRENT: contextvars.ContextVar[UnitSplit | None] = contextvars.ContextVar(
    "neurorec_unit_split", default=None)


def unit_chunks(n_units: int, units_per_task: int) -> list[slice]:
    """Contiguous unit ranges of at most ``units_per_task`` units covering ``n_units``."""
    if units_per_task < 1:
        raise ValueError(f"units_per_task: must be >= 1, got {units_per_task}")
    return [slice(s, min(s + units_per_task, n_units))
            for s in range(0, n_units, units_per_task)]


@dataclass
class UnitSplit:
    """How a batched fit is split by units.

    Attributes:
        client: a ``distributed.Client`` (tasks run on its workers) or None (the same chunks
            in this process, one after another).
        units_per_task: units per chunk; None: ``ceil(n_units / n_workers)`` (one chunk per
            worker; in-process: one chunk).
        threads: torch threads each chunk runs with (here and on the workers): results are
            bit-identical only at equal thread counts.
        blas_threads: BLAS (numpy) threads each :func:`map_chunks` task runs with on the
            workers; None: the calling process's count when the tasks are sent (so the
            cluster reproduces this process's local fit bit for bit).
    """

    client: object | None = None
    units_per_task: int | None = None
    threads: int = 1
    blas_threads: int | None = None
    tasks_run: list[int] = field(default_factory=list)  # chunks per fit, for reports/tests

    def n_workers(self) -> int:
        if self.client is None:
            return 1
        return max(1, len(self.client.scheduler_info()["workers"]))

    def chunks(self, n_units: int) -> list[slice]:
        per = self.units_per_task or math.ceil(n_units / self.n_workers())
        return unit_chunks(n_units, max(1, per))


def current_split() -> UnitSplit | None:
    """The :class:`UnitSplit` of the enclosing :func:`unit_split` block, or None."""
    return _CURRENT.get()


@contextlib.contextmanager
def unit_split(split: UnitSplit | None) -> Iterator[UnitSplit | None]:
    """Route the batched Newton fits inside the block through ``split`` (None: no split)."""
    token = _CURRENT.set(split)
    try:
        yield split
    finally:
        _CURRENT.reset(token)


# per-unit arguments of fit_batched_glm and the axis that indexes units
_PER_UNIT_AXIS = {"Y": 1, "offset": 1, "unit_X": 1, "mask": 0, "coef0": 0}


def _take(name: str, value, sl: slice):
    if value is None:
        return None
    t = torch.as_tensor(value)
    if name == "l2":
        return t[sl] if t.ndim == 2 else t
    axis = _PER_UNIT_AXIS[name]
    return t[sl] if axis == 0 else t[:, sl]


def _fit_chunk(X: torch.Tensor, shared: dict, per_unit: dict, threads: int) -> dict:
    """One chunk's fit at ``threads`` torch threads (restored afterwards); plain tensors back."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        res = fit_batched_glm(X, per_unit.pop("Y"), **shared, **per_unit)
    finally:
        torch.set_num_threads(before)
    return {"coef": res.coef, "n_iter": res.n_iter, "converged": res.converged,
            "objective": res.objective, "grad_norm": res.grad_norm, "history": res.history}


def fit_batched_glm_split(X: torch.Tensor, Y: torch.Tensor, **kwargs) -> NewtonResult:
    """:func:`~neurorec.fit.newton.fit_batched_glm` split by units per :func:`current_split`.

    Without a split this *is* ``fit_batched_glm(X, Y, **kwargs)``. With one, the units are
    cut into :meth:`UnitSplit.chunks`; each chunk is fitted with its own columns of ``Y``,
    ``offset``, ``unit_X`` and rows of ``l2``, ``mask``, ``coef0``; the design ``X`` and the
    stimulus block are sent to each worker once. ``history`` of the result is the sum over
    chunks of their per-iteration objectives (chunks that stopped earlier hold their last
    value); ``n_iter`` the largest chunk's.
    """
    split = current_split()
    if split is None:
        return fit_batched_glm(X, Y, **kwargs)
    n_units = torch.as_tensor(Y).shape[1]
    chunks = split.chunks(n_units)
    shared = {k: v for k, v in kwargs.items() if k not in _PER_UNIT_AXIS and k != "l2"}
    l2 = kwargs.get("l2", 0.0)
    per_unit_args = {k: v for k, v in kwargs.items() if k in _PER_UNIT_AXIS}

    def args_of(sl: slice) -> dict:
        out = {k: _take(k, v, sl) for k, v in per_unit_args.items()}
        out["Y"] = _take("Y", Y, sl)
        out["l2"] = _take("l2", l2, sl) if torch.is_tensor(l2) else l2
        return out

    if split.client is None:
        results = [_fit_chunk(X, dict(shared), args_of(sl), split.threads) for sl in chunks]
    else:
        client = split.client
        X_remote = client.scatter(X, broadcast=True)
        shared_remote = client.scatter([shared], broadcast=True)[0]
        futures = [client.submit(_fit_chunk, X_remote, shared_remote, args_of(sl),
                                 split.threads, pure=False) for sl in chunks]
        results = client.gather(futures)
    split.tasks_run.append(len(chunks))
    n_hist = max(len(r["history"]) for r in results)
    history = [sum(r["history"][min(i, len(r["history"]) - 1)] for r in results)
               for i in range(n_hist)]
    return NewtonResult(
        coef=torch.cat([r["coef"] for r in results]),
        n_iter=max(r["n_iter"] for r in results),
        converged=torch.cat([r["converged"] for r in results]),
        objective=torch.cat([r["objective"] for r in results]),
        grad_norm=torch.cat([r["grad_norm"] for r in results]),
        history=history)


T = TypeVar("T")
R = TypeVar("R")


def _blas_threads() -> int | None:
    """This process's BLAS thread count (the largest of its BLAS libraries'), or None."""
    from threadpoolctl import threadpool_info

    counts = [int(p["num_threads"]) for p in threadpool_info() if p.get("user_api") == "blas"]
    return max(counts) if counts else None


def _run_task(fn: Callable[[Any, Any], R], shared: Any, task: Any,
              blas_threads: int | None) -> R:
    """``fn(shared, task)`` with ``blas_threads`` BLAS threads (restored afterwards)."""
    if blas_threads is None:
        return fn(shared, task)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=blas_threads, user_api="blas"):
        return fn(shared, task)


def map_chunks(fn: Callable[[Any, T], R], tasks: Iterable[T], shared: Any = None,
               on_result: Callable[[int, R], None] | None = None,
               in_flight: int | None = None) -> list[R]:
    """``[fn(shared, task) for task in tasks]``, on the current split's cluster if there is one.

    Without a :func:`unit_split` block, or with a split whose ``client`` is None, this is the
    plain loop in this process (nothing changed: no thread settings, no copies). With a
    cluster, ``shared`` (e.g. a design every task reads) is scattered to every worker once,
    the tasks are submitted as they are drawn from ``tasks`` (a generator builds each
    payload only when it is sent: at most ``in_flight`` — default twice the workers — are
    held at a time) and each runs with :attr:`UnitSplit.blas_threads` BLAS threads.

    Args:
        fn: a module-level function (pickled to the workers) of ``(shared, task)``.
        tasks: the tasks' payloads, in order.
        on_result: called here with ``(index, result)`` as each task finishes (in this
            process: in order; on a cluster: in the order they finish), e.g. to checkpoint.
    Returns:
        The results in the order of ``tasks``.
    """
    split = current_split()
    if split is None or split.client is None:
        results = []
        for i, task in enumerate(tasks):
            results.append(fn(shared, task))
            if on_result is not None:
                on_result(i, results[-1])
        if split is not None:
            split.tasks_run.append(len(results))
        return results
    from distributed import as_completed

    client = split.client
    threads = split.blas_threads if split.blas_threads is not None else _blas_threads()
    shared_remote = client.scatter([shared], broadcast=True)[0]
    limit = in_flight or 2 * split.n_workers()
    todo = enumerate(tasks)
    index: dict[str, int] = {}
    out: dict[int, R] = {}
    running = as_completed()

    def submit_next() -> bool:
        nxt = next(todo, None)
        if nxt is None:
            return False
        future = client.submit(_run_task, fn, shared_remote, nxt[1], threads, pure=False)
        index[future.key] = nxt[0]
        running.add(future)
        return True

    for _ in range(limit):
        if not submit_next():
            break
    for future in running:
        i = index.pop(future.key)
        out[i] = future.result()
        future.release()
        if on_result is not None:
            on_result(i, out[i])
        submit_next()
    split.tasks_run.append(len(out))
    return [out[i] for i in range(len(out))]


@contextlib.contextmanager
def open_client(workers: int | None = None, scheduler: str | None = None,
                timeout_s: float = 30.0, processes: bool = True) -> Iterator[object]:
    """A ``distributed.Client``: to the scheduler at ``scheduler``, or to a ``LocalCluster`` of
    ``workers`` single-threaded worker processes on 127.0.0.1 (no dashboard); closed on exit.
    ``processes=False``: the workers are threads of this process (tests).

    Raises:
        OSError / TimeoutError: the scheduler does not answer within ``timeout_s``.
    """
    from distributed import Client, LocalCluster

    cluster = None
    if scheduler is None:
        where = {"host": "127.0.0.1"} if processes else {}  # threads: in-process transport
        cluster = LocalCluster(n_workers=workers or 1, threads_per_worker=1, processes=processes,
                               dashboard_address=None, silence_logs=logging.CRITICAL, **where)
        client = Client(cluster)
    else:
        client = Client(scheduler, timeout=f"{timeout_s}s")
        if workers:
            client.wait_for_workers(workers, timeout=timeout_s)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
