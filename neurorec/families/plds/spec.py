"""Schema of the Poisson linear dynamical system (kind ``plds``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from neurorec.families.glm.spec import DataSpec
from neurorec.spec.base import Spec, register_model


class PLDSStimulus(Spec):
    """The stimulus features ``s_t``: per-condition raised cosines tiling the trial (condition
    one-hot ⊗ time basis, as the GLM's stimulus drive)."""

    n_basis: int = Field(8, ge=1, le=200, description="basis functions per condition")
    latent_input: bool = Field(True, description="drive the latent: x_t = A x_{t-1} + B s_t")
    observation: bool = Field(True, description="also a per-unit stimulus drive in the "
                              "observation: log rate = C x_t + d + D s_t (each unit's own PSTH, "
                              "as the GLM's; off: d only, Macke et al. 2011's plain PLDS)")


class LatentSpec(Spec):
    """The latent chain ``x_t = A x_{t-1} + B s_t + eps``, ``eps ~ N(0, Q)``."""

    dim: int = Field(4, ge=1, le=64, description="latent dimension")
    initial_state: Literal["shared", "condition"] = Field(
        "condition", description="mean of x_0: one for all trials, or one per condition")


class PLDSPenalty(Spec):
    """Ridge penalties, per bin and unit (as the GLM's)."""

    l2: float = Field(1e-4, ge=0, description="on the loading matrix C")
    stimulus_l2: float = Field(1e-7, ge=0, description="on the per-unit stimulus drive D")


class PLDSFit(Spec):
    """Laplace EM (Macke et al. 2011)."""

    max_iter: int = Field(20, ge=1, le=10_000, description="EM iterations")
    tol: float = Field(1e-6, gt=0, lt=1, description="stop when the Laplace log joint per "
                       "spike changes by less than this")
    newton_iter: int = Field(20, ge=1, le=200, description="Newton steps of the first E-step "
                             "(later ones start from the previous mode and take at most 2)")
    m_step_iter: int = Field(20, ge=1, le=10_000, description="L-BFGS steps for C, d, D")
    window: int = Field(100, ge=2, le=100_000, description="session data: the training bins' "
                        "contiguous stretches are cut into windows of this many bins, each "
                        "fitted as a trial (a shorter remainder is left out)")


@register_model("plds")
class PLDSSpec(Spec):
    """Poisson linear dynamical system fitted by Laplace EM; scored one step ahead (the
    latent filtered from past spikes only)."""

    kind: Literal["plds"] = "plds"
    name: str = Field("plds", min_length=1, max_length=200)
    description: str = ""
    data: DataSpec = DataSpec()
    stimulus: PLDSStimulus = PLDSStimulus()
    latent: LatentSpec = LatentSpec()
    penalty: PLDSPenalty = PLDSPenalty()
    fit: PLDSFit = PLDSFit()
