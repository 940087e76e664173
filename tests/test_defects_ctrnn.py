"""Defects of the ctrnn / ctrnn_obs kinds, each checked through the command a user runs.

1. ``neurorec export-nwb DIR`` on a ctrnn_obs fit directory crashed (only ``params_`` was
   restored; sampling needs the fitted module): fits now save the model whole (``model.pt``).
3. ``neurorec simulate`` / ``train`` with a protocol that is not a task printed a traceback:
   now one line naming the file and field, exit 2, nothing written.
4. ``neurorec fit --resume`` on a ctrnn_obs spec restarted from step 0: the Adam loop now
   checkpoints into ``OUT.partial/`` and continues from there, bitwise.
5. The ctrnn_obs report shipped an empty ``filters.png`` captioned "during L-BFGS".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neurorec.cli import main
from neurorec.data.recording import TrialLayout
from neurorec.families.ctrnn_obs.model import CTRNNObs
from neurorec.fit.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
CTRNN_V1 = REPO / "models" / "ctrnn_v1.yaml"
GLM_V1 = REPO / "models" / "glm_v1.yaml"
# a tiny ctrnn_obs fit on 4 units: held-back NLL every 5 steps, never early-stopped
SMALL_OBS = ["--quiet", "--seed", "2", "--set", "network.n_units=4",
             "--set", "training.n_steps=30", "--set", "training.batch_size=16",
             "--set", "training.validate_every=5", "--set", "training.patience=100"]


def _fit(spec: Path, data: Path, out: Path, *extra: str) -> Path:
    assert main(["fit", str(spec), "--data", str(data), "--out", str(out), *extra]) == 0
    return out


@pytest.fixture(scope="module")
def obs_fit(tmp_path_factory, small_nwb) -> Path:
    return _fit(CTRNN_V1, small_nwb, tmp_path_factory.mktemp("obs") / "fit", *SMALL_OBS)


@pytest.fixture(scope="module")
def glm_fit(tmp_path_factory, small_nwb) -> Path:
    return _fit(GLM_V1, small_nwb, tmp_path_factory.mktemp("glm") / "fit", "--quiet",
                "--set", "coupling.enabled=false", "--set", "fit.max_iter=15")


def _params(out: Path) -> dict[str, np.ndarray]:
    with np.load(out / "params.npz") as p:
        return {k: p[k] for k in p.files}


# ------------------------------------------------------------------------------ defect 1
def test_export_nwb_of_a_ctrnn_obs_fit(obs_fit, tmp_path, capsys):
    from neurorec.workflows.simulate import load_fitted

    nwb = tmp_path / "sim.nwb"
    assert main(["export-nwb", str(obs_fit), "--out", str(nwb), "--seed", "1"]) == 0
    assert nwb.is_file() and "units" in capsys.readouterr().out
    assert (obs_fit / "model.pt").is_file()
    model = load_fitted(obs_fit)  # the whole fitted model: it predicts what the fit predicted
    assert isinstance(model, CTRNNObs)
    with np.load(obs_fit / "predictions.npz") as pred:
        rates, condition = pred["rates"], pred["condition"]
    like = TrialLayout(condition, model.n_bins_)
    a = model.sample(len(condition), seed=4, like=like)
    np.testing.assert_array_equal(a, load_fitted(obs_fit).sample(len(condition), seed=4,
                                                                 like=like))
    assert a.shape == rates.shape


def test_a_fit_dir_without_model_pt(obs_fit, glm_fit, tmp_path, capsys):
    import shutil

    old_glm, old_obs = tmp_path / "glm", tmp_path / "obs"
    for src, dst in ((glm_fit, old_glm), (obs_fit, old_obs)):
        shutil.copytree(src, dst)
        (dst / "model.pt").unlink()  # as written before models were saved whole
    # the legacy params.npz loader is gone (issue 26): every such directory is refused the same
    for old, name in ((old_glm, "g.nwb"), (old_obs, "o.nwb")):
        assert main(["export-nwb", str(old), "--out", str(tmp_path / name)]) == 2
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith(f"{old}: model.pt: not found") and "Traceback" not in line
        assert not (tmp_path / name).exists()


# ------------------------------------------------------------------------------ defect 3
@pytest.mark.parametrize("argv, bad", [
    (["simulate", "models/ctrnn_study.yaml", "--protocol", "stimuli/gratings_speed_sweep.yaml"],
     "stimuli/gratings_speed_sweep.yaml: kind: 'drifting_gratings' is not a task protocol"),
    (["train", "models/ctrnn_study.yaml", "--task", "stimuli/oscillator.yaml"],
     "stimuli/oscillator.yaml: kind: 'oscillating_object' is not a task protocol"),
    (["train", "models/ctrnn_v1.yaml", "--task", "stimuli/task_perception.yaml"],
     "models/ctrnn_v1.yaml: kind: 'ctrnn_obs' is not a ctrnn spec"),
], ids=["simulate-gratings", "train-oscillator", "train-ctrnn_obs-spec"])
def test_simulate_and_train_refuse_what_they_cannot_run(argv, bad, tmp_path, capsys,
                                                        monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / "x"
    assert main([*argv, "--out", str(out), "--quiet"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(bad), line
    assert not out.exists() and not out.with_name("x.partial").exists()


# ------------------------------------------------------------------------------ defect 4
class _Stop(Exception):
    pass


def test_ctrnn_obs_fit_resume_continues_bitwise(obs_fit, small_nwb, tmp_path, monkeypatch,
                                                capsys):
    real = CTRNNObs._objective
    calls = [0]

    def counted(stop_after):
        def objective(self, *args):
            calls[0] += 1
            if calls[0] > stop_after:
                raise _Stop
            return real(self, *args)
        return objective

    out, work = tmp_path / "fit", tmp_path / "fit.partial"
    monkeypatch.setattr(CTRNNObs, "_objective", counted(17))  # killed during step 18
    with pytest.raises(_Stop):
        main(["fit", str(CTRNN_V1), "--data", str(small_nwb), "--out", str(out), *SMALL_OBS])
    state = load_checkpoint(work / "adam-0.pt")
    assert state["iteration"] == 15 and not state["finished"] and not out.exists()

    # a checkpoint of another run (here: seed) is refused, in one line
    capsys.readouterr()
    other = [*SMALL_OBS[:2], "3", *SMALL_OBS[3:]]
    assert main(["fit", str(CTRNN_V1), "--data", str(small_nwb), "--out", str(out), *other,
                 "--resume"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"{work / 'adam-0.pt'}: checkpoint of another run (seed differ); resume with the "
        "same spec, data, seed and device, or pass --overwrite to start over")

    calls[0] = 0
    monkeypatch.setattr(CTRNNObs, "_objective", counted(10**6))
    _fit(CTRNN_V1, small_nwb, out, *SMALL_OBS, "--resume")
    assert calls[0] == 30 - 15 + 1  # the 15 steps left and the final objective: no restart
    ref, got = _params(obs_fit), _params(out)
    assert ref.keys() == got.keys()
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
    history = json.loads((out / "fit_history.json").read_text())["history"]
    assert history == json.loads((obs_fit / "fit_history.json").read_text())["history"]
    assert not work.exists()


# ------------------------------------------------------------------------------ defect 5
def test_reports_show_what_was_fitted(obs_fit, glm_fit):
    obs_html = (obs_fit / "report.html").read_text()
    assert not (obs_fit / "filters.png").exists() and "filters.png" not in obs_html
    assert "during Adam" in obs_html and "L-BFGS" not in obs_html
    assert json.loads((obs_fit / "metrics.json").read_text())["convergence"]["optimizer"] == "Adam"
    glm_html = (glm_fit / "report.html").read_text()
    assert (glm_fit / "filters.png").is_file()
    assert "Fitted filters: stimulus drive per unit and condition, spike-history gains." in glm_html
    # glm_v1 without coupling is convex: batched Newton fits it, and the report says so
    # (it used to say L-BFGS whichever solver ran; issue 30)
    assert "during Newton" in glm_html and "during L-BFGS" not in glm_html
    assert json.loads((glm_fit / "metrics.json").read_text())["convergence"]["optimizer"] == (
        "Newton")
