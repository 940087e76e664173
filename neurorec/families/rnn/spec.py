"""Schema of the discrete-time tanh RNN classifying sequential MNIST (``kind: rnn``).

Lengths of sequences in steps.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from neurorec.spec.base import Spec, register_model


class AdamSpec(Spec):
    """Adam on mean cross-entropy over minibatches."""

    lr: float = Field(1e-3, gt=0, le=10)
    epochs: int = Field(20, ge=1, le=100_000)
    batch_size: int = Field(64, ge=1, le=100_000)
    grad_clip: float = Field(1.0, gt=0, description="max gradient norm")


class MnistSplitSpec(Spec):
    """The bundled MNIST test set (10,000 images) split stratified into train / test."""

    n_test: int = Field(2000, ge=10, le=9990)
    split_seed: int = Field(0, ge=0)


@register_model("rnn")
class RNNSpec(Spec):
    """Discrete-time RNN ``h_t = tanh(W h_{t-1} + U x_t + b)``, ``h_0 = 0``, linear readout of
    the last state; rows of an image as time steps."""

    kind: Literal["rnn"] = "rnn"
    name: str = Field("rnn", min_length=1, max_length=200)
    description: str = ""
    n_units: int = Field(200, ge=1, le=100_000)
    n_inputs: int = Field(28, ge=1, le=100_000)
    n_outputs: int = Field(10, ge=1, le=100_000)
    nonlinearity: Literal["tanh"] = "tanh"
    init_gain: float = Field(1.0, gt=0, le=10, description="W ~ N(0, gain² / n_units)")
    fit: AdamSpec = AdamSpec()
    data: MnistSplitSpec = MnistSplitSpec()


__all__ = ["AdamSpec", "MnistSplitSpec", "RNNSpec"]
