"""Schemas of two published RNN studies: a conv-encoder + RNN that predicts movies of an
oscillating object (``kind: conv_rnn`` with the stimulus ``kind: oscillating_object``) and a
discrete-time tanh RNN classifying sequential MNIST (``kind: rnn``).

Angles in degrees, rates in hertz; lengths of movies and sequences in frames / steps.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from neurorec.spec.base import Spec, register_model, register_stimulus
from neurorec.spec.units import Hertz


# ---------------------------------------------------------------------- stimulus
class ObjectSpec(Spec):
    """The moving object: an isotropic Gaussian blob of peak intensity 1 on black."""

    shape: Literal["gaussian"] = "gaussian"
    sigma_px: float = Field(2.0, gt=0.3, le=50, description="standard deviation, pixels")


@register_stimulus("oscillating_object")
class OscillatingObjectSpec(Spec):
    """Movies of an object in simple harmonic motion along an axis at angle θ.

    Centre (column, row) at frame t: ``p + A sin(2π t / T + φ) (cos θ, −sin θ)`` — θ counted
    anticlockwise from rightwards on screen; ``p`` the frame centre, or (``axis_point:
    random``) a random point keeping the whole path inside the frame.
    """

    kind: Literal["oscillating_object"] = "oscillating_object"
    name: str = Field("oscillating_object", min_length=1, max_length=200)
    description: str = ""
    size_px: int = Field(61, ge=9, le=1024, description="frame side, pixels")
    n_frames: int = Field(60, ge=2, le=100_000, description="frames per movie")
    frame_rate: Hertz = Field(30.0, gt=0, le=10_000, description="frames per second, Hz")
    n_angles: int = Field(72, ge=2, le=3600, description="axis angles evenly spaced in [0, 360)")
    movies_per_angle: int = Field(1, ge=1, le=1000)
    amplitude_px: float = Field(20.0, gt=0, le=1000, description="half the path length, px")
    period_frames: float = Field(20.0, gt=2, le=100_000, description="oscillation period, frames")
    random_phase: bool = Field(True, description="φ uniform in [0, 2π) per movie; else 0")
    axis_point: Literal["centre", "random"] = "centre"
    object: ObjectSpec = ObjectSpec()
    split: Literal["random", "left_right", "up_down"] = Field(
        "random", description="held-out angles: random (test_fraction of the angles), "
        "left_right (160-200 and -20-20 deg), up_down (70-120 and 250-290 deg)")
    test_fraction: float = Field(0.2, ge=0.05, le=0.9, description="split: random only")
    seed: int = Field(0, ge=0, description="phases, axis points and the random split")

    @model_validator(mode="after")
    def _fits_in_frame(self) -> OscillatingObjectSpec:
        need = 2 * (self.amplitude_px + 3 * self.object.sigma_px)
        if need > self.size_px - 1:
            raise ValueError(f"amplitude_px: a path of 2 × ({self.amplitude_px} + 3 σ) = "
                             f"{need:g} px does not fit in a {self.size_px}-px frame")
        return self


# ---------------------------------------------------------------------- conv_rnn
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


# ---------------------------------------------------------------------- rnn (seq-MNIST)
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


__all__ = ["ConvRNNSpec", "OscillatingObjectSpec", "RNNSpec"]
