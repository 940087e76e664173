"""Schema of the R-GLM language model (``kind: rglm_lm``, specs in ``models/lm/*.yaml``).

The model reads a token stream ``l_1, l_2, ...`` (one-hot words) and predicts the next word:
``h_t = R h_{t-1} + W0ᵀ l_t`` (linear, no nonlinearity), ``p(w_{t+1} | h_t) = softmax(B h_t + b)``
over the full vocabulary (Pachitariu & Sahani, R-GLM talk). Sizes are counts of tokens or units.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from neurorec.spec.base import Spec, register_model


class LMRecurrentSpec(Spec):
    """The linear recurrence ``h_t = R h_{t-1} + W0ᵀ l_t``."""

    dim: int = Field(200, ge=1, le=8192, description="hidden units")
    structure: Literal["dense", "diagonal"] = Field(
        "dense", description="dense: R is H×H (optionally sparse, see density); diagonal: R is "
        "diag(λ), every unit an exponential filter of its word inputs (the impulse-response LM "
        "of Pachitariu & Sahani 2013, their best single model on PTB)")
    density: float = Field(1.0, gt=0, le=1, description="fraction of R's entries that exist "
                           "(a fixed random mask drawn from the seed; 1 = dense R)")
    init_radius: float = Field(0.5, ge=0, lt=1, description="spectral radius of R at init")
    max_radius: float = Field(0.999, gt=0, le=1, description="after every step R is scaled "
                              "down if its spectral radius exceeds this (keeps the linear "
                              "recurrence stable; time constants up to -1/ln(max_radius))")
    init_scale: float = Field(0.1, gt=0, le=10, description="std of W0 and B at init")
    radius_every: int = Field(1, ge=1, le=100_000, description="steps between spectral-radius "
                              "checks of a dense R (an eigendecomposition each: large R on a "
                              "GPU wants a few dozen steps between them)")


class LMRegularisationSpec(Spec):
    """Dropout on the state fed to the readout, column normalisation, L1 / L2 on R."""

    dropout: float = Field(0.0, ge=0, lt=1, description="probability of zeroing a unit of h_t "
                           "on its way to the readout (training only; the state itself "
                           "keeps running undropped)")
    column_norm: float = Field(0.0, ge=0, description="max L2 norm of every word's input "
                               "vector (column of W0) and output vector (row of B), enforced "
                               "after each step; 0 = off")
    input_dropout: float = Field(0.0, ge=0, lt=1, description="probability of zeroing a unit "
                                 "of a word's input vector W0ᵀ l_t (training only)")
    l1: float = Field(0.0, ge=0, description="L1 weight on R, per token (proximal step)")
    l2: float = Field(0.0, ge=0, description="L2 weight on all weights, per token")


class LMTrainSpec(Spec):
    """Truncated back-propagation through time on ``batch_size`` parallel streams."""

    epochs: float = Field(1.0, gt=0, le=1000, description="passes over the training tokens "
                          "(fractions allowed)")
    batch_size: int = Field(32, ge=1, le=4096, description="parallel streams")
    bptt: int = Field(35, ge=1, le=10_000, description="truncation length, tokens")
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(2e-3, gt=0, le=100)
    momentum: float = Field(0.0, ge=0, lt=1, description="SGD momentum (optimizer sgd only)")
    schedule: Literal["plateau", "linear"] = Field(
        "plateau", description="plateau: lr × lr_decay when valid perplexity stops improving; "
        "linear: lr falls linearly with the step count to 0 at the end of the epochs "
        "(budgeted training, Li et al. 2020; deterministic, unlike a wall-clock schedule)")
    lr_decay: float = Field(0.5, gt=0, le=1, description="lr factor when valid perplexity "
                            "stops improving (checked every eval_every tokens; schedule plateau)")
    patience: int = Field(1, ge=1, le=1000, description="valid checks in a row without a new "
                          "best before lr_decay is applied (the count restarts after a decay)")
    min_lr: float = Field(0.0, ge=0, description="stop training once lr_decay has taken the "
                          "learning rate below this (0 = never)")
    clip: float = Field(1.0, gt=0, description="max global gradient norm per step")
    eval_every: int = Field(200_000, ge=1, description="training tokens between valid checks")
    max_train_tokens: int | None = Field(None, ge=2, description="use only the first N "
                                         "training tokens (quick runs)")
    dtype: Literal["float32", "float64"] = "float32"
    max_seconds: float | None = Field(None, gt=0, description="stop training after this many "
                                      "seconds (wall clock) and keep the best parameters so "
                                      "far; the log records that the budget ended training")


class LMDynamicSpec(Spec):
    """Dynamic evaluation: a gradient step on each test segment after it has been scored.

    ``sgd``: plain SGD (Mikolov 2010). ``rms``: Krause et al. 2018 (ICML, "Dynamic evaluation
    of neural sequence models"): each gradient element divided by ``sqrt(MS) + eps``, MS its mean
    square over ``ms_segments`` training segments, and a pull ``decay`` back towards the trained
    parameters, per element in proportion to ``sqrt(MS)`` / its mean (capped at 1 / decay).
    """

    enabled: bool = True
    method: Literal["sgd", "rms"] = "sgd"
    lr: float = Field(0.05, gt=0, le=100, description="step size per segment (mean NLL)")
    bptt: int = Field(10, ge=1, le=10_000, description="segment length, tokens")
    decay: float = Field(0.0, ge=0, le=1, description="fraction of the way back to the trained "
                         "parameters per segment (rms: scaled per element by its RMS gradient)")
    eps: float = Field(1e-4, gt=0, description="rms: added to sqrt(MS) before dividing")
    ms_segments: int = Field(1000, ge=1, description="rms: training segments for MS")


@register_model("rglm_lm")
class RGLMLMSpec(Spec):
    """R-GLM language model with full-softmax readout."""

    kind: Literal["rglm_lm"] = "rglm_lm"
    name: str = Field("rglm_lm", min_length=1, max_length=200)
    description: str = ""
    readout: Literal["full"] = Field("full", description="full softmax over the vocabulary "
                                     "(exact; no class-based or sampled approximation)")
    recurrent: LMRecurrentSpec = LMRecurrentSpec()
    regularisation: LMRegularisationSpec = LMRegularisationSpec()
    train: LMTrainSpec = LMTrainSpec()
    dynamic: LMDynamicSpec = LMDynamicSpec()

    @model_validator(mode="after")
    def _compatible(self) -> RGLMLMSpec:
        if self.recurrent.structure == "diagonal" and self.recurrent.density < 1:
            raise ValueError("recurrent.density < 1 applies to a dense R only "
                             "(recurrent.structure is diagonal)")
        if self.train.momentum > 0 and self.train.optimizer != "sgd":
            raise ValueError("train.momentum applies to optimizer sgd only")
        return self
