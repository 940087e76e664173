"""Run a sweep (:class:`~neurorec.spec.sweep.SweepSpec`) on dask.distributed.

Every run is what ``neurorec fit SPEC --data DATASET --seed SEED --set ...`` does
(:func:`neurorec.workflows.pipeline.fit_and_evaluate` then
:func:`neurorec.workflows.fit_outputs.write_fit_outputs`), written atomically into
``OUT/runs/<run-id>/``; a run is finished when that directory exists (it appears whole or not
at all), so a sweep started again skips finished runs. Runs go to a ``LocalCluster`` of worker
processes by default, or to the scheduler at ``--scheduler ADDRESS``. A failed run is reported
with its error and submitted again ``retries`` times (once by default). ``OUT/results.csv``
(and ``results.parquet`` when pyarrow is installed) gathers one row per run: the swept fields
as columns, then the run's scalar metrics.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from neurorec.core.errors import NeurorecError, OutputError, SpecError
from neurorec.core.outputs import write_json
from neurorec.spec.load import load_model_spec
from neurorec.spec.sweep import SweepSpec, format_value

RUNS_DIR = "runs"
RESULTS_CSV, RESULTS_PARQUET, FAILURES_JSON = "results.csv", "results.parquet", "failures.json"
# columns of results.csv before the swept fields and metrics
ID_COLUMNS = ("run_id", "status", "resumed", "dataset", "seed")
MAX_ID_LENGTH = 120


@dataclass(frozen=True)
class Run:
    """One fit of a sweep: the model spec with its overrides, a dataset and a seed."""

    run_id: str
    spec_path: str
    overrides: tuple[str, ...]
    dataset: str
    seed: int
    device: str
    point: dict[str, Any] = field(default_factory=dict)  # swept path -> value


@dataclass
class Outcome:
    """What became of a run in this invocation."""

    run: Run
    status: str  # finished | skipped | failed
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    metrics: dict[str, Any] | None = None


# ------------------------------------------------------------------------------------ planning
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "-", text).strip("-") or "x"


def run_id(dataset: str, seed: int, point: dict[str, Any]) -> str:
    """A readable, filesystem-safe id that depends only on the run's content (so a sweep
    edited by adding values resumes the runs it already finished)."""
    parts = [_slug(Path(dataset).stem if dataset.endswith(".nwb") else dataset), f"seed{seed}"]
    parts += [_slug(f"{k}={format_value(v)}") for k, v in point.items()]
    text = "__".join(parts)
    if len(text) > MAX_ID_LENGTH or dataset.endswith(".nwb"):
        digest = hashlib.sha1(json.dumps([dataset, seed, point], sort_keys=True,
                                         default=str).encode()).hexdigest()[:10]
        text = f"{text[:MAX_ID_LENGTH - 11]}_{digest}"
    return text


def points(sweep: SweepSpec) -> list[dict[str, Any]]:
    """The swept points: the grid's cartesian product, the list, or one empty point."""
    if sweep.grid is not None:
        keys = list(sweep.grid)
        combos = itertools.product(*sweep.grid.values())
        return [dict(zip(keys, combo, strict=True)) for combo in combos]
    if sweep.points is not None:
        return [dict(p) for p in sweep.points]
    return [{}]


