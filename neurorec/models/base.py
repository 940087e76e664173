"""The contract every model family implements, and the registry that finds them by ``kind``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, TypeVar

import numpy as np

from neurorec.analysis.metrics import bits_per_spike, log_likelihood
from neurorec.data.recording import BinnedTrials
from neurorec.errors import NotFittedError
from neurorec.spec.base import Spec

M = TypeVar("M", bound=type["Model"])
MODELS: dict[str, type[Model]] = {}


def register(kind: str) -> Callable[[M], M]:
    """Class decorator: the model class that fits specs of ``kind``."""

    def decorate(cls: M) -> M:
        MODELS[kind] = cls
        cls.kind = kind
        return cls

    return decorate


def model_for(spec: Spec, **kwargs) -> Model:
    """Instantiate the registered model for ``spec.kind``."""
    return MODELS[spec.kind](spec, **kwargs)


class Model(ABC):
    """sklearn-like contract: ``fit`` returns self, learned attributes end in ``_``.

    Every method taking data takes :class:`BinnedTrials`; rates are expected counts per bin,
    trial × time × unit.
    """

    kind: ClassVar[str]
    observation_name: str = "poisson"

    @abstractmethod
    def fit(self, data: BinnedTrials, progress: bool = True) -> Model: ...

    @abstractmethod
    def predict_rate(self, data: BinnedTrials) -> np.ndarray:
        """(n_trials, n_bins, n_units) expected count per bin, given the observed past."""

    @abstractmethod
    def sample(self, condition: np.ndarray, n_bins: int, seed: int) -> np.ndarray:
        """(len(condition), n_bins, n_units) counts drawn ancestrally from the model.

        A model driven by a stimulus time series also takes ``stimulus`` (n_trials, n_bins,
        n_channels), binned like its training data."""

    @abstractmethod
    def n_parameters(self) -> int: ...

    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise NotFittedError(f"{type(self).__name__}: call fit() before using the model")

    def noise_scale(self) -> np.ndarray | None:
        """(n_units,) noise standard deviation of Gaussian observations, else None."""
        return None

    def log_likelihood(self, data: BinnedTrials) -> float:
        """Total log-likelihood of ``data.counts`` in nats."""
        return log_likelihood(data.counts, self.predict_rate(data), self.observation_name,
                              self.noise_scale())

    def score(self, data: BinnedTrials) -> float:
        """Bits per spike (NLB definition) on ``data``."""
        return bits_per_spike(data.counts, self.predict_rate(data), self.observation_name,
                              self.noise_scale())
