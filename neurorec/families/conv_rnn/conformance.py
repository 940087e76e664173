"""The conv_rnn family's row in the conformance suite: tiny movies of the oscillating object
(:mod:`neurorec.stimuli.oscillator`), scored on its held-out angles."""

from __future__ import annotations

from functools import cache

import numpy as np

from neurorec.families.base import Example
from neurorec.families.conv_rnn.model import frame_bce
from neurorec.spec.oscillator import OscillatingObjectSpec
from neurorec.stimuli.oscillator import OscillatorMovies, make_movies


@cache
def movies_small() -> tuple[OscillatorMovies, OscillatorMovies]:
    """21-px movies of 14 frames at 12 angles; (train, test) by the stimulus' own split."""
    movies = make_movies(OscillatingObjectSpec(size_px=21, n_frames=14, n_angles=12,
                                               amplitude_px=5, period_frames=8,
                                               object={"sigma_px": 1.0}))
    return movies.subset(~movies.is_test), movies.subset(movies.is_test)


def conv_rnn_example() -> Example:
    def data() -> tuple[np.ndarray, np.ndarray]:
        return movies_small()[0].frames, movies_small()[1].frames

    # chance: every predicted pixel 0.5 (an untrained sigmoid readout), ln 2 nats per pixel
    target = data()[1][:, 3:]
    return Example(spec={"kind": "conv_rnn",
                         "autoencoder": {"channels": (4, 4), "epochs": 1, "batch_size": 16},
                         "rnn": {"n_units": 8, "delta_t": 3, "epochs": 1, "batch_size": 2}},
                   data=data, chance=frame_bce(target, np.full_like(target, 0.5)),
                   wrong=lambda frames: frames[:, :, :-1, :-1])
