"""The analyses' plumbing in one place: what every ``analyses/*/run.py`` shares, so that a
script keeps only its science.

- **Flags** (:func:`add_common_args`): ``--out --set --jobs --threads --device --max-minutes
  --seed --overwrite --quiet`` and the real-population ``--v1-sessions --no-locust``, each with
  one name, type and meaning in every script that takes it.
- **Threads** (:func:`apply_thread_policy`): ``--threads`` torch threads and one BLAS/OpenMP
  thread, in this process and in the workers it starts.
- **Output** (:func:`output_dir`, :func:`refuse_existing`, :func:`beside`): ``--out`` appears
  whole or not at all (:func:`~neurorec.core.outputs.atomic_dir`); checkpoints and caches
  live beside it.
- **Jobs** (:func:`run_jobs`, :func:`run_cached`): independent jobs in ``--jobs`` spawned
  worker processes (or in this process for one), under a wall-clock :class:`Budget`
  (``--max-minutes``): ``stop_at``, after which a job stops starting or training (its
  callback raises :class:`OutOfTime`), and ``kill_at``, after which the workers still running
  are terminated so the report can be written in time. A job that raised is reported with its
  traceback, not fatal. :func:`run_cached` adds a cache: each result (a JSON-able dict) is
  written to ``cache/<key>`` the moment it arrives, so a run killed half-way and started again
  runs only the jobs whose file is missing; a user error (a
  :class:`~neurorec.core.errors.NeurorecError`) is reported, a bug is raised. For distributed
  sweeps over spec fields use :mod:`neurorec.workflows.sweep` (dask) instead.
- **Writers**: :func:`write_csv`, :func:`write_json`, :func:`markdown_table`,
  :func:`html_table`, :func:`write_report`, :func:`save_figure` and the shared figure
  :func:`model_comparison_figure`.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurorec.core.errors import NeurorecError, OutputError
from neurorec.core.outputs import atomic_dir, write_json
from neurorec.data.recording import Recording

__all__ = [
    "END_LARGE_V1_SESSION", "FIRST_LARGE_V1_SESSION", "THREAD_VARS", "Budget", "Job",
    "JobError", "JobOutcome", "OutOfTime", "add_common_args", "apply_thread_policy", "beside",
    "current_budget", "dataset_groups", "exit_if_failed", "html_table",
    "load_clean", "markdown_table", "mean_sem", "model_comparison_figure", "not_completed",
    "output_dir", "parse_sessions", "real_datasets", "refuse_existing", "require", "run_cached",
    "run_jobs", "save_figure", "sem", "start_line", "summary", "write_csv", "write_json",
    "write_report",
]

Job = tuple[Hashable, Callable[..., Any], tuple]  # (key, function, its arguments)
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
FIRST_LARGE_V1_SESSION, END_LARGE_V1_SESSION = 0, 14  # monkey H: up to 2064 trials each


# --- flags ---------------------------------------------------------------------------------

def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r}: must be greater than 0")
        return value

    parse.__name__ = kind.__name__
    return parse


def _seed(text: str) -> int:
    """A seed, as the ``neurorec`` command takes it: an integer 0 .. 2**32 - 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value <= 2**32 - 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must lie in 0 .. 2**32 - 1")
    return value


#: flag name -> (option string, argparse keywords); defaults and help may be changed per script
COMMON_FLAGS: dict[str, tuple[str, dict[str, Any]]] = {
    "out": ("--out", {"type": Path, "required": True, "help": "output directory"}),
    "set": ("--set", {"dest": "set", "action": "append", "default": [], "metavar": "FIELD=VALUE",
                      "help": "spec override FIELD=VALUE (repeatable)"}),
    "jobs": ("--jobs", {"type": _positive(int), "default": 1,
                        "help": "worker processes (one job each at a time)"}),
    "threads": ("--threads", {"type": _positive(int), "default": 1,
                              "help": "torch threads per process"}),
    "device": ("--device", {"default": "cpu", "help": "cpu or cuda"}),
    "max_minutes": ("--max-minutes", {
        "type": _positive(float), "default": None,
        "help": "wall-clock budget: stop training in time to write the report"}),
    "seed": ("--seed", {"type": _seed, "default": 0,
                        "help": "seeds every random draw of the study (0 .. 2**32 - 1)"}),
    "v1_sessions": ("--v1-sessions", {"default": "0-26",
                                      "help": "bundled V1 sessions, e.g. 0-3,7"}),
    "no_locust": ("--no-locust", {"action": "store_true",
                                  "help": "leave out the locust antennal-lobe dataset"}),
    "overwrite": ("--overwrite", {"action": "store_true",
                                  "help": "replace an existing --out"}),
    "quiet": ("--quiet", {"action": "store_true",
                          "help": "less output: no progress bars or per-job lines"}),
}


