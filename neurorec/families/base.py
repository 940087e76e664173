"""The contract every model family implements, and the registry that finds families by ``kind``.

A family is one folder under ``neurorec/families/``; its ``__init__`` calls
:func:`register_family` for each kind it provides. :func:`neurorec.families.registered` imports
every folder and returns the table, so the CLI, the fit pipeline, memory estimates, reports and
``export-nwb`` find a family without being edited.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

import numpy as np

from neurorec.core.errors import NotFittedError
from neurorec.core.metrics import bits_per_spike, log_likelihood
from neurorec.data.recording import BinnedTrials
from neurorec.spec.base import Spec

M = TypeVar("M", bound=type)

#: What a family can do, declared as data (never probed with ``hasattr``).
CAPABILITIES = frozenset({
    "binned_trials",    # fits BinnedTrials by likelihood: ``neurorec fit``, bits/spike, export-nwb
    "heldout_neurons",  # co-smoothing: ``model.heldout`` mask set before fit
    "brian2",           # a Brian 2 backend that reproduces the torch simulation
    "stimulus_filter",  # driven by a stimulus time series
    "resume",           # training resumes bitwise from its checkpoints
    "latent_dynamics",  # has a linear latent with eigenvalues / time constants (R-GLM)
    "task",             # trained on a task protocol (``neurorec train`` / ``simulate``)
})

#: How each family's ``score`` is defined.
SCORES = frozenset({"bits_per_spike", "perplexity", "task_loss", "accuracy", "reconstruction"})


@dataclass(frozen=True)
class Family:
    """One registered kind: its spec schema, its model class and what it can do."""

    kind: str
    spec: type[Spec]
    model: type
    score: str = "bits_per_spike"
    capabilities: frozenset[str] = field(default_factory=frozenset)
    description: str = ""

    def supports(self, capability: str) -> bool:
        if capability not in CAPABILITIES:
            raise KeyError(f"unknown capability {capability!r} (known: {sorted(CAPABILITIES)})")
        return capability in self.capabilities


FAMILIES: dict[str, Family] = {}
#: kind -> model class, for the kinds fitted to BinnedTrials (``neurorec fit``).
MODELS: dict[str, type[Model]] = {}


def register_family(kind: str, spec: type[Spec], model: type, *, score: str = "bits_per_spike",
                    capabilities: Iterable[str] = (), description: str = "") -> Family:
    """Register ``model`` as the class that realises specs of ``kind`` (schema ``spec``)."""
    caps = frozenset(capabilities)
    if unknown := caps - CAPABILITIES:
        raise ValueError(f"{kind}: unknown capabilities {sorted(unknown)}")
    if score not in SCORES:
        raise ValueError(f"{kind}: score {score!r} not in {sorted(SCORES)}")
    if kind in FAMILIES:
        raise RuntimeError(f"family kind {kind!r} registered twice")
    if spec.model_fields["kind"].default != kind:
        raise ValueError(f"{kind}: spec {spec.__name__}.kind defaults to "
                         f"{spec.model_fields['kind'].default!r}")
    family = Family(kind, spec, model, score, caps, description or (spec.__doc__ or "").strip())
    FAMILIES[kind] = family
    model.kind = kind
    if "binned_trials" in caps:
        MODELS[kind] = model
    return family


def model_for(spec: Spec, **kwargs) -> Model:
    """Instantiate the registered model for ``spec.kind``."""
    return FAMILIES[spec.kind].model(spec, **kwargs)


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
