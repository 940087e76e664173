"""Issue 18 analyses of the oscillator study on constructed cases with known answers: what one
frame of an oscillating object says about its motion direction (half: both directions pass
every position), what two consecutive frames say (all of it), lagged features, and the PCA
normalisations on a matrix of known singular values."""

from __future__ import annotations

import numpy as np
import pytest

from neurorec.analysis.decoding import decode_cv, lagged_features
from neurorec.analysis.dimensionality import (
    n_for_variance,
    normalised_spectrum,
    participation_ratio,
    pca_singular_values,
)
from neurorec.spec.oscillator import OscillatingObjectSpec
from neurorec.stimuli.oscillator import make_movies, motion_direction


@pytest.fixture(scope="module")
def movies():
    # 24 axes, 2 random phases each, positions only (frames not needed)
    return make_movies(OscillatingObjectSpec(n_angles=24, movies_per_angle=2, n_frames=40,
                                             size_px=21, amplitude_px=6, period_frames=20,
                                             object={"sigma_px": 1.0}))


def test_one_position_carries_half_the_direction_two_carry_all(movies):
    pos = movies.centre_px - movies.centre_px.mean((0, 1))
    labels = motion_direction(movies.velocity_px[:, 1:]).reshape(-1)
    groups = np.repeat(np.arange(len(pos)), pos.shape[1] - 1)
    one = pos[:, 1:].reshape(-1, 2)
    two = lagged_features(pos, (0, 1)).reshape(-1, 4)
    # one frame: the axis is known, the sign of the velocity is not (Bayes bound 1/2)
    for clf in ("knn", "rbf_svm"):
        acc = decode_cv(one, labels, groups, 5, clf, C=10.0)
        assert 0.35 < acc < 0.6, (clf, acc)
    # two frames: the displacement is the velocity, linearly
    assert decode_cv(two, labels, groups, 5, "linear_svm", C=10.0) > 0.95


def test_lagged_features_layout():
    x = np.arange(2 * 5 * 3, dtype=float).reshape(2, 5, 3)
    f = lagged_features(x, (0, 2))
    assert f.shape == (2, 3, 6)
    np.testing.assert_array_equal(f[1, 0], np.r_[x[1, 2], x[1, 0]])
    np.testing.assert_array_equal(f[0, 2], np.r_[x[0, 4], x[0, 2]])
    with pytest.raises(ValueError):
        lagged_features(x, (0, 5))


def test_pca_normalisations_on_known_singular_values():
    rng = np.random.default_rng(0)
    n, s_true = 400, np.array([8.0, 4.0, 2.0, 1.0])
    u, _ = np.linalg.qr(rng.normal(size=(n, 4)))
    u -= u.mean(0)  # centred columns: the centring leaves the spectrum alone
    u, _ = np.linalg.qr(u)
    v, _ = np.linalg.qr(rng.normal(size=(6, 4)))
    s = pca_singular_values((u * s_true) @ v.T)
    np.testing.assert_allclose(s[:4], s_true, atol=1e-9)
    s = s[:4]
    np.testing.assert_allclose(normalised_spectrum(s, "sum"), s_true / 15)
    np.testing.assert_allclose(normalised_spectrum(s, "max"), s_true / 8)
    np.testing.assert_allclose(normalised_spectrum(s, "variance"), s_true**2 / 85)
    assert n_for_variance(s, 0.9) == 2  # (64 + 16) / 85 = 0.94
    assert participation_ratio(s) == pytest.approx(85**2 / (64**2 + 16**2 + 4**2 + 1))
    # standardising features equalises a scaled copy: two equal components
    x = rng.normal(size=(500, 2)) * [100.0, 1.0]
    assert participation_ratio(pca_singular_values(x)) < 1.01
    assert participation_ratio(pca_singular_values(x, standardise=True)) > 1.9


def _oscillator_run():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "analyses" / "oscillator_prediction" / "run.py"
    spec_ = importlib.util.spec_from_file_location("oscillator_run", path)
    mod = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(mod)
    return mod