def add_common_args(parser: argparse.ArgumentParser, *flags: str,
                    helps: Mapping[str, str] | None = None,
                    choices: Mapping[str, Sequence[str]] | None = None,
                    **defaults: Any) -> argparse.ArgumentParser:
    """Add the common ``flags`` (names of :data:`COMMON_FLAGS`, e.g. ``"out", "jobs",
    "max_minutes"``) to ``parser``, in that order. ``jobs=2`` (any flag name) changes that
    flag's default, ``helps``/``choices`` its help text / allowed values. ``--set`` values land
    in ``args.set``. Returns the parser."""
    unknown = [f for f in (*flags, *defaults) if f not in COMMON_FLAGS]
    if unknown:
        raise ValueError(f"unknown common flags {unknown}; choose from {list(COMMON_FLAGS)}")
    for name in flags:
        option, kwargs = COMMON_FLAGS[name]
        kwargs = dict(kwargs)
        if name in defaults:
            kwargs["default"] = defaults[name]
        if helps and name in helps:
            kwargs["help"] = helps[name]
        if choices and name in choices:
            kwargs["choices"] = list(choices[name])
        parser.add_argument(option, **kwargs)
    return parser


def real_datasets(args: argparse.Namespace) -> list[str]:
    """The datasets of ``--v1-sessions`` and (unless ``--no-locust``) the locust population."""
    datasets = [f"v1_gratings:{s}" for s in parse_sessions(args.v1_sessions)]
    return datasets + ([] if args.no_locust else ["locust_al"])


def dataset_groups(rows: Sequence[Mapping], v1: str = "V1") -> dict[str, list[Mapping]]:
    """Result rows of the real-population studies by group: ``{v1: the V1 sessions' rows,
    "locust AL": the locust rows}`` (a row's ``dataset`` says which)."""
    return {v1: [r for r in rows if r["dataset"].startswith("v1_gratings")],
            "locust AL": [r for r in rows if r["dataset"].startswith("locust")]}


def parse_sessions(text: str) -> list[int]:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]``; anything else is a one-line ``NeurorecError``."""
    out: list[int] = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.strip().partition("-")
        if not lo.isdigit() or not (hi or lo).isdigit() or int(hi or lo) < int(lo):
            raise NeurorecError(f"sessions {text!r}: expected numbers and ranges like '0-3,7'")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def load_clean(dataset: str) -> Recording:
    """A bundled dataset; V1 sessions keep the units with contamination < 0.05 (as the papers)."""
    from neurorec.datasets import load, load_v1_gratings

    if dataset.startswith("v1_gratings:"):
        return load_v1_gratings(int(dataset.split(":")[1]), max_contamination=0.05)
    return load(dataset)


def require(modules: dict[str, str]) -> None:
    """Stop at once (exit status 2, one line) when an import the jobs need is missing —
    before any worker trains — naming the pip package: ``{import name: package}``."""
    import importlib.util

    missing = [f"{name} (pip install {package})" for name, package in modules.items()
               if importlib.util.find_spec(name) is None]
    if missing:
        print(f"missing Python packages: {', '.join(missing)}", file=sys.stderr)
        raise SystemExit(2)


# --- threads -------------------------------------------------------------------------------

def apply_thread_policy(threads: int | None = 1) -> None:
    """The analyses' one thread policy: ``threads`` torch threads (None: torch's default, every
    core) and one BLAS/OpenMP thread, in this process (threadpoolctl) and in the processes it
    starts (``OMP_NUM_THREADS`` and friends). Several BLAS threads per process on a busy
    machine made a 200×200 QR 13× slower here; the analyses parallelise over jobs instead."""
    import torch

    os.environ.update({v: "1" for v in THREAD_VARS})
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn's dependency; the environment variables still apply
        return
    threadpool_limits(1)


@contextmanager
def _one_blas_thread_env() -> Iterator[None]:
    """``OMP_NUM_THREADS`` and friends at 1 while worker processes start (read at import)."""
    saved = {v: os.environ.get(v) for v in THREAD_VARS}
    os.environ.update({v: "1" for v in THREAD_VARS})
    try:
        yield
    finally:
        for v, value in saved.items():
            if value is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = value


# --- output --------------------------------------------------------------------------------

def refuse_existing(out: Path, overwrite: bool) -> None:
    """Say now, not after hours of training, that ``out`` exists and would be refused."""
    if Path(out).exists() and not overwrite:
        raise OutputError(f"{out}: output directory exists (pass --overwrite to replace it)")


def output_dir(args: argparse.Namespace):
    """``atomic_dir(args.out, overwrite=args.overwrite)``: a temporary directory that becomes
    ``--out`` when the block succeeds and leaves nothing when it fails."""
    return atomic_dir(args.out, overwrite=getattr(args, "overwrite", False))


def beside(out: Path, suffix: str, hidden: bool = True) -> Path:
    """A path next to ``out`` named after it: ``.OUT<suffix>`` (``OUT<suffix>`` unless
    ``hidden``), for checkpoints and caches that outlive a failed run."""
    out = Path(out)
    return out.with_name(f"{'.' if hidden else ''}{out.name}{suffix}")


# --- the wall-clock budget and the job runner ------------------------------------------------

class OutOfTime(Exception):
    """Raised inside a job when the budget's ``stop_at`` has passed."""


