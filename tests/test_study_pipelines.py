"""The three study pipelines end to end at tiny sizes (the seq-MNIST one is marked slow,
~80 s): a pool of workers gives the numbers of a serial run, and a run stopped by its time
budget still writes its report and says what did not finish."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "analyses" / script / "run.py"), *args],
                          capture_output=True, text=True, timeout=600, check=False)


def test_ctrnn_tasks_pool_equals_serial_and_theta0_is_the_main_network(tmp_path):
    tiny = ["--networks", "2", "--steps", "20", "--set", "n_units=16", "--thetas", "0", "30",
            "--theta-networks", "2", "--flipflop-steps", "20", "--fp-starts", "16",
            "--fp-iter", "50", "--quiet"]
    for jobs in ("1", "2"):
        p = run("ctrnn_tasks", "--out", str(tmp_path / jobs), "--jobs", jobs, *tiny)
        assert p.returncode == 0, p.stderr
    a, b = (pd.read_csv(tmp_path / j / "results.csv") for j in ("1", "2"))
    pd.testing.assert_frame_equal(a.drop(columns="train_s"), b.drop(columns="train_s"))
    sweep = pd.read_csv(tmp_path / "1" / "theta_sweep.csv")
    pd.testing.assert_frame_equal(sweep, pd.read_csv(tmp_path / "2" / "theta_sweep.csv"))
    # the θ = 0 network of each task's sweep is that task's main network (same seed, same PI)
    theta0 = sweep[sweep.theta_deg == 0].set_index(["task", "seed"])
    main = a.set_index(["task", "seed"]).loc[theta0.index]
    assert set(theta0.index.get_level_values("task")) == {"perception", "decision"}
    assert (theta0.pi_trained == main.pi_trained).all()
    m = json.loads((tmp_path / "2" / "metrics.json").read_text())
    assert m["networks_completed"] == {"perception": 2, "decision": 2}
    assert m["jobs_not_completed"] == []


@pytest.mark.slow
def test_seqmnist_budget_stops_and_the_same_command_continues(tmp_path):
    out = tmp_path / "sm"
    args = ["--out", str(out), "--n-networks", "2", "--set", "fit.epochs=30",
            "--attractor-images", "60", "--attractor-transient", "50", "--lyapunov-steps", "10",
            "--tsne-images", "60", "--jobs", "2", "--overwrite"]
    # 30 s: training stops after 22.5 s (~1.7-4 s an epoch here), before any network is done
    p = run("seqmnist_dynamics", *args, "--max-minutes", "0.5")
    assert p.returncode != 0 and "no network finished" in p.stderr
    assert "stopped after epoch" in p.stderr
    assert (tmp_path / ".sm.net0.checkpoint.pt").is_file()  # kept to continue from
    p = run("seqmnist_dynamics", *args)
    assert p.returncode == 0, p.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["networks_completed"] == 2 and m["networks_not_completed"] == []
    assert m["epochs"] == 30 and len(m["networks"]) == 2
    assert not (tmp_path / ".sm.net0.checkpoint.pt").exists()


def test_oscillator_splits_write_one_report_each(tmp_path):
    out = tmp_path / "osc"
    p = run("oscillator_prediction", "--out", str(out), "--splits", "random,left_right,up_down",
            "--jobs", "2", "--set", "autoencoder.epochs=1", "--set", "rnn.epochs=1",
            "--stimulus-set", "n_angles=24", "--stimulus-set", "n_frames=24", "--quiet")
    assert p.returncode == 0, p.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert sorted(m["splits"]) == ["left_right", "random", "up_down"]
    # left/right holds out the axes at 165-195 and 345-15 deg: 6 of 24 angles
    assert m["splits"]["left_right"]["n_test_movies"] == 6
    assert m["splits"]["left_right"]["test_angles_deg"] == [0.0, 15.0, 165.0, 180.0, 195.0,
                                                            345.0]
    for split in m["splits"]:
        assert (out / split / "report.html").is_file()
        assert (out / split / "frames.png").is_file()
    assert "| motion direction decoding, RNN |" in (out / "RESULTS.md").read_text()
