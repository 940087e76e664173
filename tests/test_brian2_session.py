"""The Brian 2 network of a session GLM / R-GLM against the models' own (numpy / torch) drive.

A small simulated open-field session (10 cells, 30 s at 10 ms, blocked test folds with guard
bands, so several history segments): the session GLM (covariate splines + own history) and
the session R-GLM (its latent fed by past population spikes; the latent's parameters set by
hand, stable) are built, then run in Brian 2
with the covariate terms as ``TimedArray`` s. Fed the recorded counts, the network's drive
equals ``SessionGLM.drive`` / ``log SessionRGLM.predict_rate`` to 1e-10; sampling in closed
loop, the drive it used equals the model's drive on the finished sample (only the past was
read, segments restart).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("brian2")

from neurorec.core.errors import DataError
from neurorec.datasets.open_field import simulate_open_field
from neurorec.families.glm.brian2_session import (
    drive_brian2_session,
    session_inputs,
    simulate_brian2_session,
    with_counts,
)
from neurorec.families.glm.rglm import SessionRGLM, session_states
from neurorec.families.glm.session import SessionGLM, covariate_design
from neurorec.spec import load_model_spec

TARGET = "numpy"  # no compilation: a 3000-bin run takes seconds


def with_latent(spec, glm: SessionGLM, session, seed: int, residual: bool = True,
                n_design: int = 0) -> SessionRGLM:
    """A session R-GLM on the fitted ``glm`` with a stable hand-set latent (dim 3: a slow
    rotation and a decay, |eigenvalues| ≤ 0.9), so the check does not depend on the
    latent's L-BFGS fit."""
    rng = np.random.default_rng(seed)
    a = 0.2
    R = np.zeros((3, 3))
    R[:2, :2] = 0.9 * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    R[2, 2] = 0.8
    latent = {"W0": 0.1 * rng.standard_normal((3, session.n_units)), "R": R,
              "B": 0.5 * rng.standard_normal((session.n_units, 3)),
              "b": 0.1 * rng.standard_normal(session.n_units)}
    if n_design:
        latent["V"] = 0.2 * rng.standard_normal((3, n_design))
    model = SessionRGLM(spec, residual=residual)
    model.glm_, model.latent_, model.bin_size_ = glm, latent, session.bin_size
    model.y_mean_ = session.counts[session.mask("train")].mean(axis=0)
    return model


def small_spec(folder, overrides: list[str]):
    """models/session_rglm.yaml with bases sized for 30 s (position 5 x 5, ridge 1 on
    every covariate term) so that no held-out bin extrapolates to absurd rates."""
    raw = yaml.safe_load(Path("models/session_rglm.yaml").read_text())
    for entry in raw["covariates"]:
        entry["ridge"] = 1.0
        entry["n_basis"] = [5, 5] if entry["basis"] == "tensor_bspline" else 5
    path = Path(folder) / "small_rglm.yaml"
    path.write_text(yaml.safe_dump(raw))
    # the history weights keep the small ridge this test was written with (the shipped spec
    # leaves them unpenalised): on 30 s an unpenalised history filter can run away in closed loop
    return load_model_spec(path, ["fit.dtype=float64", "penalty.l2=1e-6", *overrides])


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    session = simulate_open_field(n_units=10, duration_s=30.0, seed=5)
    spec = small_spec(tmp_path_factory.mktemp("spec"), [])
    glm = SessionGLM(spec).fit(session)
    return session, spec, glm, with_latent(spec, glm, session, seed=0)


def latent_drive(model: SessionRGLM, session) -> np.ndarray:
    """The R-GLM's drive ``GLM + b + B x_t`` from its own streamed states (torch)."""
    x = session_states(model.problem(session), model._tensors()).numpy()
    return model.glm_.drive(session) + model.latent_["b"] + x @ model.latent_["B"].T


def test_glm_drive_on_recorded_counts(fitted):
    session, _, glm, _ = fitted
    assert len(np.unique(session.segment)) > 3  # history restarts at every guard band
    got = drive_brian2_session(glm, session, target=TARGET)
    expected = glm.drive(session)
    assert got.shape == expected.shape == (3000, 10)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)
    # the history term is really there: without it the drive differs
    inp = session_inputs(glm, session)
    covariates_only = inp["bias"] + sum(inp["terms"].values())
    assert np.abs(expected - covariates_only).max() > 0.5


def test_rglm_drive_on_recorded_counts(fitted):
    session, _, _, rglm = fitted
    got = drive_brian2_session(rglm, session, target=TARGET)
    expected = latent_drive(rglm, session)
    assert expected.max() < 3.0  # a sane fit: at most e^3 expected spikes in a 10 ms bin
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got, np.log(rglm.predict_rate(session)), rtol=0, atol=1e-10)
    assert np.abs(expected - rglm.glm_.drive(session)).max() > 0.05  # the latent acts


def test_rglm_closed_loop_uses_only_the_past(fitted):
    session, _, _, rglm = fitted
    counts, drive = simulate_brian2_session(rglm, session, seed=3, target=TARGET,
                                            record_drive=True)
    assert (counts == np.round(counts)).all() and counts.min() >= 0
    assert not np.array_equal(counts, session.counts)
    # a sample of the fitted model has about the data's spike count (10 units x 3000 bins)
    assert abs(counts.sum() / session.counts.sum() - 1) < 0.2
    np.testing.assert_allclose(drive, latent_drive(rglm, with_counts(session, counts)),
                               rtol=0, atol=1e-10)
    again = simulate_brian2_session(rglm, session, seed=3, target=TARGET)
    np.testing.assert_array_equal(counts, again)


def test_latent_with_covariate_input_and_mean_centring(fitted, tmp_path):
    """``recurrent.stimulus_input`` (V z_t as a TimedArray) and the ȳ-centred input."""
    session, _, glm, _ = fitted
    spec = small_spec(tmp_path, ["recurrent.stimulus_input=true"])
    n_design = sum(b.n_cols for b in covariate_design(spec.covariates, session).blocks)
    model = with_latent(spec, glm, session, seed=1, residual=False, n_design=n_design)
    assert session_inputs(model, session)["vz"].std() > 0.1
    got = drive_brian2_session(model, session, target=TARGET)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, latent_drive(model, session), rtol=0, atol=1e-10)


def test_wrong_session_is_a_data_error(fitted):
    _, _, glm, _ = fitted
    other = simulate_open_field(n_units=4, duration_s=2.0, seed=1)
    with pytest.raises(DataError, match="session has 4 units, the model 10"):
        drive_brian2_session(glm, other, target=TARGET)
