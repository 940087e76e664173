"""The argument layer of the ``neurorec`` command: each case that used to end in a traceback
(issue 30) is now one line on stderr, exit code 2, nothing created — or, where the request is
sound, a run that succeeds."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from neurorec.cli import main
from neurorec.spec import load_model_spec
from neurorec.workflows.cv import L2_GRID, penalty_grid

REPO = Path(__file__).resolve().parents[1]
GLM = REPO / "models" / "glm_stimulus_only.yaml"
CTRNN = REPO / "models" / "ctrnn_flipflop.yaml"
FLIPFLOP = REPO / "stimuli" / "task_flip_flop.yaml"
SSRNN = REPO / "models" / "ssrnn_movies.yaml"
MOVIE = REPO / "stimuli" / "natural_movie_12px.yaml"
PROBE = REPO / "stimuli" / "ssrnn_direction_probe.yaml"


def run(capsys, *argv) -> tuple[int, str, list[str]]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


def refused(capsys, tmp_path: Path, *argv) -> str:
    """Run ``argv`` in ``tmp_path``; assert exit 2, one stderr line, nothing new; the line."""
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, ""), err
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    return err[0]


def commands(tmp_path: Path) -> dict[str, list]:
    """A well-formed invocation of every command that takes --seed, writing under tmp_path."""
    out = tmp_path / "out"
    return {
        "fit": ["fit", GLM, "--data", "v1_gratings:23", "--out", out],
        "demo": ["demo", "--out", out],
        "simulate": ["simulate", CTRNN, "--protocol", FLIPFLOP, "--out", out],
        "train --task": ["train", CTRNN, "--task", FLIPFLOP, "--out", out],
        "train --stimulus": ["train", SSRNN, "--stimulus", MOVIE, "--out", out],
        "probe": ["probe", tmp_path, "--protocol", PROBE, "--out", out],
        "connectomics": ["connectomics", tmp_path, "--tuning", PROBE, "--out", out],
        "export-nwb": ["export-nwb", "v1_gratings:23", "--out", tmp_path / "x.nwb"],
    }


@pytest.mark.parametrize("seed", ["-1", "99999999999999999999", "4294967296", "nan", "1.5"])
@pytest.mark.parametrize("command", ["fit", "demo", "simulate", "train --task",
                                     "train --stimulus", "probe", "connectomics",
                                     "export-nwb"])
def test_seeds_out_of_range_are_refused_on_every_command(tmp_path, capsys, command, seed):
    line = refused(capsys, tmp_path, *commands(tmp_path)[command], "--seed", seed)
    name = command.split()[0]
    assert line.startswith(f"neurorec {name}: Invalid value for '--seed': ")
    assert "0<=x<=4294967295" in line or "is not a valid integer" in line
    assert line.endswith(f"(see 'neurorec {name} --help')")


@pytest.mark.parametrize(("trials", "message"), [
    ("0", "0 is not in the range 1<=x<=1000000"),
    ("-3", "-3 is not in the range 1<=x<=1000000"),
    ("100000000", "100000000 is not in the range 1<=x<=1000000"),
])
def test_simulate_trial_counts(tmp_path, capsys, trials, message):
    line = refused(capsys, tmp_path, *commands(tmp_path)["simulate"], "--trials", trials)
    assert message in line


def test_simulate_trials_beyond_memory(tmp_path, capsys, monkeypatch):
    import neurorec.workflows.resources as resources

    monkeypatch.setattr(resources, "available_memory_bytes", lambda: 2**30)
    # flip-flop: 100 steps, 64 units, 3 inputs, 3 outputs: 4 × 100 × (64 + 3 + 6) × 8 B/trial
    need = 4 * 100 * (64 + 3 + 6) * 8 * 5000
    line = refused(capsys, tmp_path, *commands(tmp_path)["simulate"], "--trials", "5000")
    assert line == (f"--trials 5000: the activity needs about {need / 2**30:.3g} GiB (100 "
                    "steps × 64 units per trial); 1 GiB available: simulate fewer trials")


def test_simulate_weights_of_another_task(tmp_path, capsys):
    w = tmp_path / "w.npz"
    rng = np.random.default_rng(0)
    np.savez(w, w_rec=rng.normal(size=(64, 64)), w_in=rng.normal(size=(64, 1)),
             w_out=rng.normal(size=(1, 64)), b=np.zeros(64))
    line = refused(capsys, tmp_path, *commands(tmp_path)["simulate"], "--weights", w)
    assert line == (f"{w}: w_in is (64, 1), this spec on flip_flop needs (64, 3) (weights of "
                    "another spec or task?)")
    line = refused(capsys, tmp_path, *commands(tmp_path)["simulate"], "--weights",
                   tmp_path / "none.npz")
    assert line == f"{tmp_path / 'none.npz'}: --weights: file not found"


def test_plds_cv_grid_is_l2_only():
    """``PLDSPenalty`` has no ``l1``: --cv searches its ``l2`` (on C) alone."""
    spec = load_model_spec(REPO / "models" / "ladder" / "0_plds.yaml")
    assert penalty_grid(spec) == [{"l2": v} for v in L2_GRID]
    glm = load_model_spec(GLM)
    assert penalty_grid(glm) == [{"l2": v, "l1": glm.penalty.l1} for v in L2_GRID]


def test_export_nwb_of_a_train_dir_and_of_a_fit_dir_without_predictions(tmp_path, capsys):
    train = tmp_path / "train"
    train.mkdir()
    shutil.copy(CTRNN, train / "spec.yaml")
    line = refused(capsys, tmp_path, "export-nwb", train, "--out", tmp_path / "a.nwb")
    assert line == (f"{train}: kind: 'ctrnn' is not a model of recorded spike trains "
                    "(export-nwb samples a `neurorec fit` output dir)")
    fit = tmp_path / "fit"
    fit.mkdir()
    shutil.copy(GLM, fit / "spec.yaml")
    line = refused(capsys, tmp_path, "export-nwb", fit, "--out", tmp_path / "a.nwb")
    assert line == (f"{fit}: predictions.npz: not found (export-nwb samples one trial per "
                    "held-out trial of a `neurorec fit` output dir)")
    empty = tmp_path / "empty"
    empty.mkdir()
    line = refused(capsys, tmp_path, "export-nwb", empty, "--out", tmp_path / "a.nwb")
    assert line == f"{empty}: spec.yaml: not found (not a `neurorec fit` output dir)"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("address", ["garbage", "tcp://127.0.0.1", "tcp://127.0.0.1:99999",
                                     "closed"])
def test_sweep_scheduler_unreachable_or_malformed(tmp_path, capsys, address):
    sweep = REPO / "sweeps" / "glm_v1_sessions.yaml"
    if address == "closed":
        address = f"tcp://127.0.0.1:{_closed_port()}"
    start = time.perf_counter()
    line = refused(capsys, tmp_path, "sweep", sweep, "--out", tmp_path / "o", "--scheduler",
                   address)
    assert time.perf_counter() - start < 15
    assert line.startswith(f"--scheduler {address}: ")


def test_train_ssrnn_with_no_iterations(tmp_path, capsys):
    out = tmp_path / "o"
    code, stdout, err = run(capsys, "train", SSRNN, "--stimulus", MOVIE, "--out", out,
                            "--set", "learning.n_iterations=0", "--set", "n_units=8",
                            "--quiet")
    assert (code, err) == (0, [])
    assert "0 iterations (learning.n_iterations = 0): the untrained network was saved" in stdout
    assert (out / "report.html").is_file()


def test_validate_knows_sweep_files(capsys):
    paths = sorted((REPO / "sweeps").glob("*.yaml"))
    code, out, err = run(capsys, "validate", *paths)
    assert (code, err) == (0, [])
    assert out.splitlines() == [f"{p}: ok (sweep)" for p in paths]


def test_validate_reports_a_bad_sweep_field(tmp_path, capsys):
    bad = tmp_path / "s.yaml"
    bad.write_text(yaml.safe_dump({"kind": "sweep", "name": "t", "spec": str(GLM),
                                   "datasets": ["v1_gratings:1"], "seeds": "x"}))
    code, _, err = run(capsys, "validate", bad)
    assert code == 2 and len(err) == 1 and err[0].startswith(f"{bad}: seeds: ")


def test_probe_and_connectomics_inputs(tmp_path, capsys):
    missing = tmp_path / "nofit"
    line = refused(capsys, tmp_path, "probe", missing, "--protocol", PROBE, "--out",
                   tmp_path / "o")
    assert line == f"{missing}: FIT_DIR: folder not found"
    line = refused(capsys, tmp_path, "connectomics", PROBE, "--tuning", PROBE, "--out",
                   tmp_path / "o")
    assert line == f"{PROBE}: FIT_DIR: a file, not a folder"
    fit = tmp_path / "fit"
    fit.mkdir()
    (fit / "spec.yaml").write_text(SSRNN.read_text())
    line = refused(capsys, tmp_path, "probe", fit, "--protocol", tmp_path, "--out",
                   tmp_path / "o")
    assert line == f"{tmp_path}: --protocol: a folder, not a file"


@pytest.mark.parametrize(("value", "ok"), [("0", True), ("4294967295", True), ("-1", False),
                                           ("4294967296", False), ("nan", False)])
def test_analysis_scripts_take_the_same_seeds(value, ok, capsys):
    """The analyses' common --seed (workflows/study.py) accepts what the CLI accepts."""
    import argparse

    from neurorec.workflows import study

    parser = study.add_common_args(argparse.ArgumentParser(), "seed")
    if ok:
        assert parser.parse_args(["--seed", value]).seed == int(value)
    else:
        with pytest.raises(SystemExit) as stop:
            parser.parse_args(["--seed", value])
        assert stop.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1].startswith("usage: ") is False


