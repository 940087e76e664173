"""The rnn family's row in the conformance suite: a small tanh RNN on real MNIST digits."""

from __future__ import annotations

from functools import cache

from neurorec.datasets.mnist import MnistSplit, mnist_split
from neurorec.families.base import Example
from neurorec.families.rnn.model import SequenceRNN
from neurorec.families.rnn.spec import RNNSpec


@cache
def mnist_small() -> MnistSplit:
    """The bundled MNIST test images split 8000 / 2000 (seed 0); the example uses a slice.
    Missing files are a DataError naming the path and ``NEUROREC_DATA`` (never a skip)."""
    return mnist_split(2000, seed=0)


def rnn_example() -> Example:
    spec = RNNSpec(n_units=32, fit={"epochs": 2, "batch_size": 50, "lr": 5e-3})

    def fit(model: SequenceRNN) -> SequenceRNN:
        data = mnist_small()
        return model.fit(data.x_train[:1000], data.y_train[:1000], seed=0, progress=False)

    def score(model: SequenceRNN) -> float:
        data = mnist_small()
        return model.score(data.x_test[:500], data.y_test[:500])

    return Example(make=lambda: SequenceRNN(spec), fit=fit, score=score, simulate=None)
