"""``neurorec sweep`` on dask.distributed: real GLM fits on V1 sessions on a LocalCluster of two
worker processes and on a scheduler + workers started as separate processes; every row of the
results table equals a single ``neurorec fit`` of the same run; a failing run is reported with
its error and retried once; a resumed sweep skips finished runs.

Fits are kept to a second or two: the stimulus-only GLM with 3 basis functions, one condition
(contrast, constant in these sessions) so the report draws one PSTH column, 20 L-BFGS steps.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from neurorec.cli import main
from neurorec.core.errors import SpecError
from neurorec.spec.sweep import load_sweep_spec
from neurorec.workflows.sweep import plan, run_id

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "models" / "glm_stimulus_only.yaml"
TINY = ["fit.max_iter=20", "stimulus.n_basis=3", "fit.newton_polish=false",
        "data.conditions=[contrast]"]
GOOD = ["v1_gratings:23", "v1_gratings:7"]  # the two smallest sessions (80 and 96 trials)
BAD = "v1_gratings:99"  # no such session: a DataError inside the worker


def write_sweep(path: Path, datasets: list[str], seeds: list[int], **extra) -> Path:
    body = {"kind": "sweep", "name": "test", "spec": str(SPEC), "set": TINY,
            "datasets": datasets, "seeds": seeds}
    body.update(extra)
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def run_cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """Two real fits and one failing run on a LocalCluster of 2 worker processes."""
    root = tmp_path_factory.mktemp("sweep")
    path = write_sweep(root / "sweep.yaml", [*GOOD, BAD], [0])
    out = root / "out"
    code = main(["sweep", str(path), "--out", str(out), "--workers", "2", "--threads", "1",
                 "--quiet"])
    return path, out, code


def test_local_cluster_rows_equal_single_fits(local_sweep, tmp_path, capsys):
    _, out, _ = local_sweep
    table = pd.read_csv(out / "results.csv")
    assert list(table.columns[:5]) == ["run_id", "status", "resumed", "dataset", "seed"]
    assert len(table) == 3
    done = table[table.status == "finished"].set_index("dataset")
    assert sorted(done.index) == sorted(GOOD)
    # the same run through `neurorec fit` in this process gives the same numbers
    ref = tmp_path / "single"
    assert run_cli(capsys, "fit", SPEC, "--data", GOOD[0], "--seed", "0", "--out", ref,
                   "--quiet", *[a for s in TINY for a in ("--set", s)])[0] == 0
    single = json.loads((ref / "metrics.json").read_text())
    row = done.loc[GOOD[0]]
    for key in ("bits_per_spike", "log_likelihood", "train_log_likelihood", "aic"):
        assert row[key] == pytest.approx(single[key], rel=1e-12, abs=0), key
    for key in ("n_spikes", "n_neurons", "n_bins", "n_parameters"):
        assert row[key] == single[key], key
    # and the run's own directory is a complete `fit` output
    run_dir = out / "runs" / row["run_id"]
    assert {"metrics.json", "predictions.npz", "params.npz", "spec.yaml", "report.html"} <= {
        p.name for p in run_dir.iterdir()}
    assert json.loads((run_dir / "metrics.json").read_text())["bits_per_spike"] == \
        pytest.approx(single["bits_per_spike"], rel=1e-12)


def test_failing_run_reported_and_retried_once(local_sweep):
    _, out, code = local_sweep
    assert code == 2  # the sweep finishes, then reports its failure as a user error
    table = pd.read_csv(out / "results.csv", keep_default_na=False)
    bad = table[table.dataset == BAD].iloc[0]
    assert bad.status == "failed" and bad.attempts == 2
    assert "DataError" in bad.error and "expected an integer in 0..26" in bad.error
    failures = json.loads((out / "failures.json").read_text())["failed"]
    assert [f["dataset"] for f in failures] == [BAD]
    assert len(failures[0]["errors"]) == 2  # first attempt and its retry
    assert not (out / "runs" / bad.run_id).exists()
    assert (table[table.status == "finished"].attempts == 1).all()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_separate_scheduler_resumes_and_skips_finished(local_sweep, tmp_path, capsys):
    """`dask scheduler` and `dask worker` started as their own processes on localhost finish a
    sweep interrupted on the LocalCluster: the finished run is skipped (not rerun), the
    missing one is run and equals the LocalCluster's numbers, the bad one fails again."""
    path, local_out, _ = local_sweep
    out = tmp_path / "out"
    shutil.copytree(local_out, out)
    table = pd.read_csv(out / "results.csv").set_index("dataset")
    keep, redo = (out / "runs" / table.loc[d, "run_id"] for d in GOOD)
    stamp = (keep / "metrics.json").stat().st_mtime_ns
    shutil.rmtree(redo)  # interrupted before this run's directory appeared

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler",
                               "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        time.sleep(1.0)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "2",
             "--nthreads", "1", "--no-dashboard", "--local-directory", str(tmp_path / "dw")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path))
        code, stdout, err = run_cli(capsys, "sweep", path, "--out", out, "--scheduler",
                                    address, "--workers", "2", "--threads", "1", "--quiet")
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
    assert code == 2, err  # the bad run still fails, after its retry
    assert f"scheduler {address}: 2 workers" in stdout
    assert "1 finished before, 2 to run" in stdout
    assert (keep / "metrics.json").stat().st_mtime_ns == stamp  # skipped, not rerun
    again = pd.read_csv(out / "results.csv").set_index("dataset")
    assert bool(again.loc[GOOD[0], "resumed"]) and not bool(again.loc[GOOD[1], "resumed"])
    assert again.loc[BAD, "status"] == "failed" and again.loc[BAD, "attempts"] == 2
    for key in ("bits_per_spike", "log_likelihood", "aic"):
        # the rerun on the other cluster gives the LocalCluster's numbers (same seed, 1 thread)
        assert again.loc[GOOD[1], key] == pytest.approx(table.loc[GOOD[1], key], rel=1e-12)
        assert again.loc[GOOD[0], key] == table.loc[GOOD[0], key]


