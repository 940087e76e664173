"""Conv autoencoder + RNN: architecture sizes, the RNN recursion, two-stage training with
bitwise resume, and the linear-SVM decoder used by the oscillator analysis."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurorec.analysis.decoding import svm_decode_cv
from neurorec.core.errors import DataError
from neurorec.families.conv_rnn.model import (
    CodeRNN,
    ConvAutoencoder,
    ConvRNN,
    frame_bce,
    pooled_sizes,
)
from neurorec.families.conv_rnn.spec import ConvRNNSpec
from neurorec.fit.run import Run
from neurorec.spec.oscillator import OscillatingObjectSpec
from neurorec.stimuli.oscillator import make_movies


def test_autoencoder_shapes_and_size():
    assert pooled_sizes(61, 4) == [31, 16, 8, 4]
    ae = ConvAutoencoder(61, (8, 16, 8, 4))
    n = sum(p.numel() for p in ae.parameters())
    # by hand: encoder 1·8·9+8 + 8·16·9+16 + 16·8·9+8 + 8·4·9+4, decoder mirrored to 1 channel
    assert n == (80 + 1168 + 1160 + 292) + (296 + 1168 + 1160 + 73) == 5397
    x = torch.rand(3, 1, 61, 61)
    code = ae.encoder(x)
    assert code.shape == (3, 4, 4, 4) and ae.code_shape == (4, 4, 4)
    assert ae(x).shape == x.shape
    assert 0 <= code.min() and code.max() <= 1  # sigmoid code


def test_code_rnn_matches_numpy_recursion():
    rnn = CodeRNN(6, 5, torch.Generator().manual_seed(0))
    z = torch.rand(2, 7, 6)
    hs, zhat = rnn(z)
    p = {k: v.detach().double().numpy() for k, v in rnn.state_dict().items()}
    h = np.zeros((2, 5))
    for t in range(7):
        h = np.tanh(h @ p["W"].T + z[:, t].double().numpy() @ p["U"].T + p["b"])
        np.testing.assert_allclose(hs[:, t].detach().numpy(), h, atol=1e-6)
    np.testing.assert_allclose(zhat[:, -1].detach().numpy(),
                               1 / (1 + np.exp(-(h @ p["V"].T + p["c"]))), atol=1e-6)
    assert rnn.l1().item() == pytest.approx(sum(np.abs(p[k]).sum() for k in "WUV"), rel=1e-5)


def test_frame_bce_equals_torch():
    rng = np.random.default_rng(0)
    target, pred = rng.uniform(size=(4, 9)), rng.uniform(0.01, 0.99, size=(4, 9))
    ref = torch.nn.functional.binary_cross_entropy(torch.as_tensor(pred), torch.as_tensor(target))
    assert frame_bce(target, pred) == pytest.approx(ref.item(), rel=1e-12)


@pytest.fixture(scope="module")
def small_movies():
    spec = OscillatingObjectSpec(size_px=21, n_frames=14, n_angles=8, amplitude_px=5,
                                 period_frames=8, object={"sigma_px": 1.0})
    return make_movies(spec)


def small_spec(ae_epochs: int, rnn_epochs: int) -> ConvRNNSpec:
    return ConvRNNSpec(autoencoder={"channels": (4, 4), "epochs": ae_epochs, "batch_size": 16},
                       rnn={"n_units": 8, "delta_t": 3, "epochs": rnn_epochs, "batch_size": 2})


def test_two_stage_fit_transform_and_resume(small_movies, tmp_path):
    frames = small_movies.frames
    full = ConvRNN(small_spec(2, 2), seed=1).fit(frames, progress=False)
    stages = [h["stage"] for h in full.history_]
    assert stages == ["autoencoder"] * 2 + ["rnn"] * 2
    assert len(full.validation_movies_) == round(0.2 * len(frames))
    out = full.transform(frames[:2])
    assert out["code"].shape == (2, 14, 4 * 6 * 6) and out["hidden"].shape == (2, 14, 8)
    assert out["prediction"].shape == out["reconstruction"].shape == (2, 14, 21, 21)
    assert 0 < out["prediction"].min() and out["prediction"].max() < 1
    # the autoencoder is frozen in stage 2: its reconstruction is what stage 1 left
    ck = tmp_path / "ck"
    part = ConvRNN(small_spec(2, 1), seed=1).fit(frames, progress=False, run=Run(ck, resume=True))
    for k, v in part.autoencoder_.state_dict().items():
        torch.testing.assert_close(v, full.autoencoder_.state_dict()[k], rtol=0, atol=0)
    resumed = ConvRNN(small_spec(2, 2), seed=1).fit(frames, progress=False,
                                                    run=Run(ck, resume=True))
    for k, v in full.rnn_.state_dict().items():
        torch.testing.assert_close(resumed.rnn_.state_dict()[k], v, rtol=0, atol=0)
    assert [h["loss"] for h in resumed.history_] == [h["loss"] for h in full.history_]
    with pytest.raises(DataError, match="too short"):
        ConvRNN(small_spec(1, 1)).fit(frames[:, :3], progress=False)


def test_svm_decoding_reference():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 100)
    x = rng.standard_normal((200, 5))
    x[:, 0] += 6 * y  # separable along one axis
    groups = np.repeat(np.arange(20), 10)
    assert svm_decode_cv(x, y, groups) >= 0.98
    # labels unrelated to the features: chance
    assert abs(svm_decode_cv(x[:, 1:], y, groups) - 0.5) < 0.15


class _Killed(Exception):
    pass


def test_a_fit_interrupted_in_either_stage_resumes_bitwise(small_movies, tmp_path):
    """``should_stop`` (asked from run_loop's callback, after the epoch's checkpoint) raises:
    a kill in stage 1 or in stage 2; the fit resumed from the checkpoint equals the
    uninterrupted one exactly (both modules, every epoch's losses)."""
    frames = small_movies.frames
    full = ConvRNN(small_spec(2, 3), seed=4).fit(frames, progress=False)
    for kill_after in (1, 3):  # autoencoder epoch 1; rnn epoch 1
        calls = []

        def kill(kill_after=kill_after, calls=calls):
            calls.append(1)
            if len(calls) == kill_after:
                raise _Killed
            return False

        ck = tmp_path / f"ck{kill_after}"
        with pytest.raises(_Killed):
            ConvRNN(small_spec(2, 3), seed=4).fit(frames, progress=False, run=Run(ck, resume=True),
                                          should_stop=kill)
        resumed = ConvRNN(small_spec(2, 3), seed=4).fit(frames, progress=False,
                                                        run=Run(ck, resume=True))
        assert not resumed.stopped_early_
        for name in ("autoencoder_", "rnn_"):
            want = getattr(full, name).state_dict()
            for k, v in getattr(resumed, name).state_dict().items():
                assert torch.equal(v, want[k]), (kill_after, name, k)
        assert [h["loss"] for h in resumed.history_] == [h["loss"] for h in full.history_]


def test_score_is_the_bce_of_predicted_frames_and_needs_a_fit(small_movies):
    from neurorec.core.errors import NotFittedError

    spec = small_spec(1, 1)
    with pytest.raises(NotFittedError, match="call fit"):
        ConvRNN(spec).score(small_movies.frames[:2])
    model = ConvRNN(spec, seed=0).fit(small_movies.frames, progress=False)
    out = model.transform(small_movies.frames[:3])
    want = frame_bce(small_movies.frames[:3, 3:], out["prediction"][:, :-3])
    assert model.score(small_movies.frames[:3]) == want
