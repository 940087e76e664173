"""Schema of the conv-encoder + RNN that predicts movies of an oscillating object
(``kind: conv_rnn``; its stimulus: ``kind: oscillating_object``, :mod:`neurorec.spec.oscillator`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from neurorec.spec.base import Spec, register_model


class AutoencoderSpec(Spec):
    """Conv 3×3 + max-pool (ceil) stages down to ``channels[-1]`` × 4 × 4 at 61 px; mirror
    decoder with nearest upsampling; sigmoid output."""

    channels: tuple[int, ...] = Field((8, 16, 8, 4), min_length=1, max_length=8,
                                      description="channels after each conv + pool stage")
    epochs: int = Field(30, ge=1, le=100_000)
    batch_size: int = Field(64, ge=1, le=100_000)
    lr: float = Field(1.0, gt=0, le=100, description="ADADELTA learning rate")

    @model_validator(mode="after")
    def _positive(self) -> AutoencoderSpec:
        if any(c < 1 or c > 512 for c in self.channels):
            raise ValueError(f"channels: each in 1..512, got {list(self.channels)}")
        return self


class PredictorSpec(Spec):
    """The fully connected RNN between the frozen encoder and decoder."""

    n_units: int = Field(64, ge=1, le=10_000)
    delta_t: int = Field(5, ge=1, le=1000, description="predict the frame this many steps ahead")
    epochs: int = Field(50, ge=1, le=100_000)
    batch_size: int = Field(16, ge=1, le=100_000, description="movies per batch")
    lr: float = Field(1.0, gt=0, le=100, description="ADADELTA learning rate")
    l1: float = Field(1e-5, ge=0, description="L1 penalty on all RNN weights (sum |w|)")
    grad_clip: float = Field(5.0, gt=0, description="max gradient norm")


@register_model("conv_rnn")
class ConvRNNSpec(Spec):
    """Convolutional autoencoder trained on frame reconstruction, then frozen; an RNN in its
    code space trained to predict the frame ``delta_t`` steps ahead (binary cross-entropy,
    ADADELTA, L1 on weights, ``validation_fraction`` of the training movies held out)."""

    kind: Literal["conv_rnn"] = "conv_rnn"
    name: str = Field("conv_rnn", min_length=1, max_length=200)
    description: str = ""
    autoencoder: AutoencoderSpec = AutoencoderSpec()
    rnn: PredictorSpec = PredictorSpec()
    validation_fraction: float = Field(0.2, ge=0.0, le=0.5)


__all__ = ["AutoencoderSpec", "ConvRNNSpec", "PredictorSpec"]
