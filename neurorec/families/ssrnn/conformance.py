"""The spike-and-slab RNN's row in the conformance suite: a small network fitted on a tiny
whitened natural movie (bundled images, offline)."""

from __future__ import annotations

from functools import cache

import numpy as np

from neurorec.families.base import Example

N_TRAIN = 48


@cache
def tiny_movie() -> tuple[np.ndarray, np.ndarray]:
    """(train, test) clips: 6×6 ZCA-whitened patches of scikit-image's camera image,
    6 frames at 30 Hz, 64 clips (seed 0); the last 16 clips are held out."""
    from neurorec.spec.stimuli import NaturalMovieSpec
    from neurorec.stimuli import generate

    spec = NaturalMovieSpec(images=("skimage:camera",), downsample=4,
                            patch_px=6, n_clips=64, seed=0,
                            timing={"frame_rate": "30 Hz", "duration": "0.2 s"})
    clips = generate(spec).clips
    return clips[:N_TRAIN], clips[N_TRAIN:]


_SPEC = {"kind": "ssrnn", "n_units": 12, "prior_p": 0.1,
         "inference": {"max_steps": 20, "tol": 0.05},
         "learning": {"n_iterations": 20, "batch_clips": 8, "lr_w": 0.01, "lr_r": 0.5,
                      "lr_b": 0.05, "checkpoint_every": 10, "dtype": "float64"}}


def ssrnn_example() -> Example:
    def sample(model, seed: int) -> np.ndarray:
        return model.sample(4, seed=seed, like=tiny_movie()[1][:, :6])[0]

    # chance: the reconstruction error of z = 0, the mean squared whitened pixel
    return Example(spec=_SPEC, data=tiny_movie, chance=float(np.mean(tiny_movie()[1] ** 2)),
                   wrong=lambda clips: clips[..., :-1], sample=sample, sample_shape=(4, 6, 36))
