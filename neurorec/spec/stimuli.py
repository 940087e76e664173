"""Schemas of the stimulus protocols in ``stimuli/*.yaml``.

Angles in degrees, durations in seconds, rates in hertz unless a unit is written.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from neurorec.spec.base import Spec, register_stimulus
from neurorec.spec.units import CyclesPerDegree, Degrees, DegreesPerSecond, Hertz, Seconds


class Timing(Spec):
    """When frames are shown: every protocol has one."""

    frame_rate: Hertz = Field(60.0, gt=0, le=10_000, description="frames per second, Hz")
    duration: Seconds = Field(..., gt=0, le=3600, description="stimulus on, seconds")
    blank_before: Seconds = Field(0.0, ge=0, le=3600, description="grey screen before, seconds")
    blank_after: Seconds = Field(0.0, ge=0, le=3600, description="grey screen after, seconds")
    repeats: int = Field(1, ge=1, le=100_000)
    shuffle_seed: int | None = Field(0, description="order of conditions per repeat; null: fixed")


@register_stimulus("drifting_gratings")
class DriftingGratingsSpec(Spec):
    """Full-field drifting gratings over direction × speed × spatial frequency × contrast."""

    kind: Literal["drifting_gratings"] = "drifting_gratings"
    name: str = Field("drifting_gratings", min_length=1, max_length=200)
    description: str = ""
    waveform: Literal["sine", "square"] = "sine"
    directions: tuple[Degrees, ...] = Field(..., min_length=1, max_length=3600,
                                            description="drift directions, degrees")
    speeds: tuple[DegreesPerSecond, ...] = Field((2.0,), min_length=1, max_length=1000,
                                                 description="drift speeds, deg/s")
    spatial_frequencies: tuple[CyclesPerDegree, ...] = Field(
        (2.0,), min_length=1, max_length=1000, description="cycles per degree")
    contrasts: tuple[float, ...] = Field((1.0,), min_length=1, max_length=100)
    size_px: int = Field(32, ge=4, le=4096, description="frame side, pixels")
    degrees_per_px: float = Field(0.1, gt=0, le=10, description="visual angle of one pixel")
    timing: Timing

    @model_validator(mode="after")
    def _ranges(self) -> DriftingGratingsSpec:
        for field, values, lo, hi in (("contrasts", self.contrasts, 0.0, 1.0),
                                      ("speeds", self.speeds, 0.0, 1e4),
                                      ("spatial_frequencies", self.spatial_frequencies, 0.0, 1e3)):
            bad = [v for v in values if not lo <= v <= hi]
            if bad:
                raise ValueError(f"{field}: {bad[0]} outside [{lo}, {hi}]")
        return self
