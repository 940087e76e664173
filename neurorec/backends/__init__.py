"""Simulation backends other than the models' own torch samplers.

Backends import their simulator lazily: ``import neurorec.backends`` never imports brian2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from neurorec.models.glm import GLM

__all__ = ["simulate_brian2"]


def simulate_brian2(model: GLM, condition: np.ndarray, seed: int, n_bins: int | None = None,
                    dt_substeps: int = 1) -> np.ndarray:
    """Sample a fitted GLM / R-GLM as a Brian 2 network; see
    :func:`neurorec.backends.brian2_glm.simulate_brian2`."""
    from neurorec.backends.brian2_glm import simulate_brian2 as run

    return run(model, condition, seed, n_bins=n_bins, dt_substeps=dt_substeps)
