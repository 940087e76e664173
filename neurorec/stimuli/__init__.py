"""Stimulus generators: pure functions of a stimulus spec returning frames.

Drifting gratings (``gratings``), drifting Gabors (``gabors``), white noise (``noise``) and
natural movies (``movies``) return (frame, height, width) arrays of luminance contrast
(0 = grey) with the frame rate and trial timing attached; ``generate(spec)`` dispatches on the
spec's ``kind``. ``oscillator`` makes the oscillating-object movies of the conv-RNN study.
Names are imported lazily, so importing one generator never pulls the others in.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "Movie": "timing", "pixel_grid": "timing", "schedule": "timing",
    "grating": "gratings", "drifting_gratings": "gratings",
    "gabor": "gabors", "drifting_gabors": "gabors",
    "white_noise": "noise",
    "NaturalMovie": "movies", "Whitener": "movies", "fit_zca": "movies",
    "natural_movie": "movies",
    "OscillatorMovies": "oscillator", "make_movies": "oscillator",
}
_GENERATORS = {"drifting_gratings": "gratings", "drifting_gabors": "gabors",
               "white_noise": "noise", "natural_movie": "movies"}


def generate(spec):
    """The frames of a ``drifting_gratings``, ``drifting_gabors``, ``white_noise`` or
    ``natural_movie`` spec (a :class:`~neurorec.stimuli.timing.Movie`, or a
    :class:`~neurorec.stimuli.movies.NaturalMovie`)."""
    module = importlib.import_module(f"neurorec.stimuli.{_GENERATORS[spec.kind]}")
    return getattr(module, spec.kind)(spec)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"neurorec.stimuli.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'neurorec.stimuli' has no attribute {name!r}")


__all__ = ["generate", *_WHERE]
