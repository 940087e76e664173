"""Observation models: how a linear drive becomes the distribution of one bin's count.

Each is a small object with pure torch methods on broadcastable tensors; the same code runs
on CPU and CUDA. ``drive`` is the linear predictor (any shape), ``y`` observed values,
``log_scale`` the log noise standard deviation of families that have one (Gaussian), one per
unit, broadcast along the last axis; the others ignore it.

Each also owns its numpy scores (elementwise NLL of expected values, what it observes of
a count, its null model: used by :mod:`neurorec.core.metrics`), where a GLM starts (the drive
at the mean), the per-bin curvature the preconditioner needs, and its Brian 2 code: the
expected value of ``drive`` and the draw of one bin (:mod:`neurorec.families.glm.brian2`).

The count observations (Poisson without a rate ceiling, Bernoulli) also give what a
second-order solver needs (:mod:`neurorec.fit.newton`): ``nll_kernel`` (the NLL without its
data-only part, summed into the objective the line search compares), ``nll_constant`` (that
data-only part, ``log y!``), ``derivatives`` (first and second derivative of the NLL in the
drive: the gradient's residuals and the Hessian's weights), ``drive_of_mean`` (the link), and
the checks of the responses. L-BFGS differentiates ``nll`` itself; for the exponential link
``nll`` is ``nll_kernel + nll_constant`` wherever no drive passes the overflow guard.

Correlations inside a time bin are not an observation model of their own: the models add
``Σ_{j before i} A_ij y_j(t)`` to unit ``i``'s drive, so every family here becomes its
correlated (autoregressive-in-unit-order) variant with an exact likelihood and exact sampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import gammaln, xlogy

# Above this drive exp() continues as its second-order Taylor polynomial: e^30 ≈ 1e13 expected
# spikes per bin is beyond any neuron, so fitted models are unchanged, but a line-search trial
# step far out (or a runaway recurrence) gives a large finite objective, not inf/NaN.
EXP_DRIVE_MAX = 30.0


CEILING_POWER = 4  # sharpness of a Poisson rate ceiling's smooth min(f, c)
RATE_FLOOR = 1e-9  # as in nlb_tools, so that a zero rate with a spike stays finite
# Brian 2: past the ceiling (``ceiling``, expected count per bin) a run is reported as diverged;
# the draws stay finite meanwhile. ``first_over`` records the first bin over it.
# clip, not a product with an indicator: exp() overflows to inf far out, and inf · 0 is NaN
_B2_CEILING = "rate = clip(rate, 0, ceiling)"


def poisson_nll(counts: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Elementwise Poisson NLL; ``counts``, ``rates`` broadcastable, rates = expected counts."""
    rates = np.clip(rates, RATE_FLOOR, None)
    return rates - xlogy(counts, rates) + gammaln(counts + 1.0)


