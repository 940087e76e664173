"""The options the motion study adds to the spike-and-slab RNN and its stimuli: the
non-negative (half-normal) slab, low-passed movies, grating start phases, the R override."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.ndimage import gaussian_filter

from neurorec.families.ssrnn.model import (
    SpikeSlabRNN,
    single_moves,
    slab_log_norm,
    slice_log_likelihood,
    solve_slice,
)
from neurorec.spec.load import validate_spec
from neurorec.spec.stimuli import DriftingGratingsSpec, NaturalMovieSpec
from neurorec.stimuli.gratings import conditions, grating_clips
from neurorec.stimuli.movies import block_mean, load_image, natural_movie


@pytest.mark.parametrize("slab", ["gaussian", "nonnegative"])
def test_slab_density_integrates_to_one(slab):
    tau = 0.7
    lo = 0.0 if slab == "nonnegative" else -np.inf
    total, _ = integrate.quad(lambda x: math.exp(slab_log_norm(tau, slab) - x**2 / (2 * tau**2)),
                              lo, np.inf)
    assert total == pytest.approx(1.0, rel=1e-10)


def test_nonnegative_single_moves_are_the_best_nonnegative_coordinate_values():
    """Each coordinate's move against a brute-force search of the slice over x >= 0 (and off),
    the others fixed."""
    gen = torch.Generator().manual_seed(0)
    D, n, tx, ty = 9, 5, 1.0, 0.5
    W = torch.randn(D, n, generator=gen, dtype=torch.float64)
    y = torch.randn(2, D, generator=gen, dtype=torch.float64)
    logits = torch.randn(2, n, generator=gen, dtype=torch.float64)
    z = torch.tensor([[0.0, 0.3, 0.0, 1.2, 0.0], [0.5, 0.0, 0.0, 0.0, 2.0]], dtype=torch.float64)
    c = (y - z @ W.T) @ W
    best, gain = single_moves(z, c, (W**2).sum(0), logits, tx, ty, "nonnegative")
    assert (best >= 0).all()
    grid = torch.cat([torch.zeros(1), torch.linspace(1e-4, 6, 60001)]).double()
    for b in range(2):
        base = slice_log_likelihood(z[b:b + 1], y[b:b + 1], W, logits[b:b + 1], tx, ty,
                                    "nonnegative")
        for j in range(n):
            cand = z[b].repeat(len(grid), 1)
            cand[:, j] = grid
            ll = slice_log_likelihood(cand, y[b].expand(len(grid), -1), W,
                                      logits[b].expand(len(grid), -1), tx, ty, "nonnegative")
            x_grid = float(grid[ll.argmax()])
            if x_grid < 1e-3:  # sup at x -> 0+ is no cause: z = 0 is "off"
                x_grid, top = 0.0, float(ll[0])
            else:
                top = float(ll.max())
            assert float(best[b, j]) == pytest.approx(x_grid, abs=2e-4)
            assert float(gain[b, j]) == pytest.approx(top - float(base), abs=1e-6)


def test_nonnegative_inference_stays_nonnegative_and_climbs():
    gen = torch.Generator().manual_seed(1)
    W = torch.randn(16, 24, generator=gen, dtype=torch.float64)
    W = W / W.norm(dim=0)
    y = torch.randn(8, 16, generator=gen, dtype=torch.float64)
    logits = torch.full((8, 24), -2.0, dtype=torch.float64)
    z, _ = solve_slice(y, W, logits, 1.0, 0.5, 200, 1e-9, slab="nonnegative")
    assert (z >= 0).all() and (z > 0).any()
    ll = slice_log_likelihood(z, y, W, logits, 1.0, 0.5, "nonnegative")
    assert (ll > slice_log_likelihood(torch.zeros_like(z), y, W, logits, 1.0, 0.5,
                                      "nonnegative")).all()


def test_infer_with_r_override_equals_a_model_with_that_r():
    spec = validate_spec({"kind": "ssrnn", "n_units": 6, "slab": "nonnegative",
                          "learning": {"n_iterations": 0, "dtype": "float64"}}, "<test>")
    rng = np.random.default_rng(0)
    clips = rng.standard_normal((3, 5, 16))
    a = SpikeSlabRNN(spec, seed=0).fit(clips, progress=False)
    a.R_ = rng.standard_normal((6, 6))
    b = SpikeSlabRNN(spec, seed=0).fit(clips, progress=False)
    R = rng.standard_normal((6, 6))
    b.R_ = R
    assert np.array_equal(a.infer(clips, R=R)[0], b.infer(clips)[0])
    W0, R0, _ = a.initial_params(clips)
    assert np.array_equal(W0, b.W_) and not R0.any()  # n_iterations 0: fit = initialisation


def test_blurred_movie_is_the_gaussian_filtered_image():
    spec = NaturalMovieSpec(images=("skimage:camera",), downsample=4, patch_px=6, n_clips=2,
                            blur_px=1.2, whitening={"method": "none"},
                            timing={"frame_rate": "30 Hz", "duration": "0.1 s"})
    movie = natural_movie(spec)
    img = gaussian_filter(block_mean(load_image("skimage:camera"), 4), 1.2, mode="reflect")
    img = (img - img.mean()) / img.std()
    r, c = movie.gaze[0, 0]  # the first frame, read bilinearly at the gaze position
    offs = np.arange(6) - 2.5
    rr, cc = r + offs, c + offs
    r0, c0 = np.floor(rr).astype(int), np.floor(cc).astype(int)
    wr, wc = (rr - r0)[:, None], (cc - c0)[None, :]
    patch = ((1 - wr) * (1 - wc) * img[np.ix_(r0, c0)] + (1 - wr) * wc * img[np.ix_(r0, c0 + 1)]
             + wr * (1 - wc) * img[np.ix_(r0 + 1, c0)] + wr * wc * img[np.ix_(r0 + 1, c0 + 1)])
    assert np.allclose(movie.raw[0, 0], patch, atol=1e-5)


def test_grating_start_phases():
    spec = DriftingGratingsSpec(directions=[0], speeds=[1.0], spatial_frequencies=[2.5],
                                phases=[0, 90, 180, 270], size_px=12, degrees_per_px=0.1,
                                timing={"frame_rate": 30.0, "duration": 0.2})
    assert [c["phase"] for c in conditions(spec)] == [0, 90, 180, 270]
    f = grating_clips(spec)
    assert np.allclose(f[2], -f[0], atol=1e-6)  # half a cycle apart: contrast-reversed
    x = (np.arange(12) - 5.5) * 0.1
    assert np.allclose(f[1, 0, 0], np.cos(2 * np.pi * 2.5 * x), atol=1e-6)