# ------------------------------------------------------------------------ schema and plan
def test_grid_plan_and_ids(tmp_path):
    path = write_sweep(tmp_path / "s.yaml", GOOD, [0, 4],
                       grid={"penalty.l2": [0, 1.0e-3], "data.conditions": [["direction"]]})
    sweep = load_sweep_spec(path)
    runs = plan(sweep, path)
    assert len(runs) == 2 * 2 * 2
    assert len({r.run_id for r in runs}) == 8
    r = next(r for r in runs if r.dataset == GOOD[1] and r.seed == 4
             and r.point["penalty.l2"] == 1.0e-3)
    assert r.run_id == "v1_gratings-7__seed4__penalty.l2=0.001__data.conditions=-direction"
    assert r.overrides[-2:] == ("penalty.l2=0.001", "data.conditions=[direction]")
    assert run_id("v1_gratings:7", 4, r.point) == r.run_id  # content-addressed: resumable


def test_list_points(tmp_path):
    path = write_sweep(tmp_path / "s.yaml", GOOD[:1], [0],
                       list=[{"stimulus.n_basis": 4}, {"stimulus.n_basis": 5, "penalty.l2": 0.1}])
    runs = plan(load_sweep_spec(path), path)
    assert [r.point for r in runs] == [{"stimulus.n_basis": 4},
                                       {"stimulus.n_basis": 5, "penalty.l2": 0.1}]
    assert load_sweep_spec(path).point_paths() == ["stimulus.n_basis", "penalty.l2"]


@pytest.mark.parametrize("extra, message", [
    ({"seeds": [0, 0]}, r"s\.yaml: seeds: seeds must be distinct"),
    ({"grid": {"penalty.l2": []}}, r"s\.yaml: grid: penalty\.l2: needs at least one value"),
    ({"grid": {"a": [1]}, "list": [{"a": 1}]}, r"s\.yaml: \(top\): give either grid or list"),
    ({"set": ["fit.max_iter"]}, r"s\.yaml: set: --set fit\.max_iter: expected field\.path=value"),
    ({"device": "tpu"}, r"s\.yaml: device: expected cpu, cuda or cuda:N"),
    ({"retry": 1}, r"s\.yaml: retry: unknown key \(line \d+\)"),
])
def test_schema_errors(tmp_path, extra, message):
    path = write_sweep(tmp_path / "s.yaml", GOOD, [0])
    body = yaml.safe_load(path.read_text())
    body.update(extra)
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    with pytest.raises(SpecError, match=message):
        load_sweep_spec(path)


def test_invalid_point_named_before_anything_runs(tmp_path, capsys):
    path = write_sweep(tmp_path / "s.yaml", GOOD, [0], grid={"stimulus.n_basis": [3, 0]})
    code, _, err = run_cli(capsys, "sweep", path, "--out", tmp_path / "out")
    assert code == 2
    assert err.strip().splitlines() == [
        f"{path}: point stimulus.n_basis=0: {SPEC}: stimulus.n_basis: Input should be greater "
        "than or equal to 1 (got 0) (from --set)"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sweep_file", sorted((REPO / "sweeps").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_example_sweeps_validate(sweep_file):
    runs = plan(load_sweep_spec(sweep_file), sweep_file)
    assert runs
