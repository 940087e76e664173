"""Observation models: how a linear drive becomes the distribution of one bin's count.

Each is a small object with pure torch methods on broadcastable tensors; the same code runs
on CPU and CUDA. ``drive`` is the linear predictor (any shape), ``y`` observed values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _log_softplus(drive: torch.Tensor) -> torch.Tensor:
    # log(softplus(d)) loses all precision once softplus underflows; there it equals d.
    return torch.where(drive < -30.0, drive, torch.log(F.softplus(drive).clamp_min(1e-300)))


@dataclass(frozen=True)
class Poisson:
    """Poisson counts with rate ``link(drive)`` (expected count per bin)."""

    link: str = "exp"
    name: str = "poisson"

    def log_mean(self, drive: torch.Tensor) -> torch.Tensor:
        return drive if self.link == "exp" else _log_softplus(drive)

    def mean(self, drive: torch.Tensor) -> torch.Tensor:
        return torch.exp(drive) if self.link == "exp" else F.softplus(drive)

    def nll(self, y: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
        """Elementwise negative log-likelihood including ``log y!``."""
        return self.mean(drive) - y * self.log_mean(drive) + torch.lgamma(y + 1.0)

    def prepare(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def sample(self, drive: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return torch.poisson(self.mean(drive), generator=generator)


@dataclass(frozen=True)
class Bernoulli:
    """Spike / no spike per bin with probability ``sigmoid(drive)``; counts > 1 count as 1."""

    link: str = "logistic"
    name: str = "bernoulli"

    def mean(self, drive: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(drive)

    def nll(self, y: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(drive, y, reduction="none")

    def prepare(self, y: torch.Tensor) -> torch.Tensor:
        return (y > 0).to(y.dtype)

    def sample(self, drive: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return torch.bernoulli(self.mean(drive), generator=generator)


Observation = Poisson | Bernoulli


def make_observation(name: str, link: str) -> Observation:
    """The observation model a spec names."""
    if name == "poisson":
        return Poisson(link)
    if name == "bernoulli":
        return Bernoulli()
    raise ValueError(f"unknown observation model {name!r}")


LN2 = math.log(2.0)
