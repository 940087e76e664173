"""A wall-clock budget for the study pipelines and a process pool that keeps to it.

A pipeline given ``--max-minutes M`` (e.g. on a leased machine) must stop training in time and
still write its report with whatever finished. :class:`Budget` holds the two moments that
matter: ``stop_at``, after which a job stops starting or training (its callback raises
:class:`OutOfTime`), and ``kill_at``, after which the pool's workers still running are
terminated so the report can be written before ``M`` minutes are up.

:func:`run_jobs` runs independent jobs in ``n_jobs`` spawned worker processes (one torch and
one BLAS thread each: the pool already uses the cores; several BLAS threads per process on a
busy machine made a 200×200 QR 13× slower here), or in this process when ``n_jobs`` is 1.
Results come back as they finish; a job that raised is reported with its traceback, not fatal.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class OutOfTime(Exception):
    """Raised inside a job when the budget's ``stop_at`` has passed."""


@dataclass(frozen=True)
class Budget:
    """Wall-clock limits as absolute ``time.time()`` values (None: no limit).

    Attributes:
        stop_at: jobs stop training / are not started after this moment.
        kill_at: workers still running are terminated at this moment.
        started: when the run began.
    """

    stop_at: float | None = None
    kill_at: float | None = None
    started: float = field(default_factory=time.time)

    @classmethod
    def from_minutes(cls, minutes: float | None, reserve_s: float = 60.0,
                     kill_reserve_s: float = 20.0) -> Budget:
        """A budget of ``minutes`` from now: training stops ``reserve_s`` before the end (time
        for the analyses of the last networks and the report), workers are killed
        ``kill_reserve_s`` before it. Both reserves shrink to fit a short budget."""
        now = time.time()
        if minutes is None:
            return cls(None, None, now)
        total = 60.0 * minutes
        reserve = min(reserve_s, 0.25 * total)
        kill = min(kill_reserve_s, 0.1 * total)
        return cls(now + total - reserve, now + total - kill, now)

    def out_of_time(self) -> bool:
        """True once ``stop_at`` has passed."""
        return self.stop_at is not None and time.time() >= self.stop_at

    def check(self, what: str = "") -> None:
        """Raise :class:`OutOfTime` once ``stop_at`` has passed."""
        if self.out_of_time():
            raise OutOfTime(what)

    def elapsed(self) -> float:
        return time.time() - self.started


@dataclass
class JobOutcome:
    """What became of one job: ``status`` is ``done``, ``failed`` (``error`` holds the
    traceback), ``stopped`` (it raised :class:`OutOfTime`; ``error`` says where),
    ``not_started`` or ``killed`` (still running at the budget's ``kill_at``)."""

    key: Hashable
    status: str
    result: Any = None
    error: str = ""
    seconds: float = float("nan")


def limit_threads(n_threads: int = 1) -> None:
    """``n_threads`` torch threads and one BLAS/OpenMP thread in this process."""
    import torch

    torch.set_num_threads(n_threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn's dependency; the environment variables still apply
        return
    threadpool_limits(1)


def _init_worker(budget: Budget, n_threads: int) -> None:
    global _BUDGET
    limit_threads(n_threads)
    _BUDGET = budget


_BUDGET: Budget | None = None


def _call(key: Hashable, fn: Callable[..., Any], args: tuple) -> JobOutcome:
    budget = _BUDGET or Budget()
    if budget.out_of_time():
        return JobOutcome(key, "not_started")
    t0 = time.perf_counter()
    try:
        result = fn(*args)
    except OutOfTime as stop:
        return JobOutcome(key, "stopped", error=str(stop), seconds=time.perf_counter() - t0)
    except Exception:  # reported with its traceback; the other jobs go on
        return JobOutcome(key, "failed", error=traceback.format_exc(),
                          seconds=time.perf_counter() - t0)
    return JobOutcome(key, "done", result, seconds=time.perf_counter() - t0)


def run_jobs(jobs: Sequence[tuple[Hashable, Callable[..., Any], tuple]], n_jobs: int,
             budget: Budget, on_done: Callable[[JobOutcome], None] | None = None,
             poll_s: float = 0.5, n_threads: int = 1) -> dict[Hashable, JobOutcome]:
    """Run ``jobs`` ``(key, function, args)``; returns ``key -> JobOutcome`` in job order.

    ``n_jobs`` 1 runs them here, in order (jobs left when ``stop_at`` has passed are
    ``not_started``); more starts that many ``spawn`` workers (functions and arguments must
    pickle; a function of a script run as ``python script.py`` does). Each job function may
    call :func:`current_budget` ``.check()`` to stop early. ``on_done`` is called in this
    process as each job finishes (progress lines). ``n_threads``: torch threads per worker
    (numpy's BLAS keeps one).
    """
    global _BUDGET
    outcomes: dict[Hashable, JobOutcome] = {}
    if n_jobs <= 1 or len(jobs) <= 1:
        previous, _BUDGET = _BUDGET, budget
        try:
            for key, fn, args in jobs:
                outcomes[key] = _call(key, fn, args)
                if on_done is not None:
                    on_done(outcomes[key])
        finally:
            _BUDGET = previous
        return {key: outcomes[key] for key, _, _ in jobs}
    saved = {v: os.environ.get(v) for v in THREAD_VARS}
    os.environ.update({v: "1" for v in THREAD_VARS})  # read by numpy's BLAS in each child
    try:
        ctx = multiprocessing.get_context("spawn")
        pool = ctx.Pool(min(n_jobs, len(jobs)), initializer=_init_worker,
                        initargs=(budget, n_threads))
    finally:
        for v, value in saved.items():
            if value is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = value
    killed = False
    try:
        pending = {key: pool.apply_async(_call, (key, fn, args)) for key, fn, args in jobs}
        while pending:
            for key in [k for k, r in pending.items() if r.ready()]:
                outcomes[key] = pending.pop(key).get()
                if on_done is not None:
                    on_done(outcomes[key])
            if pending and budget.kill_at is not None and time.time() >= budget.kill_at:
                for key in pending:
                    outcomes[key] = JobOutcome(key, "killed")
                    if on_done is not None:
                        on_done(outcomes[key])
                killed = True
                break
            if pending:
                time.sleep(poll_s)
    except BaseException:
        killed = True
        raise
    finally:
        if killed:
            pool.terminate()  # our own workers only: the busy ones are stopped
        else:
            pool.close()
        pool.join()
    return {key: outcomes[key] for key, _, _ in jobs}


def require(modules: dict[str, str]) -> None:
    """Stop at once (exit status 2, one line) when an import the jobs need is missing —
    before any worker trains — naming the pip package: ``{import name: package}``."""
    import importlib.util

    missing = [f"{name} (pip install {package})" for name, package in modules.items()
               if importlib.util.find_spec(name) is None]
    if missing:
        print(f"missing Python packages: {', '.join(missing)}", file=sys.stderr)
        raise SystemExit(2)


def current_budget() -> Budget:
    """The budget of the job running in this process (no limit outside :func:`run_jobs`)."""
    return _BUDGET or Budget()


def summary(outcomes: dict[Hashable, JobOutcome]) -> dict[str, int]:
    """Counts of each status, e.g. ``{"done": 30, "killed": 2}``."""
    counts: dict[str, int] = {}
    for o in outcomes.values():
        counts[o.status] = counts.get(o.status, 0) + 1
    return counts
