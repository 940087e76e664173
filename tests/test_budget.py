"""Wall-clock budget and the process pool of the study pipelines (workflows.study): results
in job order and equal to a serial run, failures and time-outs reported per job, busy workers
terminated at the budget's end, and the conv-RNN fit stopping between epochs."""

from __future__ import annotations

import math
import operator
import time

import numpy as np
import pytest
import torch

from neurorec.families.conv_rnn.model import ConvRNN
from neurorec.families.conv_rnn.spec import ConvRNNSpec
from neurorec.fit.run import Run
from neurorec.spec.oscillator import OscillatingObjectSpec
from neurorec.stimuli.oscillator import make_movies
from neurorec.workflows.study import Budget, OutOfTime, current_budget, require, run_jobs, summary


def test_budget_from_minutes():
    t0 = time.time()
    b = Budget.from_minutes(10)
    assert b.stop_at - t0 == pytest.approx(600 - 60, abs=1)  # 60 s kept for the report
    assert b.kill_at - t0 == pytest.approx(600 - 20, abs=1)
    short = Budget.from_minutes(1)  # reserves shrink to a quarter / a tenth of a short budget
    assert short.stop_at - t0 == pytest.approx(45, abs=1)
    assert short.kill_at - t0 == pytest.approx(54, abs=1)
    unlimited = Budget.from_minutes(None)
    assert unlimited.stop_at is None and not unlimited.out_of_time()
    unlimited.check()  # never raises
    with pytest.raises(OutOfTime, match="step 3"):
        Budget(stop_at=time.time() - 1).check("step 3")


def test_require_names_the_missing_package(capsys):
    require({"numpy": "numpy"})
    with pytest.raises(SystemExit) as stop:
        require({"numpy": "numpy", "no_such_module_xyz": "no-such-package"})
    assert stop.value.code == 2
    assert "no_such_module_xyz (pip install no-such-package)" in capsys.readouterr().err


def _stops_when_told(x: float) -> float:
    current_budget().check(f"job {x}")
    return x


def test_serial_jobs_in_order_with_failures_and_stops():
    seen = []
    jobs = [("a", operator.add, (1, 2)), ("b", math.sqrt, (-1.0,)), ("c", _stops_when_told, (5,))]
    out = run_jobs(jobs, 1, Budget(), on_done=lambda o: seen.append(o.key))
    assert list(out) == seen == ["a", "b", "c"]
    assert out["a"].status == "done" and out["a"].result == 3
    assert out["b"].status == "failed" and "ValueError: math domain error" in out["b"].error
    assert out["c"].result == 5
    # budget already spent: a job that checks it stops; nothing else is started
    late = Budget(stop_at=time.time() - 1)
    out = run_jobs([("c", _stops_when_told, (5,)), ("d", operator.add, (1, 1))], 1, late)
    assert out["c"].status == "not_started" and out["d"].status == "not_started"
    assert summary(out) == {"not_started": 2}
    assert current_budget().stop_at is None  # the job's budget does not leak out


def test_pool_equals_serial_and_kills_busy_workers():
    jobs = [(k, math.fsum, ([0.1] * k,)) for k in range(1, 6)]
    serial = run_jobs(jobs, 1, Budget())
    pooled = run_jobs(jobs, 2, Budget())
    assert list(pooled) == list(serial)
    assert [o.result for o in pooled.values()] == [o.result for o in serial.values()]
    # a job still running at kill_at is reported as killed and its worker stopped at once
    # (kill_at leaves spawned workers 20 s to start: importing torch on a busy 2-core machine
    # took more than 8 s once)
    t0 = time.time()
    out = run_jobs([("quick", operator.mul, (6, 7)), ("slow", time.sleep, (300,))], 2,
                   Budget(stop_at=t0 + 60, kill_at=t0 + 20), poll_s=0.1)
    assert out["quick"].result == 42 and out["slow"].status == "killed"
    assert time.time() - t0 < 40


def test_conv_rnn_stops_between_epochs_and_resumes(tmp_path):
    movies = make_movies(OscillatingObjectSpec(size_px=21, n_frames=12, n_angles=6,
                                               amplitude_px=5, period_frames=8,
                                               object={"sigma_px": 1.0}))
    spec = ConvRNNSpec(autoencoder={"channels": (4, 4), "epochs": 3, "batch_size": 16},
                       rnn={"n_units": 6, "delta_t": 2, "epochs": 3, "batch_size": 2})
    full = ConvRNN(spec, seed=2).fit(movies.frames, progress=False)
    assert not full.stopped_early_
    # told to stop after the first autoencoder epoch: stage 1 ends there, the RNN keeps its
    # initial weights, and the checkpoint lets the same fit continue to the end
    calls = []
    ck = tmp_path / "ck"
    part = ConvRNN(spec, seed=2).fit(movies.frames, progress=False, run=Run(ck, resume=True),
                             should_stop=lambda: calls.append(1) or True)
    assert part.stopped_early_ and len(calls) == 1
    assert [h["stage"] for h in part.history_] == ["autoencoder"]
    assert part.transform(movies.frames[:1])["prediction"].shape == (1, 12, 21, 21)
    # stopped in stage 2 after one RNN epoch, then resumed: bitwise the uninterrupted fit
    ck2 = tmp_path / "ck2"
    n_rnn = []

    def after_one_rnn_epoch() -> bool:
        n_rnn.append(1)
        return len(n_rnn) == 4  # 2 checks after autoencoder epochs 1-2, then 2 RNN checks

    mid = ConvRNN(spec, seed=2).fit(movies.frames, progress=False, run=Run(ck2, resume=True),
                            should_stop=after_one_rnn_epoch)
    assert mid.stopped_early_
    assert [h["stage"] for h in mid.history_] == ["autoencoder"] * 3 + ["rnn"]
    resumed = ConvRNN(spec, seed=2).fit(movies.frames, progress=False, run=Run(ck2, resume=True))
    assert [h["loss"] for h in resumed.history_] == [h["loss"] for h in full.history_]
    for k, v in full.rnn_.state_dict().items():
        torch.testing.assert_close(resumed.rnn_.state_dict()[k], v, rtol=0, atol=0)
    assert np.isfinite([h["val_loss"] for h in resumed.history_]).all()