def test_dimension_controls_of_an_untrained_fit_equal_its_readings():
    """Known answer: a fit whose learning rates are ~0 leaves the initial weights, so the
    untrained controls (rebuilt from the seed) read exactly what the fitted model reads."""
    import torch

    from neurorec.families.conv_rnn.model import ConvRNN
    from neurorec.families.conv_rnn.spec import ConvRNNSpec

    run = _oscillator_run()
    movies = make_movies(OscillatingObjectSpec(size_px=21, n_frames=16, n_angles=8,
                                               amplitude_px=5, period_frames=8,
                                               object={"sigma_px": 1.0}))
    spec = ConvRNNSpec(autoencoder={"channels": (4, 4), "epochs": 1, "batch_size": 16,
                                    "lr": 1e-12},
                       rnn={"n_units": 8, "delta_t": 3, "epochs": 1, "batch_size": 2,
                            "lr": 1e-12})
    model = ConvRNN(spec, seed=3).fit(movies.frames, progress=False)
    ae0, rnn0 = run.initial_modules(spec, 21, seed=3)
    for a, b in ((ae0, model.autoencoder_), (rnn0, model.rnn_)):
        for k, v in a.state_dict().items():
            torch.testing.assert_close(v, b.state_dict()[k], rtol=0, atol=1e-9)
    out = model.transform(movies.frames)
    c = run.dimension_controls(model, movies.frames, out, warm=3, seed=3)
    for reading in ("raw", "standardised"):
        enc = run.pca_readings(out["code"][:, 3:].reshape(-1, out["code"].shape[-1]))
        rnn = run.pca_readings(out["hidden"][:, 3:].reshape(-1, 8))
        for got, want in ((c["encoder_untrained"], enc), (c["rnn_untrained"], rnn)):
            assert got[reading]["n90"] == want[reading]["n90"]
            assert got[reading]["participation_ratio"] == pytest.approx(
                want[reading]["participation_ratio"], rel=1e-6)
    assert c["saturated_untrained"] == c["saturated_trained"]
    # the predicted code of frame t + 3 is the sigmoid readout of the states of frames t
    with torch.no_grad():
        zhat = model.rnn_(torch.as_tensor(out["code"]))[1].numpy()[:, 3:-3]
    assert c["rnn_prediction"]["raw"]["participation_ratio"] == pytest.approx(
        participation_ratio(pca_singular_values(zhat.reshape(-1, zhat.shape[-1]))))
    assert c["future_code"]["raw"]["participation_ratio"] == pytest.approx(
        participation_ratio(pca_singular_values(out["code"][:, 6:].reshape(
            -1, out["code"].shape[-1]))))


def test_controls_verdict_names_the_measured_locus():
    run = _oscillator_run()

    def metrics(enc, rnn, untrained, predicted, future):
        pr = lambda x: {"raw": {"participation_ratio": x}}  # noqa: E731
        return {"pca": {"encoder": pr(enc), "rnn": pr(rnn)},
                "pca_controls": {"rnn_untrained": pr(untrained), "rnn_prediction": pr(predicted),
                                 "future_code": pr(future), "saturated_trained": 0.2}}

    assert run._controls_verdict(metrics(3, 4, 5, 2, 3)) == "not reversed here"
    v = run._controls_verdict(metrics(7.0, 3.6, 7.2, 2.6, 7.0))
    assert v.startswith("follows the RNN's predictions") and "training lowered" in v
    v = run._controls_verdict(metrics(3.9, 3.7, 3.5, 2.9, 3.9))
    assert v.startswith("follows the RNN's predictions") and "not made by training" in v
    assert run._controls_verdict(metrics(7.0, 3.6, 7.2, 7.0, 7.0)).startswith("not localised")


def test_training_rows_follow_the_rnn_to_the_encoder(tmp_path):
    import json

    from neurorec.core.errors import DataError

    run = _oscillator_run()

    def m(epochs, batch, rnn_pr, err):
        pr = lambda x: {r: {"participation_ratio": x} for r in ("raw", "standardised")}  # noqa: E731
        return {"pca": {"encoder": pr(7.0), "rnn": pr(rnn_pr)}, "rnn_batch_size": batch,
                "epochs_completed": {"rnn": epochs}, "prediction_position_error_px": err}

    study = {"random": m(50, 8, 3.6, 12.2), "up_down": m(50, 8, 3.7, 13.7)}
    further = [{"random": m(150, 1, 7.1, 0.7)}, {"random": m(75, 1, 6.1, 1.7)}]
    (row,) = run.training_rows(study, further)
    assert "random: encoder 7.0 / 7.0; 50 epochs (batch 8): RNN 3.6 / 3.6" in row[2]
    assert row[2].index("75 epochs") < row[2].index("150 epochs")  # in order of training
    assert "up_down" not in row[2]  # no further run of that split
    assert "3.6 -> 6.1 -> 7.1" in row[4] and "under-training" in row[4]
    (row,) = run.training_rows(study, further[1:])
    assert "still below the encoder's 7.0 at 75 epochs" in row[4]
    assert run.training_rows(study, []) == []
    with pytest.raises(DataError, match=r"no metrics\.json"):
        run.load_trained_further([tmp_path])
    (tmp_path / "metrics.json").write_text(json.dumps({"splits": {"random": {"pca": {}}}}))
    with pytest.raises(DataError, match=r"older run\.py"):
        run.load_trained_further([tmp_path])
