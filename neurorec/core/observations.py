"""Observation models: how a linear drive becomes the distribution of one bin's count.

Each is a small object with pure torch methods on broadcastable tensors; the same code runs
on CPU and CUDA. ``drive`` is the linear predictor (any shape), ``y`` observed values,
``log_scale`` the log noise standard deviation of families that have one (Gaussian), one per
unit, broadcast along the last axis; the others ignore it.

Correlations inside a time bin are not an observation model of their own: the models add
``Σ_{j before i} A_ij y_j(t)`` to unit ``i``'s drive, so every family here becomes its
correlated (autoregressive-in-unit-order) variant with an exact likelihood and exact sampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Above this drive exp() continues as its second-order Taylor polynomial: e^30 ≈ 1e13 expected
# spikes per bin is beyond any neuron, so fitted models are unchanged, but a line-search trial
# step far out (or a runaway recurrence) gives a large finite objective, not inf/NaN.
EXP_DRIVE_MAX = 30.0


def _safe_exp(drive: torch.Tensor) -> torch.Tensor:
    over = (drive - EXP_DRIVE_MAX).clamp_min(0.0)
    return torch.exp(drive.clamp(max=EXP_DRIVE_MAX)) * (1.0 + over + 0.5 * over**2)


def _safe_log_exp(drive: torch.Tensor) -> torch.Tensor:
    over = (drive - EXP_DRIVE_MAX).clamp_min(0.0)
    return drive.clamp(max=EXP_DRIVE_MAX) + torch.log1p(over + 0.5 * over**2)


def _log_softplus(drive: torch.Tensor) -> torch.Tensor:
    # log(softplus(d)) loses all precision once softplus underflows; there it equals d.
    return torch.where(drive < -30.0, drive, torch.log(F.softplus(drive).clamp_min(1e-300)))


@dataclass(frozen=True)
class Poisson:
    """Poisson counts with rate ``link(drive)`` (expected count per bin)."""

    link: str = "exp"
    name: str = "poisson"

    def log_mean(self, drive: torch.Tensor) -> torch.Tensor:
        return _safe_log_exp(drive) if self.link == "exp" else _log_softplus(drive)

    def mean(self, drive: torch.Tensor) -> torch.Tensor:
        return _safe_exp(drive) if self.link == "exp" else F.softplus(drive)

    has_scale = False

    def nll(self, y: torch.Tensor, drive: torch.Tensor,
            log_scale: torch.Tensor | None = None) -> torch.Tensor:
        """Elementwise negative log-likelihood including ``log y!``."""
        if self.link == "exp" and bool(drive.max() <= EXP_DRIVE_MAX):
            # where no drive is past the guard both formulas are one function; this one is a
            # third of the elementwise passes (the R-GLM's L-BFGS is bound by them)
            return torch.exp(drive) - y * drive + torch.lgamma(y + 1.0)
        return self.mean(drive) - y * self.log_mean(drive) + torch.lgamma(y + 1.0)

    def prepare(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def sample(self, drive: torch.Tensor, generator: torch.Generator | None,
               log_scale: torch.Tensor | None = None) -> torch.Tensor:
        return torch.poisson(self.mean(drive), generator=generator)


@dataclass(frozen=True)
class Bernoulli:
    """Spike / no spike per bin with probability ``sigmoid(drive)``; counts > 1 count as 1."""

    link: str = "logistic"
    name: str = "bernoulli"

    def mean(self, drive: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(drive)

    has_scale = False

    def nll(self, y: torch.Tensor, drive: torch.Tensor,
            log_scale: torch.Tensor | None = None) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(drive, y, reduction="none")

    def prepare(self, y: torch.Tensor) -> torch.Tensor:
        return (y > 0).to(y.dtype)

    def sample(self, drive: torch.Tensor, generator: torch.Generator | None,
               log_scale: torch.Tensor | None = None) -> torch.Tensor:
        return torch.bernoulli(self.mean(drive), generator=generator)


@dataclass(frozen=True)
class Gaussian:
    """Real-valued observations ``y ~ N(drive, exp(log_scale)²)`` (identity link).

    With the within-bin coupling ``A`` (strictly lower triangular) the joint of one bin is a
    full-covariance Gaussian: ``(I - A) y ~ N(μ, D)``, i.e. ``y ~ N((I-A)⁻¹μ, (I-A)⁻¹D(I-A)⁻ᵀ)``.
    """

    link: str = "identity"
    name: str = "gaussian"
    has_scale = True

    def mean(self, drive: torch.Tensor) -> torch.Tensor:
        return drive

    def nll(self, y: torch.Tensor, drive: torch.Tensor,
            log_scale: torch.Tensor | None = None) -> torch.Tensor:
        z = (y - drive) * torch.exp(-log_scale)
        return 0.5 * z**2 + log_scale + 0.5 * math.log(2.0 * math.pi)

    def prepare(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def sample(self, drive: torch.Tensor, generator: torch.Generator | None,
               log_scale: torch.Tensor | None = None) -> torch.Tensor:
        noise = torch.randn(drive.shape, generator=generator, dtype=drive.dtype,
                            device=drive.device)
        return drive + noise * torch.exp(log_scale)


Observation = Poisson | Bernoulli | Gaussian


def make_observation(name: str, link: str) -> Observation:
    """The observation model a spec names."""
    if name == "poisson":
        return Poisson(link)
    if name == "bernoulli":
        return Bernoulli()
    if name == "gaussian":
        return Gaussian()
    raise ValueError(f"unknown observation model {name!r}")


LN2 = math.log(2.0)
