"""Schema of the spike-and-slab RNN (``kind: ssrnn``) trained on natural movies.

The generative model (Pachitariu & Sahani 2012):

    h_t ~ Bernoulli(σ(R (h_{t-1}∘x_{t-1}) + b)),  x_t ~ N(0, τx² I),  z_t = h_t∘x_t,
    y_t ~ N(W z_t, τy² I)

with ``y_t`` a whitened image patch. Inference is greedy filtering (frame by frame, the
sparse-coding slice solved by coordinate ascent); learning is a gradient step on ``W`` and the
STDP-like rule on ``R`` and ``b``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from neurorec.spec.base import Spec, register_model


class SlabInferenceSpec(Spec):
    """Per-frame coordinate ascent (Gauss-Southwell: always the best single-coordinate move)."""

    max_steps: int = Field(400, ge=1, le=1_000_000, description="coordinate moves per frame")
    tol: float = Field(1e-4, ge=0, le=1e3, description="stop when no single-coordinate move "
                       "improves the slice log-likelihood by more than this, nats")


class SlabLearningSpec(Spec):
    """Stochastic gradient ascent on the log-likelihood at the inferred ``z``, with momentum."""

    n_iterations: int = Field(300, ge=0, le=10_000_000)
    batch_clips: int = Field(32, ge=1, le=100_000, description="clips per gradient step")
    lr_w: float = Field(0.02, ge=0, le=100, description="learning rate of W per frame-mean "
                        "gradient (scaled by τy²)")
    lr_r: float = Field(0.05, ge=0, le=100, description="learning rate of R (STDP-like rule)")
    lr_b: float = Field(0.02, ge=0, le=100, description="learning rate of the biases b")
    momentum: float = Field(0.9, ge=0, lt=1)
    l2_r: float = Field(1e-3, ge=0, le=10, description="weight decay on R per step")
    normalise_w: bool = Field(True, description="rescale W's columns to unit norm after each "
                              "step (fixes the scale W and x trade)")
    init_w: Literal["data", "random"] = Field(
        "data", description="data: W's columns start as random training patches; random: "
        "Gaussian")
    checkpoint_every: int = Field(50, ge=1, le=10_000_000, description="iterations between "
                                  "checkpoints")
    dtype: Literal["float32", "float64"] = "float32"


class RecurrenceSpec(Spec):
    """Which recurrent connections ``R`` may learn."""

    self_connections: bool = Field(
        True, description="false: R_jj = 0 throughout training (no unit excites itself, as in "
        "Rao & Sejnowski's sequence model); only connections between units carry the past")


@register_model("ssrnn")
class SSRNNSpec(Spec):
    """Spike-and-slab recurrent network of sparse, temporally coupled causes of image patches."""

    kind: Literal["ssrnn"] = "ssrnn"
    name: str = Field("ssrnn", min_length=1, max_length=200)
    description: str = ""
    n_units: int = Field(128, ge=1, le=100_000, description="latent units (columns of W)")
    tau_x: float = Field(1.0, gt=0, le=1e3, description="slab s.d. τx")
    tau_y: float = Field(0.5, gt=0, le=1e3, description="pixel noise s.d. τy (whitened units)")
    prior_p: float = Field(0.05, gt=0, lt=1, description="initial σ(b): prior on-probability")
    slab: Literal["gaussian", "nonnegative"] = Field(
        "gaussian", description="gaussian: x ~ N(0, τx²); nonnegative: x ~ |N(0, τx²)| (a "
        "polarity-specific cause, so a contrast-reversed frame is not the same cause)")
    inference: SlabInferenceSpec = SlabInferenceSpec()
    recurrence: RecurrenceSpec = RecurrenceSpec()
    learning: SlabLearningSpec = SlabLearningSpec()