class JobError(RuntimeError):
    """A job of :func:`run_cached` raised something other than a ``NeurorecError``: a bug."""


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
    traceback; ``message`` the lines of a ``NeurorecError``, empty for a bug), ``stopped`` (it
    raised :class:`OutOfTime`; ``error`` says where), ``not_started`` or ``killed`` (still
    running at the budget's ``kill_at``)."""

    key: Hashable
    status: str
    result: Any = None
    error: str = ""
    seconds: float = float("nan")
    message: str = ""

    @property
    def detail(self) -> str:
        """The last line of ``error`` (the exception, or where the job stopped), or ''."""
        lines = self.error.strip().splitlines()
        return lines[-1] if lines else ""


_BUDGET: Budget | None = None


def _init_worker(budget: Budget, n_threads: int) -> None:
    global _BUDGET
    apply_thread_policy(n_threads)
    _BUDGET = budget


def _call(key: Hashable, fn: Callable[..., Any], args: tuple) -> JobOutcome:
    budget = _BUDGET or Budget()
    if budget.out_of_time():
        return JobOutcome(key, "not_started")
    t0 = time.perf_counter()
    try:
        result = fn(*args)
    except OutOfTime as stop:
        return JobOutcome(key, "stopped", error=str(stop), seconds=time.perf_counter() - t0)
    except Exception as err:  # reported with its traceback; the other jobs go on
        message = "\n".join(err.lines) if isinstance(err, NeurorecError) else ""
        return JobOutcome(key, "failed", error=traceback.format_exc(),
                          seconds=time.perf_counter() - t0, message=message)
    return JobOutcome(key, "done", result, seconds=time.perf_counter() - t0)


def current_budget() -> Budget:
    """The budget of the job running in this process (no limit outside :func:`run_jobs`)."""
    return _BUDGET or Budget()


def run_jobs(jobs: Sequence[Job], n_jobs: int, budget: Budget | None = None,
             on_done: Callable[[JobOutcome], None] | None = None,
             poll_s: float = 0.5, n_threads: int = 1) -> dict[Hashable, JobOutcome]:
    """Run ``jobs`` ``(key, function, args)``; returns ``key -> JobOutcome`` in job order.

    ``n_jobs`` 1 runs them here, in order (jobs left when ``stop_at`` has passed are
    ``not_started``); more starts that many ``spawn`` workers (functions and arguments must
    pickle; a function of a script run as ``python script.py`` does) under the thread policy
    (``n_threads`` torch threads, one BLAS thread). Each job function may call
    :func:`current_budget` ``.check()`` to stop early. ``on_done`` is called in this process
    as each job finishes (progress lines, caching); an exception it raises stops the run (the
    busy workers are terminated).
    """
    global _BUDGET
    budget = budget or Budget()
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
    with _one_blas_thread_env():  # read by numpy's BLAS in each child
        ctx = multiprocessing.get_context("spawn")
        pool = ctx.Pool(min(n_jobs, len(jobs)), initializer=_init_worker,
                        initargs=(budget, n_threads))
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


def _load_row(path: Path) -> dict:
    """A cached result; JSON's null (written for NaN) back to NaN."""
    return {k: np.nan if v is None else v for k, v in json.loads(path.read_text()).items()}


def _is_large_v1(job: Job) -> bool:
    first = job[2][0] if job[2] else ""
    return (isinstance(first, str) and first.startswith("v1_gratings:")
            and FIRST_LARGE_V1_SESSION <= int(first.split(":")[1]) < END_LARGE_V1_SESSION)


def run_cached(jobs: Sequence[Job], cache: Path, n_workers: int, desc: str = "fits",
               budget: Budget | None = None,
               ) -> tuple[dict[str, dict], list[tuple[str, tuple, str]]]:
    """:func:`run_jobs` for the jobs whose ``cache/<key>`` is missing, each result written
    there the moment it arrives (NaN as null, read back as NaN).

    Jobs whose first argument is a large V1 session run last, so that a partial run has whole
    datasets cached. A job that raised a ``NeurorecError`` is reported; anything else is a bug
    and raises :class:`JobError` with the job's traceback.

    Returns:
        ``key -> result`` for every job that has one (cached before or run now), in the order
        of ``jobs``; and ``(key, args, first error line)`` for each job that failed or was not
        finished within ``budget``.
    """
    from tqdm.auto import tqdm

    cache.mkdir(parents=True, exist_ok=True)
    done = {key: _load_row(cache / key) for key, _, _ in jobs if (cache / key).is_file()}
    todo = sorted((job for job in jobs if job[0] not in done), key=_is_large_v1)
    if done:
        print(f"{len(done)} fits reused from {cache}; {len(todo)} to run")
    arguments = {key: args for key, _, args in todo}
    failed: list[tuple[str, tuple, str]] = []
    with tqdm(total=len(todo), desc=desc) as bar:
        def arrived(o: JobOutcome) -> None:
            bar.update()
            if o.status == "done":
                write_json(cache / o.key, o.result)
                done[o.key] = _load_row(cache / o.key)
            elif o.status == "failed" and not o.message:
                raise JobError(f"job {o.key} failed:\n{o.error}")
            else:
                line = o.message.splitlines()[0] if o.message else f"{o.status} {o.detail}"
                failed.append((o.key, arguments[o.key], line.strip()))

        run_jobs(todo, n_workers, budget, on_done=arrived)
    return {key: done[key] for key, _, _ in jobs if key in done}, failed


def summary(outcomes: dict[Hashable, JobOutcome]) -> dict[str, int]:
    """Counts of each status, e.g. ``{"done": 30, "killed": 2}``."""
    counts: dict[str, int] = {}
    for o in outcomes.values():
        counts[o.status] = counts.get(o.status, 0) + 1
    return counts


def start_line(n: int, args: argparse.Namespace, what: str = "jobs") -> str:
    """``"12 jobs on 4 worker(s), device cpu, budget 8 min"``."""
    return (f"{n} {what} on {args.jobs} worker(s), device {args.device}"
            + (f", budget {args.max_minutes:g} min" if args.max_minutes else ""))


def not_completed(outcomes: dict[Hashable, JobOutcome],
                  name: Callable[[Hashable], str] = str) -> list[str]:
    """``"NAME: STATUS (last error line)"`` for each job that did not finish."""
    return [f"{name(k)}: {o.status}" + (f" ({o.detail})" if o.detail else "")
            for k, o in outcomes.items() if o.status != "done"]


def exit_if_failed(outcomes: dict[Hashable, JobOutcome],
                   name: Callable[[Hashable], str] = str) -> None:
    """Print each failed job's traceback on stderr and exit with status 1 if there was one
    (the report is written by then; the exit status still says a job broke)."""
    failed = [o for o in outcomes.values() if o.status == "failed"]
    for o in failed:
        print(f"{name(o.key)} failed:\n{o.error}", file=sys.stderr)
    if failed:
        raise SystemExit(1)


# --- writers -------------------------------------------------------------------------------

def _columns(rows: Sequence[Mapping]) -> list:
    return list(dict.fromkeys(k for r in rows for k in r))


def _cells(rows: Sequence, header: Sequence) -> list[list]:
    return [[r.get(k, "") for k in header] if isinstance(r, Mapping) else list(r) for r in rows]


def write_csv(path: Path, rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> Path:
    """Rows of dicts as CSV; the columns are ``columns`` (other keys left out) or every key, in
    first-seen order (a row without one leaves its cell empty)."""
    columns = _columns(rows) if columns is None else list(columns)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def markdown_table(rows: Sequence, header: Sequence | None = None) -> list[str]:
    """The lines of a Markdown table: rows of dicts (columns: ``header`` or every key,
    first-seen order) or of sequences under ``header``."""
    header = _columns(rows) if header is None else list(header)
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(map(str, c)) + " |" for c in _cells(rows, header)]


def html_table(rows: Sequence, header: Sequence | None = None) -> str:
    """:func:`neurorec.report.html.table` of rows of dicts (columns: ``header`` or every key,
    first-seen order) or of sequences under ``header``."""
    from neurorec.report import html

    header = _columns(rows) if header is None else list(header)
    return html.table(_cells(rows, header), header)


def write_report(out: Path, title: str, sections: Sequence[tuple[str, str]],
                 name: str = "report.html") -> Path:
    """``out/report.html``: ``sections`` ((heading, html body), ...) on one page."""
    from neurorec.report import html

    return html.page(title, sections, Path(out) / name)


def save_figure(fig, path: Path, dpi: int = 110, tight: bool = True) -> str:
    """Lay out (``tight``), save and close a matplotlib figure; returns the file's name (for
    :func:`neurorec.report.html.figure`)."""
    import matplotlib.pyplot as plt

    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return Path(path).name


def sem(values) -> float:
    """Standard error of the mean (NaN for fewer than two values)."""
    v = np.asarray(values, dtype=float)
    return float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")


def mean_sem(values, with_n: bool = True) -> str:
    """``"0.1234 ± 0.0056 (n=27)"`` (without ``(n=…)`` unless ``with_n``)."""
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.4f} ± {sem(v):.4f}" + (f" (n={len(v)})" if with_n else "")


