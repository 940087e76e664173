"""Schema of the oscillating-object movies (``kind: oscillating_object``): an object in
simple harmonic motion, the stimulus of the conv-encoder + RNN study (Lotter et al. style).

Lengths in frames and pixels, rates in hertz.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from neurorec.spec.base import Spec, register_stimulus
from neurorec.spec.units import Hertz


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


__all__ = ["ObjectSpec", "OscillatingObjectSpec"]
