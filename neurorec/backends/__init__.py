"""Simulation backends other than the models' own torch samplers, found through the registry.

Each family that declares the ``brian2`` capability keeps its Brian 2 code in its own folder
(``neurorec/families/<family>/brian2.py``); this module is the stable entry point.
Backends import their simulator lazily: ``import neurorec.backends`` never imports brian2.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

__all__ = ["simulate_brian2"]


def simulate_brian2(model: Any, condition: np.ndarray, seed: int, n_bins: int | None = None,
                    dt_substeps: int = 1, stimulus: np.ndarray | None = None) -> np.ndarray:
    """Sample a fitted GLM / R-GLM as a Brian 2 network; see
    :func:`neurorec.families.glm.brian2.simulate_brian2`. ``stimulus`` (n_trials, n_bins,
    n_channels) drives a model with a stimulus filter, as in ``model.sample``."""
    from neurorec.core.errors import SpecError
    from neurorec.families import family_of, kinds_supporting

    family = family_of(model.kind)
    if not family.supports("brian2"):
        raise SpecError(f"{model.kind}: no Brian 2 backend (families with one: "
                        f"{', '.join(kinds_supporting('brian2'))})")
    backend = importlib.import_module(f"{family.package}.brian2")
    extra = {} if stimulus is None else {"stimulus": stimulus}
    return backend.simulate_brian2(model, condition, seed, n_bins=n_bins,
                                   dt_substeps=dt_substeps, **extra)
