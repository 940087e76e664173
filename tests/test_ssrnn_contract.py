"""Spike-and-slab RNN as an Estimator: the engine's resume after an interrupted fit is bitwise,
save/load keeps score and curves, the seeded sample follows the generative model, the score is
the held-out reconstruction error, and foreign checkpoints are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurorec.core.errors import DataError, NotFittedError
from neurorec.families.ssrnn.conformance import tiny_movie
from neurorec.families.ssrnn.model import SpikeSlabRNN
from neurorec.families.ssrnn.spec import SSRNNSpec
from neurorec.fit.checkpoint import save_checkpoint
from neurorec.fit.run import Run


def _spec(n_iterations: int = 8, **learning) -> SSRNNSpec:
    return SSRNNSpec(n_units=8, prior_p=0.1, inference={"max_steps": 20, "tol": 0.05},
                     learning={"n_iterations": n_iterations, "batch_clips": 6,
                               "checkpoint_every": 2, "dtype": "float64", **learning})


class Interrupt(RuntimeError):
    pass


def test_interrupted_fit_resumes_bitwise_through_the_engine(tmp_path):
    train, _ = tiny_movie()
    full = SpikeSlabRNN(_spec(), seed=2).fit(train, progress=False)
    ck = tmp_path / "ck"

    def stop(i, row):
        if i == 5:  # after iteration 5; the last checkpoint is iteration 4's
            raise Interrupt

    with pytest.raises(Interrupt):
        SpikeSlabRNN(_spec(), seed=2).fit(train, progress=False,
                                          run=Run(ck, resume=True), callback=stop)
    resumed = SpikeSlabRNN(_spec(), seed=2).fit(train, progress=False, run=Run(ck, resume=True))
    for a in ("W_", "R_", "b_"):
        assert torch.equal(torch.as_tensor(getattr(resumed, a)), torch.as_tensor(getattr(full, a)))
    assert [r.iteration for r in resumed.history_] == list(range(1, 9))
    assert [r.mse_per_pixel for r in resumed.history_] == [r.mse_per_pixel for r in full.history_]
    # a finished run resumed again changes nothing; the checkpoint reads back as a model
    again = SpikeSlabRNN(_spec(), seed=2).fit(train, progress=False, run=Run(ck, resume=True))
    np.testing.assert_array_equal(again.R_, full.R_)
    loaded = SpikeSlabRNN.from_checkpoint(_spec(), ck / "checkpoint.pt")
    np.testing.assert_array_equal(loaded.W_, full.W_)


def test_save_load_keeps_score_curves_and_samples(tmp_path):
    train, test = tiny_movie()
    model = SpikeSlabRNN(_spec(), seed=1).fit(train, progress=False)
    assert set(model.learned_state()) == {"W_", "R_", "b_", "history_"}
    model.save(tmp_path / "m")
    loaded = SpikeSlabRNN.load(tmp_path / "m")
    assert loaded.seed == 1 and loaded.spec == model.spec
    assert loaded.score(test) == model.score(test)
    assert loaded.history_ == model.history_
    clips = np.zeros((3, 4, 36))  # the draws take its frame count
    for a, b in zip(loaded.sample(3, seed=7, like=clips), model.sample(3, seed=7, like=clips),
                    strict=True):
        np.testing.assert_array_equal(a, b)


def test_reconstruction_score_is_the_heldout_mse_of_the_filtered_code():
    train, test = tiny_movie()
    trained = SpikeSlabRNN(_spec(20), seed=0).fit(train, progress=False)
    z, _ = trained.infer(test)
    Y = test.reshape(*test.shape[:2], -1).astype(float)
    assert trained.score(test) == pytest.approx(np.mean((Y - z @ trained.W_.T) ** 2), rel=1e-12)
    assert 0 < trained.score(test) < 0.95 * np.mean(Y**2)  # better than z = 0


def test_sample_follows_the_generative_model():
    spec = _spec()
    model = SpikeSlabRNN(spec)
    rng = np.random.default_rng(0)
    W = rng.standard_normal((5, 8))
    model.W_, model.R_, model.b_ = W / np.linalg.norm(W, axis=0), np.zeros((8, 8)), \
        np.full(8, -1.0)
    y, z = model.sample(400, seed=3, like=np.zeros((1, 10, 36)))
    assert y.shape == (400, 10, 5) and z.shape == (400, 10, 8)
    on = z != 0
    assert on.mean() == pytest.approx(1 / (1 + np.e), abs=0.01)  # σ(b), R = 0
    assert z[on].std() == pytest.approx(spec.tau_x, rel=0.03)
    resid = y - z @ model.W_.T
    assert resid.std() == pytest.approx(spec.tau_y, rel=0.02)
    # with self-excitation a unit that is on stays on more often
    model.R_ = 3.0 * np.eye(8)
    _, z = model.sample(400, seed=3, like=np.zeros((1, 10, 36)))
    h = z != 0
    assert h[:, 1:][h[:, :-1]].mean() > h[:, 1:][~h[:, :-1]].mean() + 0.1
    three = np.zeros((2, 3, 36))
    assert not np.array_equal(model.sample(2, seed=3, like=three)[0],
                              model.sample(2, seed=4, like=three)[0])


def test_not_fitted_and_foreign_checkpoints(tmp_path):
    train, test = tiny_movie()
    for call in (lambda m: m.score(test), lambda m: m.sample(1, seed=0, like=test),
                 lambda m: m.save(tmp_path)):
        with pytest.raises(NotFittedError, match="call fit"):
            call(SpikeSlabRNN(_spec()))
    old = tmp_path / "old"
    save_checkpoint(old / "checkpoint.pt", {"params": {"W": torch.zeros(36, 8)}, "iteration": 3})
    with pytest.raises(DataError, match="not an ssrnn training checkpoint"):
        SpikeSlabRNN(_spec()).fit(train, progress=False, run=Run(old, resume=True))
    ck = tmp_path / "ck"
    SpikeSlabRNN(_spec(2)).fit(train, progress=False, run=Run(ck, resume=True))
    wider = _spec(4).model_copy(update={"n_units": 9})
    with pytest.raises(DataError, match="checkpoint W has shape"):
        SpikeSlabRNN(wider).fit(train, progress=False, run=Run(ck, resume=True))