def plan(sweep: SweepSpec, sweep_path: str | Path, device: str | None = None) -> list[Run]:
    """Every run of ``sweep`` (datasets × seeds × points), each model spec validated here.

    Raises:
        SpecError: the model spec is missing, or a point makes it invalid (one line per
            problem, naming the run); or two runs get the same id.
    """
    sweep_path = Path(sweep_path)
    spec_path = (sweep_path.parent / sweep.spec).resolve()
    if not spec_path.is_file():
        raise SpecError(f"{sweep_path}: spec: model spec {spec_path} not found "
                        "(paths are relative to the sweep file's folder)")
    runs, problems = [], []
    for point in points(sweep):
        overrides = (*sweep.set, *(f"{k}={format_value(v)}" for k, v in point.items()))
        try:
            load_model_spec(spec_path, overrides)
        except SpecError as err:
            where = ", ".join(f"{k}={format_value(v)}" for k, v in point.items()) or "every run"
            problems += [f"{sweep_path}: point {where}: {line}" for line in err.lines]
            continue
        for dataset in sweep.datasets:
            for seed in sweep.seeds:
                runs.append(Run(run_id(dataset, seed, point), str(spec_path), overrides,
                                dataset, seed, device or sweep.device, point))
    if problems:
        raise SpecError(problems)
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise SpecError(f"{sweep_path}: list: points repeat, giving the same run twice: {dup}")
    return runs


def is_finished(out: Path, run: Run) -> bool:
    """``OUT/runs/<id>/`` exists only once complete (written by ``atomic_dir``)."""
    return (out / RUNS_DIR / run.run_id / "metrics.json").is_file()


# ------------------------------------------------------------------------------------ one run
def execute_run(run: Run, out: str, torch_threads: int | dict[str, int] | None = None,
                overwrite: bool = False) -> dict[str, Any]:
    """Fit one run and write ``out/runs/<id>/``; runs inside a dask worker (or anywhere).

    ``torch_threads``: threads torch may use in this task, or a mapping worker address →
    threads (for workers started elsewhere); None leaves torch's setting alone.
    Returns the run's flat scalar metrics.
    """
    import torch

    from neurorec.workflows.fit_outputs import write_fit_outputs
    from neurorec.workflows.pipeline import fit_and_evaluate, load_recording

    if isinstance(torch_threads, dict):
        from distributed import get_worker

        torch_threads = torch_threads.get(get_worker().address)
    if torch_threads:
        torch.set_num_threads(int(torch_threads))
    spec = load_model_spec(run.spec_path, run.overrides)
    recording = load_recording(run.dataset)
    result = fit_and_evaluate(spec, recording, seed=run.seed, device=run.device,
                              progress=False)
    write_fit_outputs(result, Path(out) / RUNS_DIR / run.run_id, overwrite=overwrite)
    return flat_metrics(result.metrics)


def flat_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Scalar entries of ``metrics.json`` (nested mappings as ``convergence.reason``)."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in flat_metrics(value).items()})
        elif value is None or isinstance(value, bool | int | float | str):
            flat[key] = value
    return flat


