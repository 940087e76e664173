"""The analyses' shared plumbing (workflows.study): common flags, the thread policy (here and in
the pool's workers), atomic output directories, the job runner with its cache, the writers, and
a user mistake answered by an analysis script in one line with exit status 2."""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from neurorec.core.errors import DataError, OutputError
from neurorec.workflows import study

REPO = Path(__file__).resolve().parents[1]


def _threads_here(_: int) -> tuple[int, list[int], str]:
    """A job: the torch threads, BLAS thread counts and OMP_NUM_THREADS of its process (torch's
    own OpenMP pool is its intra-op threads: ``torch.set_num_threads`` sets it)."""
    import os

    import torch
    from threadpoolctl import threadpool_info

    blas = sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
    return torch.get_num_threads(), blas, os.environ.get("OMP_NUM_THREADS", "")


def test_thread_policy_sets_torch_blas_and_environment():
    # a fresh interpreter: the policy is process-wide and must not leak into this test process
    code = ("import json, numpy, torch\n"
            "from neurorec.workflows.study import apply_thread_policy\n"
            "apply_thread_policy(3)\n"
            "from test_study import _threads_here\n"
            "print(json.dumps(_threads_here(0)))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).parent)
    assert done.returncode == 0, done.stderr
    torch_threads, blas, omp = json.loads(done.stdout)
    assert torch_threads == 3
    assert blas == [1]  # every BLAS threadpoolctl sees (numpy's at least): one thread
    assert omp == "1"  # and the processes it starts read one thread from the environment


def test_pool_workers_run_under_the_thread_policy():
    jobs = [(k, _threads_here, (k,)) for k in range(2)]
    out = study.run_jobs(jobs, 2, study.Budget(), n_threads=2)
    for o in out.values():
        assert o.status == "done", o.error
        torch_threads, blas, omp = o.result
        assert torch_threads == 2 and blas == [1] and omp == "1"


def test_common_flags_keep_their_names_defaults_and_meaning():
    parser = argparse.ArgumentParser()
    study.add_common_args(parser, "out", "set", "jobs", "threads", "device", "max_minutes",
                          "seed", "overwrite", "quiet", jobs=2,
                          helps={"jobs": "splits in parallel"}, choices={"device": ["cpu"]})
    args = parser.parse_args(["--out", "o", "--set", "a=1", "--set", "b=2"])
    assert args.out == Path("o") and args.set == ["a=1", "b=2"]
    assert (args.jobs, args.threads, args.device, args.max_minutes, args.seed) == (
        2, 1, "cpu", None, 0)
    assert not args.overwrite and not args.quiet
    assert "splits in parallel" in parser.format_help()
    args = parser.parse_args(["--out", "o", "--jobs", "3", "--max-minutes", "0.5"])
    assert args.jobs == 3 and args.max_minutes == 0.5
    for bad in (["--jobs", "0"], ["--threads", "x"], ["--max-minutes", "-1"],
                ["--device", "cuda"]):
        with pytest.raises(SystemExit) as stop:
            parser.parse_args(["--out", "o", *bad])
        assert stop.value.code == 2
    with pytest.raises(ValueError, match="unknown common flags"):
        study.add_common_args(argparse.ArgumentParser(), "outt")
    sessions = study.add_common_args(argparse.ArgumentParser(), "v1_sessions", "no_locust")
    assert study.real_datasets(sessions.parse_args(["--v1-sessions", "1-2,5"])) == [
        "v1_gratings:1", "v1_gratings:2", "v1_gratings:5", "locust_al"]
    assert study.real_datasets(sessions.parse_args(["--v1-sessions", "3", "--no-locust"])) == [
        "v1_gratings:3"]


def test_atomic_output_dir_leaves_nothing_on_failure(tmp_path):
    args = argparse.Namespace(out=tmp_path / "run", overwrite=False)
    with pytest.raises(RuntimeError, match="half-way"), study.output_dir(args) as d:
        (d / "table.csv").write_text("a\n1\n")
        raise RuntimeError("half-way")
    assert list(tmp_path.iterdir()) == []  # no OUT, no temporary directory, no lock
    with study.output_dir(args) as d:
        study.write_csv(d / "table.csv", [{"a": 1}])
    assert (tmp_path / "run" / "table.csv").read_text() == "a\n1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    with pytest.raises(OutputError, match="output directory exists"):
        study.refuse_existing(args.out, overwrite=False)
    study.refuse_existing(args.out, overwrite=True)
    with pytest.raises(OutputError, match="pass --overwrite"), study.output_dir(args):
        pass
    assert study.beside(args.out, ".net0.checkpoint.pt") == tmp_path / ".run.net0.checkpoint.pt"
    assert study.beside(args.out, ".partial", hidden=False) == tmp_path / "run.partial"


def test_csv_round_trip(tmp_path):
    rows = [{"dataset": "v1_gratings:3", "model": "glm", "bits": 0.125},
            {"dataset": 'say "hi", then', "model": "rglm", "bits": math.nan, "extra": 7}]
    path = study.write_csv(tmp_path / "t.csv", rows)
    with open(path, newline="") as f:
        back = list(csv.DictReader(f))
    assert list(back[0]) == ["dataset", "model", "bits", "extra"]  # every key, first seen
    assert back == [{"dataset": "v1_gratings:3", "model": "glm", "bits": "0.125", "extra": ""},
                    {"dataset": 'say "hi", then', "model": "rglm", "bits": "nan",
                     "extra": "7"}]
    frame = pd.read_csv(path)
    assert frame["bits"].iloc[0] == 0.125 and math.isnan(frame["bits"].iloc[1])
    study.write_csv(tmp_path / "c.csv", rows, columns=["model", "bits"])  # others left out
    assert (tmp_path / "c.csv").read_text().splitlines() == ["model,bits", "glm,0.125",
                                                             "rglm,nan"]


def test_tables_reports_and_figures(tmp_path):
    rows = [{"a": 1, "b": "x"}, {"a": 2}]
    assert study.markdown_table(rows) == ["| a | b |", "|---|---|", "| 1 | x |", "| 2 |  |"]
    assert study.markdown_table([(1, "x")], ["a", "b"]) == ["| a | b |", "|---|---|",
                                                            "| 1 | x |"]
    assert study.html_table(rows) == ("<table><tr><th>a</th><th>b</th></tr><tr><td>1</td>"
                                      "<td>x</td></tr><tr><td>2</td><td></td></tr></table>")
    page = study.write_report(tmp_path, "T & t", [("Numbers", study.html_table(rows))])
    assert page == tmp_path / "report.html" and "<h1>T &amp; t</h1>" in page.read_text()
    assert study.mean_sem([1.0, 2.0, 3.0]) == "2.0000 ± 0.5774 (n=3)"
    assert study.mean_sem([1.0], with_n=False) == "1.0000 ± nan"
    fits = [{"dataset": d, "model": m, "bps": v} for d, m, v in (
        ("v1_gratings:0", "a", 0.1), ("v1_gratings:0", "b", 0.3), ("v1_gratings:1", "a", 0.2),
        ("v1_gratings:1", "b", 0.1), ("locust_al", "a", 0.5), ("locust_al", "b", 0.6))]
    study.model_comparison_figure(fits, "bps", ["a", "b"], tmp_path / "f.png", v1_title="V1",
                                  v1_ylabel="bits/spike", locust_ylabel="bits/spike",
                                  relative_to="a", with_sem=True, zero_line=True)
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def _square(x: float) -> dict:
    if x < 0:
        raise DataError(f"x: {x} is negative")
    if x == 0:
        raise ZeroDivisionError("a bug")
    return {"x": x, "y": x * x}


def test_run_cached_reports_user_errors_and_raises_bugs(tmp_path):
    results, failed = study.run_cached([("2.json", _square, (2.0,)),
                                        ("-1.json", _square, (-1.0,))], tmp_path, 1)
    assert results == {"2.json": {"x": 2.0, "y": 4.0}}
    assert failed == [("-1.json", (-1.0,), "x: -1.0 is negative")]
    assert json.loads((tmp_path / "2.json").read_text()) == {"x": 2.0, "y": 4.0}
    assert not (tmp_path / "-1.json").exists()  # a failure is not cached: run again next time
    with pytest.raises(study.JobError, match=r"(?s)job 0\.json failed.*ZeroDivisionError"):
        study.run_cached([("0.json", _square, (0.0,))], tmp_path, 1)


def test_outcome_lines_and_exit_status(capsys):
    out = study.run_jobs([("a", _square, (2.0,)), ("b", _square, (-1.0,))], 1)
    assert out["b"].status == "failed" and out["b"].message == "x: -1.0 is negative"
    assert out["b"].detail == "neurorec.core.errors.DataError: x: -1.0 is negative"
    assert study.not_completed(out, lambda k: f"job {k}") == [
        "job b: failed (neurorec.core.errors.DataError: x: -1.0 is negative)"]
    with pytest.raises(SystemExit) as stop:
        study.exit_if_failed(out, lambda k: f"job {k}")
    assert stop.value.code == 1 and "job b failed:\nTraceback" in capsys.readouterr().err
    study.exit_if_failed({"a": out["a"]})  # nothing failed: no exit
    args = argparse.Namespace(jobs=4, device="cpu", max_minutes=8.0)
    assert study.start_line(12, args) == "12 jobs on 4 worker(s), device cpu, budget 8 min"


def test_a_bad_set_exits_2_in_one_line_through_an_analysis_script(tmp_path):
    """A mistake in --set is the user's: one line on stderr, exit 2, no traceback, no output
    directory; a bad common flag is refused by argparse, also with exit 2."""
    script = str(REPO / "analyses" / "ctrnn_tasks" / "run.py")
    out = tmp_path / "o"
    proc = subprocess.run([sys.executable, script, "--out", str(out), "--set", "n_units=0"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"{REPO / 'models' / 'ctrnn_study.yaml'}: n_units: Input should be greater than or "
        "equal to 1 (got 0) (from --set)"]
    assert not out.exists()
    proc = subprocess.run([sys.executable, script, "--out", str(out), "--jobs", "0"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].endswith("argument --jobs: '0': must be greater than 0")
    assert not out.exists()
