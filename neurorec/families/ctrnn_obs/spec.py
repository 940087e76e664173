"""Schema of the data-constrained continuous-time rate RNN (``kind: ctrnn_obs``).

A ``ctrnn`` network (same Euler step as ``ctrnn`` spec, noise-free) driven by the
trial's stimulus condition, observed through a Poisson (or Bernoulli) readout: recorded unit
``i`` in bin ``t`` has expected count ``f(c_i · r_t + d_i)``. Trained by maximum likelihood
with BPTT (Adam) on binned spike counts.

Why its own kind rather than fields on ``ctrnn``: a ``ctrnn`` spec is trained on a task by
masked L2 (``training``, ``train``, ``n_inputs``/``n_outputs`` from the task); this model is
fitted to recorded spikes through ``neurorec fit`` (``data`` section, observation family,
likelihood, early stopping on held-back trials), and its inputs and readout size come from
the data. Sharing the network schema (:class:`NetworkSpec` mirrors ``ctrnn``'s dynamics
fields) keeps one definition of the dynamics; the model builds a ``CTRNN`` from it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from neurorec.families.ctrnn.spec import DaleSpec, InitSpec
from neurorec.families.glm.spec import DataSpec
from neurorec.spec.base import Spec, register_model
from neurorec.spec.units import Degrees, Seconds


class NetworkSpec(Spec):
    """The recurrent network, as in ``ctrnn`` (τ dr/dt = -r + f(W_rec r + W_in u + b))."""

    n_units: int = Field(32, ge=1, le=10_000, description="N, recurrent units")
    tau: Seconds = Field(0.05, gt=0, le=100, description="time constant τ, seconds")
    dt: Seconds = Field(0.01, gt=0, le=10, description="Euler step Δt, seconds; must divide "
                        "data.bin_size (several steps per bin: the rate at the bin's last step "
                        "is observed)")
    nonlinearity: Literal["relu", "tanh", "softplus", "leaky_relu"] = "tanh"
    leak_angle: Degrees = Field(0.0, ge=0, le=45)
    zero_diagonal: bool = True
    density: float = Field(1.0, gt=0, le=1)
    dale: DaleSpec = DaleSpec()
    init: InitSpec = InitSpec(gain=0.9, w_in_scale=0.5, w_out_scale=1.0)

    @model_validator(mode="after")
    def _euler(self) -> NetworkSpec:
        if self.dt > self.tau:
            raise ValueError(f"dt: Euler step {self.dt} s exceeds tau {self.tau} s")
        return self


class InputSpec(Spec):
    """What drives the network: the trial's condition, on from ``onset`` to ``offset``."""

    encoding: Literal["onehot", "direction"] = Field(
        "onehot", description="onehot: one channel per condition; direction: cos and sin of "
        "the condition column named by `column` (degrees) — a grating's direction")
    column: str = Field("direction", description="direction encoding: the conditions column")
    onset: Seconds = Field(0.0, ge=0, description="input on from this time after trial start")
    offset: Seconds | None = Field(None, gt=0, description="input off from here; null: "
                                   "until the trial ends")


class ObsTrainingSpec(Spec):
    """Adam on the mean NLL per bin and unit, BPTT through the whole trial."""

    n_steps: int = Field(600, ge=1, le=1_000_000, description="gradient steps (upper bound)")
    batch_size: int = Field(64, ge=1, le=100_000, description="trials per step")
    learning_rate: float = Field(1e-2, gt=0, le=10)
    grad_clip: float | None = Field(1.0, gt=0)
    l2: float = Field(1e-4, ge=0, description="penalty on the mean squared W_rec entry")
    early_stopping: bool = True
    validation_fraction: float = Field(0.15, ge=0.05, le=0.5,
                                       description="training trials held back (stratified)")
    validate_every: int = Field(20, ge=1, le=100_000)
    patience: int = Field(6, ge=1, le=1000, description="checks without improvement")
    dtype: Literal["float32", "float64"] = "float32"
    window: int = Field(100, ge=2, le=100_000, description="session data: the training bins' "
                        "contiguous stretches are cut into windows of this many bins, each "
                        "a trial from the learned initial state (a shorter remainder is "
                        "left out)")


@register_model("ctrnn_obs")
class CTRNNObsSpec(Spec):
    """Data-constrained ct-RNN: recorded unit i ~ Poisson(f(c_i · r_t + d_i)) per bin."""

    kind: Literal["ctrnn_obs"] = "ctrnn_obs"
    name: str = Field("ctrnn_obs", min_length=1, max_length=200)
    description: str = ""
    observation: Literal["poisson", "bernoulli"] = "poisson"
    link: Literal["exp", "softplus", "logistic"] = "softplus"
    data: DataSpec = DataSpec()
    network: NetworkSpec = NetworkSpec()
    input: InputSpec = InputSpec()
    initial_state: Literal["condition", "encoder"] = Field(
        "condition", description="condition: one learned initial state per condition; "
        "encoder: plus a linear encoder of the trial's held-in spike counts (per-trial initial "
        "state and a constant per-trial input; co-smoothing only)")
    encoder_dim: int = Field(4, ge=1, le=1000, description="encoder: per-trial input channels")
    training: ObsTrainingSpec = ObsTrainingSpec()

    @model_validator(mode="after")
    def _checks(self) -> CTRNNObsSpec:
        allowed = {"poisson": ("exp", "softplus"), "bernoulli": ("logistic",)}[self.observation]
        if self.link not in allowed:
            raise ValueError(f"link: '{self.link}' does not suit observation "
                             f"'{self.observation}' (use {' or '.join(allowed)})")
        ratio = self.data.bin_size / self.network.dt
        if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
            raise ValueError(f"network.dt: {self.network.dt} s must divide data.bin_size "
                             f"{self.data.bin_size} s")
        if self.input.offset is not None and self.input.offset <= self.input.onset:
            raise ValueError("input.offset: must be after input.onset")
        return self

    @property
    def steps_per_bin(self) -> int:
        return round(self.data.bin_size / self.network.dt)
