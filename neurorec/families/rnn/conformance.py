"""The rnn family's row in the conformance suite: a small tanh RNN on real MNIST digits."""

from __future__ import annotations

from functools import cache

import numpy as np

from neurorec.data.sequences import LabelledSequences
from neurorec.datasets.mnist import MnistSplit, mnist_split
from neurorec.families.base import Example


@cache
def mnist_small() -> MnistSplit:
    """The bundled MNIST test images split 8000 / 2000 (seed 0); the example uses a slice.
    Missing files are a DataError naming the path and ``NEUROREC_DATA`` (never a skip)."""
    return mnist_split(2000, seed=0)


def rnn_example() -> Example:
    def data() -> tuple[LabelledSequences, LabelledSequences]:
        d = mnist_small()
        return (LabelledSequences(d.x_train[:500], d.y_train[:500]),
                LabelledSequences(d.x_test[:500], d.y_test[:500]))

    def wrong(test: LabelledSequences) -> LabelledSequences:  # one input channel too many
        return LabelledSequences(np.concatenate([test.x, test.x[..., :1]], axis=2), test.y)

    # chance: always the most frequent test class
    return Example(spec={"kind": "rnn", "n_units": 32,
                         "fit": {"epochs": 2, "batch_size": 50, "lr": 1e-2}},
                   data=data, chance=float(np.bincount(data()[1].y).max() / 500), wrong=wrong)
