"""Frames on a timeline: the container every stimulus generator returns, and the scheduler
that lays conditions out as trials (blank before, stimulus, blank after; repeats, shuffling).

Frames hold luminance contrast: 0 is the grey screen, ±1 the extremes. Pixel coordinates in
degrees have x to the right and y up, origin at the frame centre (see :func:`pixel_grid`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Movie:
    """A stimulus movie and when each trial happens in it.

    Attributes:
        frames: (n_frames, height, width) float32 luminance contrast, 0 = grey.
        frame_rate_hz: frames per second.
        degrees_per_px: visual angle of one pixel.
        trials: one row per trial, in presentation order: the condition's columns plus
            ``start_frame`` (first blank frame), ``on_frame`` (first stimulus frame),
            ``off_frame`` (first frame after the stimulus), ``stop_frame`` (end of the trial,
            exclusive), ``repeat``, ``condition`` (index into the condition list).
    """

    frames: np.ndarray
    frame_rate_hz: float
    degrees_per_px: float
    trials: pd.DataFrame

    @property
    def time_s(self) -> np.ndarray:
        """(n_frames,) frame onset times, seconds."""
        return np.arange(len(self.frames)) / self.frame_rate_hz


def pixel_grid(size_px: int, degrees_per_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in degrees, each (size_px, size_px): ``x`` grows with the column,
    ``y`` grows upwards (decreases with the row); (0, 0) is the frame centre."""
    c = (np.arange(size_px) - (size_px - 1) / 2) * degrees_per_px
    x, y = np.meshgrid(c, -c)
    return x, y


def n_frames(duration_s: float, frame_rate_hz: float) -> int:
    """Frames shown in ``duration_s`` at ``frame_rate_hz`` (rounded to the nearest frame)."""
    return round(duration_s * frame_rate_hz)


def schedule(conditions: Sequence[dict[str, Any]], timing: Any, size_px: int,
             degrees_per_px: float,
             render: Callable[[dict[str, Any], np.ndarray, int], np.ndarray]) -> Movie:
    """Lay ``conditions`` out as trials following ``timing`` (a :class:`~neurorec.spec.stimuli.
    Timing`).

    Args:
        conditions: one dict of parameters per condition.
        timing: frame_rate, duration, blank_before, blank_after (s), repeats, shuffle_seed.
        render: ``render(condition, t_s, trial_index) -> (len(t_s), size_px, size_px)`` frames
            of one trial, ``t_s`` seconds since stimulus onset.
    """
    rate = float(timing.frame_rate)
    pre, on, post = (n_frames(d, rate) for d in (timing.blank_before, timing.duration,
                                                 timing.blank_after))
    rng = None if timing.shuffle_seed is None else np.random.default_rng(timing.shuffle_seed)
    per_trial = pre + on + post
    n_trials = len(conditions) * timing.repeats
    frames = np.zeros((n_trials * per_trial, size_px, size_px), dtype=np.float32)
    t_s = np.arange(on) / rate
    rows = []
    for repeat in range(timing.repeats):
        order = np.arange(len(conditions)) if rng is None else rng.permutation(len(conditions))
        for c in order:
            j = len(rows)
            start = j * per_trial
            frames[start + pre:start + pre + on] = render(conditions[c], t_s, j)
            rows.append({**conditions[c], "condition": int(c), "repeat": repeat,
                         "start_frame": start, "on_frame": start + pre,
                         "off_frame": start + pre + on, "stop_frame": start + per_trial})
    return Movie(frames, rate, float(degrees_per_px), pd.DataFrame(rows))
