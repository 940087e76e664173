"""Schema pieces shared by the families fitted by penalised maximum likelihood."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from neurorec.spec.base import Spec


class FitSpec(Spec):
    """Penalised maximum likelihood.

    ``solver``: ``newton`` — batched Newton/IRLS over all units at once
    (:mod:`neurorec.fit.newton`), for the convex models (GLM without a latent, Poisson or
    Bernoulli, no L1): the exact penalised optimum on all training trials in a few Hessian
    passes; early stopping does not apply (the penalty regularises). ``lbfgs`` — L-BFGS with
    early stopping on held-back training trials. ``auto`` (default): ``newton`` where it
    applies, else ``lbfgs``.
    """

    solver: Literal["auto", "newton", "lbfgs"] = "auto"

    max_iter: int = Field(500, ge=1, le=100_000, description="L-BFGS iterations in all")
    tol: float = Field(1e-9, gt=0, lt=1, description="stop when the max |gradient| falls below")
    dtype: Literal["float64", "float32"] = "float64"
    early_stopping: bool = True
    validation_fraction: float = Field(0.15, ge=0.05, le=0.5,
                                       description="training trials held back for early stopping")
    refit_best: bool = Field(
        False, description="with early_stopping: find on the held-back trials how many L-BFGS "
        "iterations from the start are best (0: the start itself, e.g. the R-GLM's fitted GLM), "
        "then refit on all training trials for that many; costs a second fit, and no trial is "
        "lost to the held-back set in the parameters that are kept")
    patience: int = Field(3, ge=1, le=100, description="checks without held-out improvement")
    check_every: int = Field(10, ge=1, le=10_000, description="L-BFGS iterations between checks")
    newton_polish: bool = Field(True, description="finish with Newton-CG steps when L-BFGS "
                                "converged or stalled (not after early stopping)")


__all__ = ["FitSpec"]
