"""Same seed, same numbers on CPU: ``fit`` (parameters, predictions, metrics), ``export-nwb``
of a dataset and of samples from a fit, ``validate`` and ``datasets``; a different seed gives
different samples. (``demo`` is ``fit_and_evaluate`` of two specs, covered through ``fit``;
``fit_and_evaluate`` itself is checked twice in one process.)"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from neurorec.cli import main
from neurorec.data import read_nwb, write_nwb
from neurorec.datasets import load
from neurorec.spec import load_model_spec
from neurorec.workflows.pipeline import fit_and_evaluate

REPO = Path(__file__).resolve().parents[1]
GLM_V1 = REPO / "models" / "glm_v1.yaml"
SMALL = ["--quiet", "--seed", "7", "--set", "fit.max_iter=12", "--set", "coupling.n_basis=2"]
TIMES = ("fit_time_s", "evaluation_time_s")  # wall-clock seconds


@pytest.fixture(scope="module")
def small_nwb(tmp_path_factory):
    rec = load("v1_gratings:2")
    keep = [1, 4, 9]
    rec = dataclasses.replace(rec, spike_times=[rec.spike_times[i] for i in keep],
                              unit_ids=rec.unit_ids[keep])
    return write_nwb(rec, tmp_path_factory.mktemp("nwb") / "small.nwb")


@pytest.fixture(scope="module")
def two_fits(tmp_path_factory, small_nwb):
    outs = []
    for name in ("a", "b"):
        out = tmp_path_factory.mktemp(name) / "fit"
        assert main(["fit", str(GLM_V1), "--data", str(small_nwb), "--out", str(out),
                     *SMALL]) == 0
        outs.append(out)
    return outs


def _metrics(out: Path) -> dict:
    m = json.loads((out / "metrics.json").read_text())
    for key in TIMES:
        m.pop(key, None)
        m["convergence"].pop(key, None)
    return m


def test_fit_twice_same_numbers(two_fits):
    a, b = two_fits
    assert _metrics(a) == _metrics(b)
    for name in ("params.npz", "predictions.npz"):
        with np.load(a / name) as p, np.load(b / name) as q:
            assert p.files == q.files
            for k in p.files:
                np.testing.assert_array_equal(p[k], q[k], err_msg=f"{name}:{k}")
    assert (a / "spec.yaml").read_text() == (b / "spec.yaml").read_text()
    ha = json.loads((a / "fit_history.json").read_text())
    hb = json.loads((b / "fit_history.json").read_text())
    assert ha == hb


def test_export_samples_same_seed_same_spikes(two_fits, tmp_path, capsys):
    fit = two_fits[0]
    paths = {}
    for name, seed in (("s1", 3), ("s1_again", 3), ("s2", 4)):
        paths[name] = tmp_path / f"{name}.nwb"
        assert main(["export-nwb", str(fit), "--out", str(paths[name]), "--seed", str(seed)]) == 0
    recs = {k: read_nwb(p) for k, p in paths.items()}
    for x, y in zip(recs["s1"].spike_times, recs["s1_again"].spike_times, strict=True):
        np.testing.assert_array_equal(x, y)
    assert recs["s1"].trials.equals(recs["s1_again"].trials)
    # another seed, other samples (same trial structure)
    assert any(len(x) != len(y) or not np.array_equal(x, y) for x, y in
               zip(recs["s1"].spike_times, recs["s2"].spike_times, strict=True))
    assert recs["s1"].trials.equals(recs["s2"].trials)
    # samples from a second fit with the same seed are the same samples
    other = tmp_path / "other.nwb"
    assert main(["export-nwb", str(two_fits[1]), "--out", str(other), "--seed", "3"]) == 0
    for x, y in zip(recs["s1"].spike_times, read_nwb(other).spike_times, strict=True):
        np.testing.assert_array_equal(x, y)


def test_export_dataset_twice_identical(tmp_path):
    a, b = tmp_path / "a.nwb", tmp_path / "b.nwb"
    for p in (a, b):
        assert main(["export-nwb", "v1_gratings:7", "--out", str(p)]) == 0
    ra, rb = read_nwb(a), read_nwb(b)
    for x, y in zip(ra.spike_times, rb.spike_times, strict=True):
        np.testing.assert_array_equal(x, y)
    assert ra.trials.equals(rb.trials)


def test_text_commands_identical(capsys):
    outs = []
    for _ in range(2):
        capsys.readouterr()
        assert main(["validate", *map(str, sorted(REPO.glob("models/*.yaml")))]) in (0, 2)
        assert main(["datasets"]) == 0
        outs.append(capsys.readouterr())
    assert outs[0] == outs[1]


def test_fit_and_evaluate_in_process_twice(small_nwb):
    """The library path the demo takes: same seed, same held-out numbers, bitwise."""
    spec = load_model_spec(GLM_V1, ["fit.max_iter=4", "coupling.enabled=false"])
    rec = read_nwb(small_nwb)
    a = fit_and_evaluate(spec, rec, seed=11, progress=False)
    b = fit_and_evaluate(spec, rec, seed=11, progress=False)
    np.testing.assert_array_equal(a.test_rates, b.test_rates)
    for k in a.model.params_:
        np.testing.assert_array_equal(a.model.params_[k], b.model.params_[k])
    assert a.metrics["bits_per_spike"] == b.metrics["bits_per_spike"]
    c = fit_and_evaluate(spec, rec, seed=12, progress=False)
    # another seed draws another train/test split
    assert not np.array_equal(a.data.is_test, c.data.is_test)