def bernoulli_nll(counts: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Elementwise Bernoulli NLL of spike / no spike (counts > 0)."""
    y = (counts > 0).astype(float)
    p = np.clip(probs, RATE_FLOOR, 1.0 - RATE_FLOOR)
    return -(y * np.log(p) + (1.0 - y) * np.log1p(-p))


def gaussian_nll(y: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Elementwise Gaussian NLL, ``scale`` the standard deviation (broadcast on the last axis)."""
    z = (y - mean) / scale
    return 0.5 * z**2 + np.log(scale) + 0.5 * np.log(2.0 * np.pi)


def _clipped_mean(y: torch.Tensor, upper: float | None) -> torch.Tensor:
    return y.mean(dim=(0, 1)).clamp(1e-3, upper)


class _CountScores:
    """Numpy scores shared by the count observations (Poisson, Bernoulli)."""

    def cap_drive(self, drive: torch.Tensor, max_mean: float) -> torch.Tensor:
        """The drive with the expected value capped (only unbounded counts need it)."""
        return drive

    def observed(self, y: np.ndarray) -> np.ndarray:
        """What the model scores of counts ``y``: the counts (Bernoulli: spike / no spike)."""
        return y

    def score_tables(self, y: np.ndarray, mean: np.ndarray,
                     scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(bins, units) NLL of ``mean`` and of the null (each unit's mean over these bins)
        for (bins, units) counts ``y``."""
        null = np.broadcast_to(self.observed(y).mean(axis=0, keepdims=True), y.shape)
        return self.np_nll(y, mean), self.np_nll(y, null)

    def extra_init(self, counts: np.ndarray) -> dict[str, np.ndarray]:
        """Parameters of the observation itself at the start of a fit (a noise scale)."""
        return {}

    def brian2_equations(self) -> list[str]:
        """Brian 2 per-unit variables of the observation (a noise scale)."""
        return []

    def brian2_values(self, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """(n_units,) values of :meth:`brian2_equations`' variables."""
        return {}


def _b2_runaway(first_over_bin: str, mine: str = "") -> list[str]:
    """Brian 2 lines recording the first bin whose rate passed the ceiling, then capping it."""
    return ["first_over = first_over + (" + first_over_bin + " - first_over)"
            f" * int(first_over < 0){mine} * int(not (rate <= ceiling))", _B2_CEILING]


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
class Poisson(_CountScores):
    """Poisson counts with rate ``link(drive)`` (expected count per bin).

    With ``ceiling`` c (expected count per bin) the rate saturates: ``f (1 + (f/c)^P)^(-1/P)``
    (P = 4), f the link's value: a smooth min(f, c), within (f/c)^4 / 4 of f below c (2.5e-5
    relative at c/10) and never above c, so no feedback loop can run away; the fit, scores and
    samples all use it.
    """

    link: str = "exp"
    name: str = "poisson"
    ceiling: float | None = None

    def log_mean(self, drive: torch.Tensor) -> torch.Tensor:
        if self.ceiling is not None:  # log f - log1p((f/c)^P) / P, stable for any drive
            # softplus past torch's default threshold (20, an error of e^-20) stays exact
            if self.link == "exp":
                log_f = drive
            else:
                f = F.softplus(drive, threshold=50.0)
                log_f = torch.where(drive < -30.0, drive, torch.log(f.clamp_min(1e-300)))
            over = CEILING_POWER * (log_f - math.log(self.ceiling))
            return log_f - F.softplus(over, threshold=50.0) / CEILING_POWER
        return _safe_log_exp(drive) if self.link == "exp" else _log_softplus(drive)

    def mean(self, drive: torch.Tensor) -> torch.Tensor:
        if self.ceiling is not None:
            return torch.exp(self.log_mean(drive))
        return _safe_exp(drive) if self.link == "exp" else F.softplus(drive)


    def nll(self, y: torch.Tensor, drive: torch.Tensor,
            log_scale: torch.Tensor | None = None) -> torch.Tensor:
        """Elementwise negative log-likelihood including ``log y!``."""
        if self.link == "exp" and self.ceiling is None and bool(drive.max() <= EXP_DRIVE_MAX):
            # where no drive is past the guard both formulas are one function; this one is a
            # third of the elementwise passes (the R-GLM's L-BFGS is bound by them)
            return self.nll_kernel(y, drive) + self.nll_constant(y)
        return self.mean(drive) - y * self.log_mean(drive) + self.nll_constant(y)

    # what a Newton solver needs (no rate ceiling: :meth:`check_newton`)
    def check_newton(self) -> None:
        """Raise ValueError unless :meth:`nll_kernel` / :meth:`derivatives` describe this
        observation (they do not model a rate ceiling)."""
        if self.ceiling is not None:
            raise ValueError("poisson with a rate ceiling has no Newton form (the ceiling "
                             "makes the NLL non-convex in the drive)")
        if self.link not in ("exp", "softplus"):
            raise ValueError(f"poisson link {self.link!r}: use exp or softplus")

    def nll_constant(self, y: torch.Tensor) -> torch.Tensor:
        """Elementwise data-only part of the NLL: ``log y!``."""
        return torch.lgamma(y + 1.0)

    def nll_kernel(self, y: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
        """Elementwise NLL without ``log y!`` and without the overflow guard (a solver that
        rejects non-finite values wants them): ``e^η - y η``, or ``μ - y log μ`` with
        ``μ = softplus(η)`` (0 where ``y = 0`` even if ``μ`` underflowed)."""
        if self.link == "exp":
            return torch.exp(drive) - y * drive
        mu = F.softplus(drive)
        return mu - torch.xlogy(y, mu)

    def derivatives(self, y: torch.Tensor, drive: torch.Tensor,
                    curvature: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """dNLL/dη and d²NLL/dη² (≥ 0; None unless ``curvature``), both shaped like ``drive``.

        Softplus: the exact second derivative ``μ'' (1 - y/μ) + y μ'²/μ²`` with ``μ' = s``,
        ``μ'' = s (1 - s)``, ``s = sigmoid(η)``; it is ≥ 0 because ``log softplus`` is concave
        (clamped at 0 against round-off), so Newton keeps its quadratic convergence (Fisher
        scoring, ``s²/μ``, would converge only linearly)."""
        if self.link == "exp":
            mu = torch.exp(drive)
            return mu - y, (mu if curvature else None)
        s = torch.sigmoid(drive)
        mu = F.softplus(drive)
        ratio = torch.where(y > 0, y / mu, torch.zeros_like(mu))  # y / mu, 0 where y == 0
        r = s * (1.0 - ratio)
        if not curvature:
            return r, None
        q = s / mu
        c = s * (1.0 - s) * (1.0 - ratio) + y * q * q
        return r, c.clamp_min(0.0)

    def drive_of_mean(self, mean: torch.Tensor) -> torch.Tensor:
        """The link: the drive whose expected count is ``mean`` (> 0)."""
        if self.link == "exp":
            return torch.log(mean)
        return mean + torch.log(-torch.expm1(-mean))  # inverse softplus, stable

    def clamp_mean(self, mean: torch.Tensor, lo: float) -> torch.Tensor:
        """``mean`` kept where :meth:`drive_of_mean` is finite (≥ ``lo``)."""
        return mean.clamp_min(lo)

    def check_response(self, y: torch.Tensor, where: str) -> None:
        """Raise ValueError naming ``where`` unless ``y`` are counts (≥ 0)."""
        if bool((y < 0).any()):
            raise ValueError(f"{where}: Poisson counts must be >= 0")

    def prepare(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def sample(self, drive: torch.Tensor, generator: torch.Generator | None,
               log_scale: torch.Tensor | None = None) -> torch.Tensor:
        return torch.poisson(self.mean(drive), generator=generator)

    # numpy scores and the start of a fit
    def np_nll(self, y: np.ndarray, mean: np.ndarray,
               scale: np.ndarray | None = None) -> np.ndarray:
        return poisson_nll(y, mean)

    def baseline(self, mean: np.ndarray) -> np.ndarray:
        """(n_units,) drive whose expected count is ``mean`` (clipped away from 0)."""
        mean = np.clip(mean, 1e-3, None)
        if self.ceiling is not None:  # the link's value f whose saturated rate is mean
            mean = np.clip(mean, None, 0.5 * self.ceiling)
            mean = mean / (1 - (mean / self.ceiling) ** CEILING_POWER) ** (1 / CEILING_POWER)
        return np.log(np.expm1(mean)) if self.link == "softplus" else np.log(mean)

    def curvature(self, y: torch.Tensor) -> torch.Tensor:
        """(n_units,) second derivative of one bin's NLL in the drive at the mean rate."""
        return _clipped_mean(y, None)

    def cap_drive(self, drive: torch.Tensor, max_mean: float) -> torch.Tensor:
        """``drive`` lowered where its expected count exceeds ``max_mean``, to exactly that."""
        top = math.log(max_mean) if self.link == "exp" else math.log(math.expm1(max_mean))
        return drive.clamp(max=top)

    # Brian 2: ``drive`` → ``rate`` (the expected count), and one bin's draw
    can_run_away = True

    def brian2_rate(self, drive: str = "drive") -> str:
        c = None if self.ceiling is None else repr(float(self.ceiling))
        if self.link == "exp":
            f, c_over_f = f"exp({drive})", f"{c} * exp(-({drive}))"
        else:
            f = f"({drive} * int({drive} > 0) + log1p(exp(-abs({drive}))))"  # overflow-free
            c_over_f = f"{c} / {f}"
        # f (1 + (f/c)^P)^(-1/P) = c (1 + (c/f)^P)^(-1/P): no inf / inf far out
        power = CEILING_POWER
        return f if c is None else f"{c} * (1 + ({c_over_f})**{power})**(-{1 / power!r})"

    def brian2_drive_code(self, in_bin: bool) -> list[str]:
        code = [f"rate = {self.brian2_rate()}"]
        # with in-bin correlations the draw checks the raised rate
        return code if in_bin else code + _b2_runaway("int(t / bin_dt + 0.5)")

    def brian2_draw(self) -> str:
        return "ybin = ybin + poisson(rate * inv_sub)"

    def brian2_in_bin_draw(self, mine: str) -> str:
        return "\n".join([f"rate = {self.brian2_rate('(drive + ain)')}",
                          *_b2_runaway("int(t / bin_dt + 0.5 * inv_sub)", f" * {mine}"),
                          f"ybin = ybin + {mine} * poisson(rate)"])


@dataclass(frozen=True)
class Bernoulli(_CountScores):
    """Spike / no spike per bin with probability ``sigmoid(drive)``; counts > 1 count as 1."""

    link: str = "logistic"
    name: str = "bernoulli"

    def mean(self, drive: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(drive)


    def nll(self, y: torch.Tensor, drive: torch.Tensor,
            log_scale: torch.Tensor | None = None) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(drive, y, reduction="none")

    # what a Newton solver needs
    def check_newton(self) -> None:
        """Bernoulli with the logistic link always has a Newton form."""

    def nll_constant(self, y: torch.Tensor) -> torch.Tensor:
        """Elementwise data-only part of the NLL: none."""
        return y.new_zeros(y.shape)

    def nll_kernel(self, y: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
        """Elementwise NLL ``softplus(η) - y η`` (the same function as :meth:`nll`)."""
        return F.softplus(drive) - y * drive

    def derivatives(self, y: torch.Tensor, drive: torch.Tensor,
                    curvature: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """dNLL/dη ``p - y`` and d²NLL/dη² ``p (1 - p)`` (None unless ``curvature``)."""
        p = torch.sigmoid(drive)
        return p - y, (p * (1.0 - p) if curvature else None)

    def drive_of_mean(self, mean: torch.Tensor) -> torch.Tensor:
        """The logit of ``mean`` (in (0, 1))."""
        return torch.log(mean) - torch.log1p(-mean)

    def clamp_mean(self, mean: torch.Tensor, lo: float) -> torch.Tensor:
        """``mean`` kept in ``[lo, 1 - lo]``, where the logit is finite."""
        return mean.clamp(lo, 1.0 - lo)

    def check_response(self, y: torch.Tensor, where: str) -> None:
        """Raise ValueError naming ``where`` unless ``y`` lies in [0, 1]."""
        if bool(((y < 0) | (y > 1)).any()):
            raise ValueError(f"{where}: Bernoulli responses must lie in [0, 1]")

    def prepare(self, y: torch.Tensor) -> torch.Tensor:
        return (y > 0).to(y.dtype)

    def sample(self, drive: torch.Tensor, generator: torch.Generator | None,
               log_scale: torch.Tensor | None = None) -> torch.Tensor:
        return torch.bernoulli(self.mean(drive), generator=generator)

    def np_nll(self, y: np.ndarray, mean: np.ndarray,
               scale: np.ndarray | None = None) -> np.ndarray:
        return bernoulli_nll(y, mean)

    def observed(self, y: np.ndarray) -> np.ndarray:
        return (y > 0).astype(float)

    def baseline(self, mean: np.ndarray) -> np.ndarray:
        mean = np.clip(mean, 1e-3, 1 - 1e-3)
        return np.log(mean / (1 - mean))

    def curvature(self, y: torch.Tensor) -> torch.Tensor:
        mean = _clipped_mean(y, 1 - 1e-3)
        return mean * (1 - mean)

    can_run_away = False

    def brian2_drive_code(self, in_bin: bool) -> list[str]:
        return ["rate = 1 / (1 + exp(-drive))"]

    def brian2_draw(self) -> str:
        return "ybin = int(rand() < rate)"

    def brian2_in_bin_draw(self, mine: str) -> str:
        return f"ybin = ybin + {mine} * int(rand() < 1 / (1 + exp(-(drive + ain))))"


@dataclass(frozen=True)
class Gaussian:
    """Real-valued observations ``y ~ N(drive, exp(log_scale)²)`` (identity link).

    With the within-bin coupling ``A`` (strictly lower triangular) the joint of one bin is a
    full-covariance Gaussian: ``(I - A) y ~ N(μ, D)``, i.e. ``y ~ N((I-A)⁻¹μ, (I-A)⁻¹D(I-A)⁻ᵀ)``.
    """

    link: str = "identity"
    name: str = "gaussian"

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

    def np_nll(self, y: np.ndarray, mean: np.ndarray,
               scale: np.ndarray | None = None) -> np.ndarray:
        return gaussian_nll(y, mean, np.asarray(scale))

    def observed(self, y: np.ndarray) -> np.ndarray:
        return y

    def score_tables(self, y: np.ndarray, mean: np.ndarray,
                     scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if scale is None:
            raise ValueError("gaussian scores need the model's noise scale (n_units,)")
        null = np.broadcast_to(y.mean(axis=0, keepdims=True), y.shape)
        null_scale = np.clip(y.std(axis=0), 1e-12, None)
        return self.np_nll(y, mean, scale), gaussian_nll(y, null, null_scale)

    def baseline(self, mean: np.ndarray) -> np.ndarray:
        return mean

    def cap_drive(self, drive: torch.Tensor, max_mean: float) -> torch.Tensor:
        return drive

    def extra_init(self, counts: np.ndarray) -> dict[str, np.ndarray]:
        std = counts.reshape(-1, counts.shape[-1]).std(axis=0)
        return {"log_sigma": np.log(np.clip(std, 1e-3, None))}

    def curvature(self, y: torch.Tensor) -> torch.Tensor:
        return 1.0 / y.var(dim=(0, 1)).clamp_min(1e-6)

    can_run_away = False

    def brian2_equations(self) -> list[str]:
        return ["sigma : 1 (constant)"]

    def brian2_values(self, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"sigma": np.exp(params["log_sigma"])}

    def brian2_drive_code(self, in_bin: bool) -> list[str]:
        return []

    def brian2_draw(self) -> str:
        return "ybin = drive + sigma * randn()"

    def brian2_in_bin_draw(self, mine: str) -> str:
        return f"ybin = ybin + {mine} * (drive + ain + sigma * randn())"


Observation = Poisson | Bernoulli | Gaussian


def make_observation(name: str, link: str | None = None,
                     ceiling: float | None = None) -> Observation:
    """The observation model a spec names (``link`` None: the family's default link;
    ``ceiling``: a Poisson rate ceiling, expected count per bin)."""
    if name == "poisson":
        return Poisson(link or "exp", ceiling=ceiling)
    if name == "bernoulli":
        return Bernoulli()
    if name == "gaussian":
        return Gaussian()
    raise ValueError(f"unknown observation model {name!r}")