def test_bare_command_prints_its_help(capsys):
    code, out, err = run(capsys)
    assert (code, err) == (0, [])
    assert out.startswith("Usage: neurorec [OPTIONS] COMMAND [ARGS]...")
    code, _, err = run(capsys, "fitt")
    assert code == 2 and err == ["neurorec: No such command 'fitt'. Did you mean 'fit'? (see "
                                 "'neurorec --help')"]


def test_heldout_neurons_zero_names_the_way_to_hold_out_unit_zero(tmp_path, capsys):
    line = refused(capsys, tmp_path, "fit", GLM, "--data", "v1_gratings:23", "--out",
                   tmp_path / "o", "--heldout-neurons", "0")
    assert line == ("--heldout-neurons 0: read as a fraction, which must lie in (0, 1); to hold "
                    "out the unit at position 0 give its id (tt3_u0)")


def test_a_silent_simulated_unit_is_left_out_of_the_nwb_with_a_warning(tmp_path, capsys):
    """A sample in which a unit fires no spike still exports: the unit is named on stderr and
    left out (NWB readers refuse an empty unit); the file reads back with the others."""
    from dataclasses import replace

    from neurorec.cli import _drop_silent_units
    from neurorec.data.nwb import read_nwb, write_nwb
    from neurorec.datasets import load

    rec = load("v1_gratings:23")
    spikes = list(rec.spike_times)
    spikes[2] = np.array([])
    sim = replace(rec, spike_times=spikes)
    kept = _drop_silent_units(sim, tmp_path / "s.nwb")
    err = capsys.readouterr().err.splitlines()
    assert err == [f"{tmp_path / 's.nwb'}: warning: 1 simulated unit(s) fired no spike and are "
                   f"left out ({rec.unit_ids[2]}); {len(spikes) - 1} units written"]
    back = read_nwb(write_nwb(kept, tmp_path / "s.nwb"))
    assert [str(u) for u in back.unit_ids] == [str(u) for i, u in enumerate(rec.unit_ids)
                                                 if i != 2]
    for a, b in zip(back.spike_times, [t for i, t in enumerate(spikes) if i != 2], strict=True):
        np.testing.assert_allclose(a, b)