def paired(a, b, seed: int = 0, n: int = 10_000) -> dict:
    """Paired comparison over sessions of ``a - b``: mean, median, wins (a ≥ b), bootstrap
    95 % CI of the mean (resampling sessions) and the one-sided sign-flip permutation p of a
    positive mean."""
    d = np.asarray(a, float) - np.asarray(b, float)
    rng = np.random.default_rng(seed)
    boot = rng.choice(d, (n, len(d))).mean(axis=1)
    flips = (rng.choice([-1.0, 1.0], (n, len(d))) * d).mean(axis=1)
    return {"n": len(d), "wins": int((d >= 0).sum()), "mean": float(d.mean()),
            "median": float(np.median(d)), "ci": np.percentile(boot, [2.5, 97.5]).tolist(),
            "p": float((1 + (flips >= d.mean()).sum()) / (n + 1))}


def model_comparison_figure(rows: Sequence[Mapping], metric: str, models: Sequence[str],
                            path: Path, *, v1_title: str, v1_ylabel: str, locust_ylabel: str,
                            relative_to: str | None = None, with_sem: bool = False,
                            tick_rotation: float = 0, zero_line: bool = False,
                            bar_color: str | None = None, legend_fontsize: float | None = None,
                            ) -> None:
    """The real-population studies' figure: ``metric`` per model, V1 sessions on the left (a
    grey line per session — minus the ``relative_to`` model's value when given — and their
    mean, ± s.e.m. with ``with_sem``), the locust population as bars on the right."""
    import matplotlib.pyplot as plt

    from neurorec.report import figures  # noqa: F401  (selects the Agg backend)

    datasets = sorted({r["dataset"] for r in rows})
    value = {(r["dataset"], r["model"]): r[metric] for r in rows}
    x = range(len(models))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    v1 = [d for d in datasets if d.startswith("v1")]
    grid = np.array([[value.get((d, m), np.nan) - (value.get((d, relative_to), np.nan)
                                                   if relative_to else 0.0)
                      for m in models] for d in v1]).reshape(len(v1), len(models))
    for ys in grid:
        axes[0].plot(x, ys, color="0.75", lw=0.8)
    if v1:
        if with_sem:
            axes[0].errorbar(x, np.nanmean(grid, axis=0),
                             np.nanstd(grid, axis=0, ddof=1) / np.sqrt(len(v1)), fmt="o-",
                             color="C3", label=f"mean ± s.e.m. ({len(v1)} sessions)")
        else:
            axes[0].plot(x, np.nanmean(grid, axis=0), "o-", color="C3",
                         label="mean over sessions")
        axes[0].legend(frameon=False, fontsize=legend_fontsize)
    axes[0].set(title=v1_title, ylabel=v1_ylabel)
    for d in (d for d in datasets if d.startswith("locust")):
        axes[1].bar(x, [value.get((d, m), np.nan) for m in models], color=bar_color)
    axes[1].set(title="locust antennal lobe", ylabel=locust_ylabel)
    for ax in axes:
        ax.set_xticks(x, models, rotation=tick_rotation, fontsize=8)
        if zero_line:
            ax.axhline(0, color="0.5", lw=0.6)
    save_figure(fig, path)
