"""The ``neurorec`` command end to end: fit outputs checked against scipy, user errors as one
line and exit code 2, datasets, NWB export and determinism."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from neurorec.cli import main
from neurorec.data import bin_trials, read_nwb
from neurorec.datasets import load
from neurorec.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
GLM_V1, RGLM_V1 = REPO / "models" / "glm_v1.yaml", REPO / "models" / "rglm_v1.yaml"
FAST_RGLM = ["--set", "fit.max_iter=60", "--set", "recurrent.dim=2", "--set", "link=softplus",
             "--set", "fit.early_stopping=false"]


def run(capsys, *args: str) -> tuple[int, str, list[str]]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


@pytest.fixture(scope="module")
def glm_fit(tmp_path_factory):
    out = tmp_path_factory.mktemp("glm") / "fit"
    code = main(["fit", str(GLM_V1), "--data", "v1_gratings:0", "--out", str(out), "--quiet",
                 "--set", "fit.max_iter=20"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def rglm_fit(tmp_path_factory, small_nwb):
    out = tmp_path_factory.mktemp("rglm") / "fit"
    assert main(["fit", str(RGLM_V1), "--data", str(small_nwb), "--out", str(out), "--quiet",
                 "--seed", "5", *FAST_RGLM]) == 0
    return out


def test_fit_writes_metrics_that_match_the_predictions(glm_fit):
    m = json.loads((glm_fit / "metrics.json").read_text())
    for key in ("bits_per_spike", "log_likelihood", "n_spikes", "n_neurons", "n_bins",
                "per_neuron_bits_per_spike"):
        assert key in m
    with np.load(glm_fit / "predictions.npz") as p:
        counts, rates = p["counts"], p["rates"]
    data = bin_trials(load("v1_gratings:0"), 0.01, conditions=["direction"], test_fraction=0.2,
                      seed=0)
    # trial × time × unit, the held-out trials only
    assert counts.shape == rates.shape == (int(data.is_test.sum()), 90, 38)
    np.testing.assert_array_equal(counts, data.counts[data.is_test])
    assert m["n_spikes"] == counts.sum()
    assert m["n_neurons"] == 38
    assert m["n_bins"] == counts.shape[0] * counts.shape[1]
    assert m["log_likelihood"] == pytest.approx(stats.poisson.logpmf(counts, rates).sum(),
                                                rel=1e-12)
    y, r = counts.reshape(-1, 38), rates.reshape(-1, 38)
    gain = stats.poisson.logpmf(y, r).sum(0) - stats.poisson.logpmf(y, y.mean(0)).sum(0)
    assert m["bits_per_spike"] == pytest.approx(gain.sum() / (y.sum() * np.log(2)), abs=1e-10)
    per = np.array([np.nan if v is None else v for v in m["per_neuron_bits_per_spike"]])
    expected = np.where(y.sum(0) > 0, gain / (y.sum(0) * np.log(2)), np.nan)
    np.testing.assert_allclose(per, expected, atol=1e-10)
    assert m["bits_per_spike"] > 0


def test_fit_writes_spec_params_and_report(glm_fit):
    spec = load_spec(glm_fit / "spec.yaml")
    assert spec == load_spec(GLM_V1, ["fit.max_iter=20"])
    with np.load(glm_fit / "params.npz") as params:
        assert params["param_beta"].shape == (38, 16, 8)
        assert params["param_h"].shape == (38, 4)
    html = (glm_fit / "report.html").read_text()
    images = re.findall(r"src='([^']+)'", html)
    assert {"psth.png", "filters.png"} <= set(images)
    assert "eigenvalues.png" not in images
    for name in images:
        assert (glm_fit / name).is_file()


def test_rglm_report_has_eigenvalues(rglm_fit):
    html = (rglm_fit / "report.html").read_text()
    assert "eigenvalues.png" in re.findall(r"src='([^']+)'", html)
    assert (rglm_fit / "eigenvalues.png").is_file()
    m = json.loads((rglm_fit / "metrics.json").read_text())
    with np.load(rglm_fit / "params.npz") as params:
        eig = np.linalg.eigvals(params["param_R"])
    # τ = -Δt / ln|λ| for the saved R; a non-decaying mode (|λ| ≥ 1) has τ = inf, JSON null
    modulus = np.abs(eig)
    expected = sorted(-0.01 / np.log(modulus[modulus < 1]))
    got = m["time_constants_s"]
    assert got.count(None) == int((modulus >= 1).sum())
    np.testing.assert_allclose(sorted(t for t in got if t is not None), expected, rtol=1e-10)


def test_same_seed_same_metrics(rglm_fit, small_nwb, tmp_path):
    out = tmp_path / "again"
    assert main(["fit", str(RGLM_V1), "--data", str(small_nwb), "--out", str(out), "--quiet",
                 "--seed", "5", *FAST_RGLM]) == 0
    a = json.loads((rglm_fit / "metrics.json").read_text())
    b = json.loads((out / "metrics.json").read_text())
    for m in (a, b):
        m.pop("fit_time_s")
        m.pop("evaluation_time_s", None)  # wall-clock seconds of the held-out evaluation
        m["convergence"].pop("fit_time_s")
    assert a == b
    with np.load(rglm_fit / "params.npz") as p, np.load(out / "params.npz") as q:
        for k in p.files:
            np.testing.assert_array_equal(p[k], q[k])


def test_existing_out_is_refused(glm_fit, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in glm_fit.iterdir()}
    code, out, err = run(capsys, "fit", GLM_V1, "--data", "v1_gratings:0", "--out", glm_fit,
                         "--quiet")
    assert (code, out) == (2, "")
    assert err == [f"{glm_fit}: output directory exists (pass --overwrite to replace it)"]
    assert {p.name: p.stat().st_mtime_ns for p in glm_fit.iterdir()} == before


@pytest.mark.parametrize(("data", "message"), [
    ("nonexistent.nwb", "nonexistent.nwb: file not found"),
    ("no_such_dataset:1", "no_such_dataset"),
])
def test_failing_run_leaves_nothing(data, message, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run(capsys, "fit", GLM_V1, "--data", data, "--out", out, "--quiet")
    assert code == 2
    assert len(err) == 1 and err[0].startswith(data.split(":")[0])
    assert message in err[0]
    assert "Traceback" not in err[0]
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_cpu_machine(small_nwb, tmp_path, capsys):
    code, _, err = run(capsys, "fit", GLM_V1, "--data", small_nwb, "--out", tmp_path / "o",
                       "--quiet", "--device", "cuda")
    assert code == 2
    assert err == [f"--device cuda: torch.cuda.is_available() is False on this machine "
                   f"(torch {torch.__version__}); use --device cpu"]
    assert not (tmp_path / "o").exists()


def test_bad_spec_in_fit(tmp_path, capsys):
    code, _, err = run(capsys, "fit", GLM_V1, "--data", "v1_gratings:0", "--out",
                       tmp_path / "o", "--set", "fit.max_iter=-1")
    assert code == 2
    assert err == [f"{GLM_V1}: fit.max_iter: Input should be greater than or equal to 1 "
                   "(got -1) (from --set)"]


def test_datasets_lists_licences(capsys):
    code, out, err = run(capsys, "datasets")
    assert (code, err) == (0, [])
    for name in ("v1_gratings", "locust_al"):
        block = out.split(f"{name}  (")[1].split("\n\n")[0]
        assert re.search(r"^  licence: \S", block, re.M), block
        assert re.search(r"^  cite: \S", block, re.M), block
    assert "load as v1_gratings:0..26" in out


def test_export_dataset_round_trips(tmp_path, capsys):
    path = tmp_path / "x.nwb"
    code, out, err = run(capsys, "export-nwb", "v1_gratings:0", "--out", path)
    assert (code, err) == (0, [])
    rec = load("v1_gratings:0")
    back = read_nwb(path)
    a = bin_trials(rec, 0.01, test_fraction=0.2, seed=0)
    b = bin_trials(back, 0.01, test_fraction=0.2, seed=0)
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_array_equal(a.is_test, b.is_test)
    assert out.startswith(f"{path}: 38 units, {len(rec.trials)} trials, "
                          f"{sum(len(s) for s in rec.spike_times)} spikes")
    # and it is not overwritten without --overwrite
    code, _, err = run(capsys, "export-nwb", "v1_gratings:0", "--out", path)
    assert (code, err) == (2, [f"{path}: file exists (pass --overwrite to replace it)"])


def test_export_fit_dir_loads_in_pynapple(rglm_fit, tmp_path, capsys):
    nap = pytest.importorskip("pynapple")
    path = tmp_path / "sim.nwb"
    code, _, err = run(capsys, "export-nwb", rglm_fit, "--out", path, "--seed", "2")
    assert (code, err) == (0, [])
    m = json.loads((rglm_fit / "metrics.json").read_text())
    units = nap.load_file(str(path))["units"]
    assert len(units) == m["n_neurons"] == 4
    # one simulated trial per held-out trial, binned back to the model's bins
    sim = bin_trials(read_nwb(path), 0.01, conditions=["condition"], test_fraction=0.2, seed=0)
    assert sim.counts.shape == (m["n_test_trials"], m["n_bins_per_trial"], 4)


def test_export_of_a_runaway_model_is_a_user_error(rglm_fit, tmp_path, capsys):
    """A self-exciting history makes samples explode: one line, exit 2, no file. (The shipped
    spec saturates at ``rate_ceiling_hz``; without the ceiling, as a user may set it, the same
    history runs away.)"""
    import shutil

    fit = tmp_path / "fit"
    shutil.copytree(rglm_fit, fit)
    from neurorec.families import RGLM

    model = RGLM.load(fit)  # model.pt is what export-nwb loads
    model.params_["h"] = np.full_like(model.params_["h"], 5.0)
    model.spec = model.spec.model_copy(update={"rate_ceiling_hz": None})
    model.save(fit)
    code, _, err = run(capsys, "export-nwb", fit, "--out", tmp_path / "sim.nwb")
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"{fit}: simulation diverged: unit ")
    assert not (tmp_path / "sim.nwb").exists()


def test_fit_refuses_a_kind_that_is_not_a_spike_train_model(tmp_path, capsys):
    spec = REPO / "models" / "ssrnn_movies.yaml"
    code = main(["fit", str(spec), "--data", "v1_gratings:0", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"{spec}: kind: 'ssrnn' is not a model of recorded spike trains")
    assert not (tmp_path / "o").exists()