# ------------------------------------------------------------------------------------ cluster
def threads_per_worker(workers: int, cpus: int | None = None) -> int:
    """torch threads per worker process: the cores shared out, at least one."""
    return max(1, (cpus or os.cpu_count() or 1) // max(1, workers))


def remote_torch_threads(client) -> dict[str, int]:
    """worker address → torch threads for workers started elsewhere: each host's cores
    shared among the dask threads of the workers on that host."""
    info = client.scheduler_info(n_workers=-1)["workers"] if _takes_n_workers(client) \
        else client.scheduler_info()["workers"]
    cpus = client.run(os.cpu_count)
    per_host: dict[str, int] = {}
    for w in info.values():
        per_host[w["host"]] = per_host.get(w["host"], 0) + w["nthreads"]
    return {addr: max(1, (cpus.get(addr) or 1) // per_host[w["host"]])
            for addr, w in info.items()}


def _takes_n_workers(client) -> bool:
    import inspect

    return "n_workers" in inspect.signature(client.scheduler_info).parameters


def run_sweep(sweep: SweepSpec, sweep_path: str | Path, out: str | Path, *,
              scheduler: str | None = None, workers: int | None = None,
              threads: int | None = None, device: str | None = None,
              overwrite: bool = False, progress: bool = True,
              echo: Callable[[str], None] = print) -> list[Outcome]:
    """Run every unfinished run of ``sweep`` and write ``out/results.csv``.

    Args:
        scheduler: address of a running dask scheduler (``tcp://host:8786``); None starts a
            LocalCluster of ``workers`` processes (default: one per core), one task at a
            time each.
        threads: torch threads in each task (default: the cores of the worker's host shared
            among the dask threads there). Float sums depend on the thread count: runs agree
            bit for bit only at equal thread counts.
        overwrite: run finished runs again (replacing their directories).
    Returns:
        one :class:`Outcome` per run, in plan order.
    """
    from distributed import Client, LocalCluster

    out = Path(out)
    runs = plan(sweep, sweep_path, device)
    if device or sweep.device != "cpu":
        from neurorec.workflows.pipeline import resolve_device

        resolve_device(device or sweep.device)  # fail here, not in every task
    identity = _check_out(out, sweep, sweep_path)
    outcomes = {r.run_id: Outcome(r, "skipped") for r in runs}
    todo = [r for r in runs if overwrite or not is_finished(out, r)]
    echo(f"{sweep.name}: {len(runs)} runs ({len(sweep.datasets)} datasets × "
         f"{len(sweep.seeds)} seeds × {len(runs) // (len(sweep.datasets) * len(sweep.seeds))} "
         f"points); {len(runs) - len(todo)} finished before, {len(todo)} to run")
    start = time.perf_counter()
    if todo:
        cluster = None
        if scheduler is None:
            n = workers or os.cpu_count() or 1
            torch_threads: int | dict[str, int] = threads or threads_per_worker(n)
            # failures are reported by the sweep itself, once, with their error: keep the
            # workers' own "Compute Failed" tracebacks off the terminal
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None,
                                   silence_logs=logging.CRITICAL)
            client = Client(cluster)
            echo(f"LocalCluster: {n} worker processes, 1 task and {torch_threads} torch "
                 f"thread(s) each")
        else:
            try:  # nothing is written before the scheduler answers
                client = Client(scheduler, timeout="30s")
            except (OSError, TimeoutError, ValueError) as err:
                raise NeurorecError(f"--scheduler {scheduler}: cannot connect "
                                    f"({type(err).__name__}: {err})".split("\n")[0]) from None
            client.wait_for_workers(workers or 1, timeout=60)
            per_worker = remote_torch_threads(client)
            torch_threads = threads or per_worker
            echo(f"scheduler {scheduler}: {len(per_worker)} workers, torch threads "
                 f"{threads or sorted(set(per_worker.values()))}")
        _write_marker(out, identity, sweep)
        try:
            _submit_all(client, todo, outcomes, out, torch_threads, overwrite, sweep.retries,
                        progress, echo)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    else:
        _write_marker(out, identity, sweep)
    elapsed = time.perf_counter() - start
    ordered = [outcomes[r.run_id] for r in runs]
    table = write_results(out, sweep, ordered)
    failed = [o for o in ordered if o.status == "failed"]
    echo(f"{sum(o.status == 'finished' for o in ordered)} run(s) finished, "
         f"{sum(o.status == 'skipped' for o in ordered)} skipped (finished before), "
         f"{len(failed)} failed; {elapsed:.1f} s; table: {table}")
    for o in failed:
        echo(f"failed: {o.run.run_id} after {o.attempts} attempt(s): {o.errors[-1]}")
    return ordered


def _check_out(out: Path, sweep: SweepSpec, sweep_path: str | Path) -> dict[str, str]:
    """OUT holds one sweep: refuse to mix runs of a different sweep into it, or to write
    into a folder that holds something else. Returns the sweep's identity (nothing written)."""
    marker = out / "sweep.json"
    identity = {"name": sweep.name, "spec": str((Path(sweep_path).parent / sweep.spec).resolve())}
    if marker.is_file():
        before = json.loads(marker.read_text())
        if {k: before.get(k) for k in identity} != identity:
            raise OutputError(f"{out}: holds the sweep {before.get('name')!r} of "
                              f"{before.get('spec')}; choose another --out")
    elif out.is_dir() and any(out.iterdir()):
        raise OutputError(f"{out}: not a sweep folder (no sweep.json); a sweep writes only "
                          "into a folder it created: choose another --out")
    elif out.exists() and not out.is_dir():
        raise OutputError(f"{out}: --out: a file is there, not a folder")
    return identity


def _write_marker(out: Path, identity: dict[str, str], sweep: SweepSpec) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "sweep.json",
               {**identity, "sweep": sweep.model_dump(mode="json", by_alias=True)})


