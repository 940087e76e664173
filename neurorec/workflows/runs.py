"""Many independent fits run in local worker processes, each result cached as it finishes.

The analysis pipelines (``analyses/*/run.py``) fit one model to one dataset per job. A job's
result (a JSON-able dict) is written to ``cache/<key>`` the moment it arrives, so a pipeline
killed half-way and started again runs only the jobs whose file is missing. One failed job (a
:class:`~neurorec.core.errors.NeurorecError`) is reported, not fatal. For distributed sweeps over
spec fields use :mod:`neurorec.workflows.sweep` (dask) instead.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from neurorec.data.recording import Recording

Job = tuple[str, Callable[..., dict], tuple]  # (cache file name, function, its arguments)
FIRST_LARGE_V1_SESSION, END_LARGE_V1_SESSION = 0, 14  # monkey H: up to 2064 trials each


def parse_sessions(text: str) -> list[int]:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]``; anything else is a one-line ``NeurorecError``."""
    from neurorec.core.errors import NeurorecError

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


def _init_worker() -> None:
    import torch

    # one thread per process: the pool already uses every core
    torch.set_num_threads(1)


def _load_row(path: Path) -> dict:
    """A cached result; JSON's null (written for NaN) back to NaN."""
    return {k: np.nan if v is None else v for k, v in json.loads(path.read_text()).items()}


def _is_large_v1(job: Job) -> bool:
    first = job[2][0] if job[2] else ""
    return (isinstance(first, str) and first.startswith("v1_gratings:")
            and FIRST_LARGE_V1_SESSION <= int(first.split(":")[1]) < END_LARGE_V1_SESSION)


def run_cached(jobs: Sequence[Job], cache: Path, n_workers: int,
               desc: str = "fits") -> tuple[dict[str, dict], list[tuple[str, tuple, str]]]:
    """Run the jobs whose ``cache/<key>`` is missing in ``n_workers`` processes.

    Jobs whose first argument is a large V1 session run last, so that a partial run has whole
    datasets cached.

    Returns:
        ``key -> result`` for every job that has one (cached before or run now), in the order
        of ``jobs``; and ``(key, args, first error line)`` for each job that failed.
    """
    from neurorec.core.errors import NeurorecError
    from neurorec.core.outputs import write_json

    cache.mkdir(parents=True, exist_ok=True)
    done = {key: _load_row(cache / key) for key, _, _ in jobs if (cache / key).is_file()}
    todo = sorted((job for job in jobs if job[0] not in done), key=_is_large_v1)
    if done:
        print(f"{len(done)} fits reused from {cache}; {len(todo)} to run")
    failed: list[tuple[str, tuple, str]] = []
    with ProcessPoolExecutor(n_workers, initializer=_init_worker) as pool:
        futures = {pool.submit(fn, *args): (key, args) for key, fn, args in todo}
        for fut in tqdm(as_completed(futures), total=len(futures), desc=desc):
            key, args = futures[fut]
            try:
                result = fut.result()
            except NeurorecError as err:
                failed.append((key, args, err.lines[0]))
                continue
            write_json(cache / key, result)
            done[key] = _load_row(cache / key)
    return {key: done[key] for key, _, _ in jobs if key in done}, failed


def write_csv(path: Path, rows: Sequence[dict]) -> None:
    """Rows of dicts as CSV; the columns are every key, in first-seen order."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(rows: Sequence[dict]) -> list[str]:
    """Rows of dicts as the lines of a Markdown table (columns: every key, first-seen order)."""
    header = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(r.get(k, "")) for k in header) + " |" for r in rows]
