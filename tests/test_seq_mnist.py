"""MNIST loader and split, sequence variants, the tanh RNN (autograd Jacobian, training),
and attractor detection on maps with known cycles."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from neurorec.analysis.limit_cycles import find_attractors, orbit_period
from neurorec.core.errors import DataError, NotFittedError
from neurorec.datasets import mnist
from neurorec.families.rnn.model import (
    SequenceRNN,
    autonomous_jacobian,
    autonomous_step,
    sequence_variant,
)
from neurorec.families.rnn.spec import RNNSpec
from neurorec.fit.run import Run


@pytest.fixture(scope="module")
def split():
    return mnist.mnist_split(2000, seed=0)


def test_loader_shapes_and_labels():
    images, labels = mnist.load_mnist_test()
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(labels) == set(range(10))
    # independent read of the file as data/README.md documents it
    path = mnist.data_root() / "mnist" / mnist.LABELS
    raw = np.frombuffer(gzip.open(path).read(), np.uint8, offset=8)
    np.testing.assert_array_equal(labels, raw)
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first test digits


def test_split_is_stratified_disjoint_and_seeded(split):
    assert split.x_train.shape == (8000, 28, 28) and split.x_test.shape == (2000, 28, 28)
    assert split.x_train.dtype == np.float32
    assert 0 <= split.x_train.min() <= split.x_train.max() <= 1
    assert not set(split.index_train) & set(split.index_test)
    _, labels = mnist.load_mnist_test()
    np.testing.assert_array_equal(split.y_test, labels[split.index_test])
    # stratified: each digit's share of the test set within one image of its overall share
    share = np.bincount(labels) / len(labels) * 2000
    assert np.abs(np.bincount(split.y_test) - share).max() <= 1
    again = mnist.mnist_split(2000, seed=0)
    np.testing.assert_array_equal(again.index_test, split.index_test)
    assert not np.array_equal(mnist.mnist_split(2000, seed=1).index_test, split.index_test)
    assert "8000 train / 2000 test" in split.describe() and "seed 0" in split.describe()


def test_missing_data_names_path_and_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv(mnist.ENV_VAR, str(tmp_path))
    with pytest.raises(DataError, match=f"{tmp_path}.*NEUROREC_DATA"):
        mnist.load_mnist_test()


def test_variants():
    x = np.arange(2 * 28 * 3, dtype=float).reshape(2, 28, 3) + 1
    h = sequence_variant(x, "hidden", 5)
    assert h.shape == x.shape and (h[:, 23:] == 0).all()
    np.testing.assert_array_equal(h[:, :23], x[:, :23])
    np.testing.assert_array_equal(sequence_variant(x, "hidden", 0), x)
    c = sequence_variant(x, "cut", 10)
    assert c.shape == (2, 10, 3)
    np.testing.assert_array_equal(c, x[:, :10])
    assert sequence_variant(x, "cut", 0).shape == (2, 0, 3)
    e = sequence_variant(x, "extended", 4)
    assert e.shape == (2, 32, 3) and (e[:, 28:] == 0).all()
    np.testing.assert_array_equal(e[:, :28], x)
    with pytest.raises(DataError, match="0 <= n <= 28"):
        sequence_variant(x, "cut", 29)
    with pytest.raises(DataError, match="unknown kind"):
        sequence_variant(x, "shuffled", 1)


def test_forward_matches_numpy_recursion_and_jacobian_matches_autograd():
    spec = RNNSpec(n_units=12, n_inputs=5, n_outputs=3)
    rng = np.random.default_rng(0)
    model = SequenceRNN(spec).fit(rng.standard_normal((4, 3, 5)), y=np.arange(4) % 3, epochs=1,
                                  progress=False)
    x = np.random.default_rng(0).standard_normal((2, 6, 5)).astype(np.float32)
    logits, states = model.forward(x)
    p = {k: v.double().numpy() for k, v in model.net_.state_dict().items()}
    h = np.zeros((2, 12))
    for t in range(6):
        h = np.tanh(h @ p["W"].T + x[:, t] @ p["U"].T + p["b"])
        np.testing.assert_allclose(states[:, t], h, atol=1e-5)
    np.testing.assert_allclose(logits, h @ p["V"].T + p["c"], atol=1e-5)
    W, b = model.recurrent_params()
    h0 = np.random.default_rng(1).standard_normal(12)
    auto = torch.autograd.functional.jacobian(
        lambda v: torch.tanh(torch.as_tensor(W) @ v + torch.as_tensor(b)), torch.as_tensor(h0))
    np.testing.assert_allclose(autonomous_jacobian(W, b, h0), auto.numpy(), atol=1e-12)
    np.testing.assert_allclose(autonomous_step(W, b, h0), np.tanh(W @ h0 + b), atol=1e-15)
    W0, _ = model.recurrent_params(initial=True)
    assert not np.allclose(W0, W)  # one epoch of Adam moved the weights
    with pytest.raises(NotFittedError):
        SequenceRNN(spec).predict(x)


def test_training_learns_and_resumes_bitwise(split, tmp_path):
    spec = RNNSpec(n_units=64, fit={"epochs": 3, "batch_size": 50, "lr": 5e-3})
    xs, ys = split.x_train[:1500], split.y_train[:1500]
    full = SequenceRNN(spec, seed=3).fit(xs, y=ys, progress=False)
    acc = full.score(split.x_test[:500], split.y_test[:500])
    assert acc > 0.4  # chance is 0.1
    ck = tmp_path / "ck"
    SequenceRNN(spec, seed=3).fit(xs, y=ys, progress=False, run=Run(ck, resume=True), epochs=2)
    resumed = SequenceRNN(spec, seed=3).fit(xs, y=ys, progress=False, run=Run(ck, resume=True))
    for k, v in full.net_.state_dict().items():
        torch.testing.assert_close(resumed.net_.state_dict()[k], v, rtol=0, atol=0)


def test_attractors_of_maps_with_known_cycles():
    # rotation by 2π/7 on the unit circle pulled to radius 1: one limit cycle of period 7
    c, s = np.cos(2 * np.pi / 7), np.sin(2 * np.pi / 7)
    R = np.array([[c, -s], [s, c]])

    def rot(x):
        y = x @ R.T
        r = np.linalg.norm(y, axis=1, keepdims=True)
        return y / r ** 0.5  # radius -> sqrt(radius): converges to 1

    angles = 2 * np.pi / 7 * np.arange(7)
    x0 = np.stack([np.cos(angles), np.sin(angles)], 1) * 2.0
    att = find_attractors(rot, x0, n_transient=200, max_period=20, tol=1e-8)
    assert (att.period == 7).all() and att.n_limit_cycles == 1 and att.n_fixed_points == 0
    # logistic map r = 3.2: period 2; r = 2.8: fixed point 1 - 1/r; r = 4: aperiodic
    for r, period in ((3.2, 2), (2.8, 1), (4.0, 0)):
        att = find_attractors(lambda x, r=r: r * x * (1 - x), np.array([[0.3], [0.7]]),
                              n_transient=2000, max_period=30, tol=1e-9)
        assert (att.period == period).all()
    att = find_attractors(lambda x: 2.8 * x * (1 - x), np.array([[0.3]]), 2000, 5, 1e-10)
    assert att.cycles[0][0, 0] == pytest.approx(1 - 1 / 2.8, abs=1e-9)
    # two fixed points of x -> tanh(3 x): ±0.99505
    att = find_attractors(lambda x: np.tanh(3 * x), np.array([[0.5], [-0.2], [0.9]]), 200, 5,
                          1e-12)
    assert att.n_fixed_points == 2 and att.attractor.tolist() == [0, 1, 0]
    assert orbit_period(np.tile([[0.0], [1.0], [2.0]], (4, 1)), 5, 1e-12) == 3


class _Killed(Exception):
    pass


def test_a_fit_interrupted_mid_run_resumes_bitwise(split, tmp_path, monkeypatch):
    """run_loop's callback raises after epoch 2 (a kill after that checkpoint); fitting again
    on the checkpoint ends with exactly the parameters and curves of an uninterrupted fit."""
    import neurorec.families.rnn.model as module

    spec = RNNSpec(n_units=16, fit={"epochs": 4, "batch_size": 50})
    xs, ys = split.x_train[:300], split.y_train[:300]
    full = SequenceRNN(spec, seed=1).fit(xs, y=ys, progress=False)
    run_loop = module.run_loop

    def killed_after_two(*args, **kwargs):
        def callback(i, row):
            if i == 2:
                raise _Killed
        return run_loop(*args, **kwargs, callback=callback)

    ck = tmp_path / "ck"
    with monkeypatch.context() as patch:
        patch.setattr(module, "run_loop", killed_after_two)
        with pytest.raises(_Killed):
            SequenceRNN(spec, seed=1).fit(xs, y=ys, progress=False, run=Run(ck, resume=True))
    resumed = SequenceRNN(spec, seed=1).fit(xs, y=ys, progress=False, run=Run(ck, resume=True))
    for k, v in full.net_.state_dict().items():
        assert torch.equal(resumed.net_.state_dict()[k], v), k
    assert [h["loss"] for h in resumed.history_] == [h["loss"] for h in full.history_]
    for k, v in full.init_state_.items():
        assert torch.equal(resumed.init_state_[k], v)