def _describe(err: BaseException) -> str:
    if isinstance(err, NeurorecError):
        return f"{type(err).__name__}: {'; '.join(err.lines)}"
    return f"{type(err).__name__}: {err}"


def _submit_all(client, todo: list[Run], outcomes: dict[str, Outcome], out: Path,
                threads: int | dict[str, int], overwrite: bool, retries: int, progress: bool,
                echo: Callable[[str], None]) -> None:
    from distributed import as_completed
    from tqdm import tqdm

    def submit(run: Run, attempt: int):
        # pure=False with a fresh key: a retry is a new task, not the cached failure
        return client.submit(execute_run, run, str(out), threads, overwrite, pure=False,
                             key=f"{run.run_id}-attempt{attempt}")

    note = tqdm.write if progress else echo
    futures = {submit(r, 1): r for r in todo}
    pending = as_completed(futures)
    bar = tqdm(total=len(todo), disable=not progress, unit="run", desc="sweep")
    for future in pending:
        run = futures.pop(future)
        outcome = outcomes[run.run_id]
        outcome.attempts += 1
        try:
            outcome.metrics = future.result()
        except Exception as err:  # any failure of a run is reported, never fatal to the sweep
            outcome.errors.append(_describe(err))
            if outcome.attempts <= retries:
                note(f"run {run.run_id} failed (attempt {outcome.attempts}), retrying: "
                     f"{outcome.errors[-1]}")
                retry = submit(run, outcome.attempts + 1)
                futures[retry] = run
                pending.add(retry)
                continue
            outcome.status = "failed"
        else:
            outcome.status = "finished"
        future.release()
        bar.update(1)
    bar.close()


# ------------------------------------------------------------------------------------ table
def write_results(out: Path, sweep: SweepSpec, outcomes: list[Outcome]) -> Path:
    """``out/results.csv``: one row per run; swept fields, then metrics (and error).

    Metrics of runs finished in an earlier invocation are read from their ``metrics.json``.
    """
    fields = sweep.point_paths()
    rows = []
    for o in outcomes:
        metrics = o.metrics
        if metrics is None and o.status == "skipped":
            path = out / RUNS_DIR / o.run.run_id / "metrics.json"
            metrics = flat_metrics(json.loads(path.read_text())) if path.is_file() else {}
        row = {"run_id": o.run.run_id, "status": "failed" if o.status == "failed" else "finished",
               "resumed": o.status == "skipped", "dataset": o.run.dataset, "seed": o.run.seed}
        row.update({f: format_value(o.run.point[f]) if isinstance(o.run.point.get(f), list)
                    else o.run.point.get(f) for f in fields})
        row.update({k: v for k, v in (metrics or {}).items()
                    if k not in ("seed", "data")})
        row["attempts"] = o.attempts
        row["error"] = o.errors[-1] if o.status == "failed" else ""
        rows.append(row)
    table = pd.DataFrame(rows)
    path = out / RESULTS_CSV
    tmp = path.with_name(f".{path.name}.tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(path)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        pass
    else:
        table.to_parquet(out / RESULTS_PARQUET, index=False)
    failures = [{**asdict(o.run), "attempts": o.attempts, "errors": o.errors}
                for o in outcomes if o.status == "failed"]
    write_json(out / FAILURES_JSON, {"failed": failures})
    return path
