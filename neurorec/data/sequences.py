"""Labelled sequences: the data type of sequence classifiers (e.g. sequential MNIST)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurorec.core.errors import DataError


@dataclass(frozen=True)
class LabelledSequences:
    """``x`` (n, T, n_inputs) float sequences and their classes ``y`` (n,) int."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if np.ndim(self.x) != 3 or np.shape(self.y) != (len(self.x),):
            raise DataError(f"sequences: x must be (n, T, n_inputs) and y (n,), got "
                            f"{np.shape(self.x)} and {np.shape(self.y)}")

    def __len__(self) -> int:
        return len(self.x)
