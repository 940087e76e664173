"""The analysis pipelines' job runner: cached results are reused, failures reported, not fatal."""

from __future__ import annotations

import math

from neurorec.core.errors import DataError
from neurorec.workflows.study import markdown_table, parse_sessions, run_cached


def square(x: float) -> dict:
    if x < 0:
        raise DataError(f"x: {x} is negative")
    return {"x": x, "y": x * x, "nan": math.nan}


def test_cached_jobs_are_not_run_again_and_failures_are_reported(tmp_path):
    jobs = [(f"{x}.json", square, (x,)) for x in (2.0, -1.0, 3.0)]
    results, failed = run_cached(jobs, tmp_path, n_workers=1)
    assert list(results) == ["2.0.json", "3.0.json"]
    assert results["3.0.json"]["y"] == 9.0 and math.isnan(results["3.0.json"]["nan"])
    assert failed == [("-1.0.json", (-1.0,), "x: -1.0 is negative")]
    (tmp_path / "2.0.json").write_text('{"x": 2.0, "y": "from cache"}')
    again, _ = run_cached(jobs, tmp_path, n_workers=1)
    assert again["2.0.json"]["y"] == "from cache"


def test_sessions_and_tables():
    assert parse_sessions("0-3,7") == [0, 1, 2, 3, 7]
    assert markdown_table([{"a": 1}, {"a": 2, "b": "x"}]) == [
        "| a | b |", "|---|---|", "| 1 |  |", "| 2 | x |"]
