"""Schemas of continuous-time rate RNNs (``kind: ctrnn``) and of the cognitive-task protocols
that train them (``kind: task_*``).

Model: ``τ dr/dt = -r + f(W_rec r + W_in u + b + sqrt(2τσ²) ξ)``, read out ``z = W_out r``,
integrated by the Euler step ``r_t = (1-α) r_{t-1} + α f(W_rec r_{t-1} + W_in u_t + b +
sqrt(2σ²/α) N(0,1))`` with ``α = Δt/τ``. Durations are seconds unless a unit is written.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from neurorec.spec.base import Spec, register_model, register_stimulus
from neurorec.spec.units import Degrees, Hertz, Seconds

Weight = Literal["w_rec", "w_in", "w_out", "b"]


class DaleSpec(Spec):
    """Dale's law: every unit is excitatory or inhibitory; its outgoing weights keep its sign
    (``W_rec = |W| · diag(sign)``, the magnitude is what is trained)."""

    enabled: bool = False
    excitatory_fraction: float = Field(0.8, gt=0, lt=1,
                                       description="first round(f·N) units are excitatory")


class InitSpec(Spec):
    """Initial weight distributions (drawn from the run's seed)."""

    w_rec: Literal["normal", "uniform", "orthogonal"] = Field(
        "normal", description="normal: N(0, g²/N); uniform: U(±g·sqrt(3/N)); orthogonal: g·Q")
    gain: float = Field(1.0, ge=0, le=20, description="g, spectral scale of W_rec at init")
    w_in_scale: float = Field(1.0, ge=0, le=100, description="std of W_in entries")
    w_out_scale: float = Field(1.0, ge=0, le=100,
                               description="std of W_out entries times sqrt(N)")
    bias: float = Field(0.0, ge=-100, le=100, description="initial value of every b_i")
    r0: float = Field(0.0, ge=-100, le=100, description="initial rate of every unit")


class TrainingSpec(Spec):
    """Adam on the masked L2 loss over time (only the weights in ``train`` change)."""

    n_steps: int = Field(2000, ge=1, le=10_000_000, description="gradient steps")
    batch_size: int = Field(64, ge=1, le=100_000, description="trials per step")
    learning_rate: float = Field(1e-3, gt=0, le=10)
    grad_clip: float | None = Field(1.0, gt=0, description="max global gradient norm; "
                                    "null: no clipping")
    rate_l2: float = Field(0.0, ge=0, description="penalty on the mean squared rate")
    validate_every: int = Field(50, ge=1, description="steps between validation losses")
    validation_trials: int = Field(256, ge=1, le=100_000)
    checkpoint_every: int = Field(100, ge=1, description="steps between checkpoints")
    dtype: Literal["float32", "float64"] = "float32"


@register_model("ctrnn")
class CTRNNSpec(Spec):
    """Continuous-time rate RNN, simulated by torch or Brian 2 (same Euler step)."""

    kind: Literal["ctrnn"] = "ctrnn"
    name: str = Field("ctrnn", min_length=1, max_length=200)
    description: str = ""
    n_units: int = Field(128, ge=1, le=100_000, description="N, recurrent units")
    n_inputs: int | None = Field(None, ge=1, le=10_000,
                                 description="null: taken from the task protocol")
    n_outputs: int | None = Field(None, ge=1, le=10_000,
                                  description="null: taken from the task protocol")
    tau: Seconds = Field(0.1, gt=0, le=100, description="time constant τ, seconds")
    dt: Seconds = Field(0.01, gt=0, le=10, description="Euler step Δt, seconds")
    sigma: float = Field(0.01, ge=0, le=100, description="σ, recurrent noise (rate units)")
    nonlinearity: Literal["relu", "tanh", "softplus", "leaky_relu"] = "relu"
    leak_angle: Degrees = Field(0.0, ge=0, le=45, description="leaky_relu: slope tan(θ) "
                                "for x < 0; θ = 0 is ReLU, θ = 45° linear (degrees)")
    train: tuple[Weight, ...] = Field(("w_rec",), description="weights Adam changes")
    zero_diagonal: bool = Field(True, description="no self-connections in W_rec")
    density: float = Field(1.0, gt=0, le=1, description="fraction of W_rec entries present "
                           "(a fixed random mask drawn from the seed)")
    dale: DaleSpec = DaleSpec()
    init: InitSpec = InitSpec()
    training: TrainingSpec = TrainingSpec()

    @model_validator(mode="after")
    def _checks(self) -> CTRNNSpec:
        if self.dt > self.tau:
            raise ValueError(f"dt: Euler step {self.dt} s exceeds tau {self.tau} s "
                             "(α = dt/τ must be ≤ 1)")
        if len(set(self.train)) != len(self.train):
            raise ValueError("train: a weight is listed twice")
        return self

    @property
    def alpha(self) -> float:
        return self.dt / self.tau


# --------------------------------------------------------------------------- tasks


class TaskTiming(Spec):
    """The clock every task shares: its step must equal the network's Δt."""

    dt: Seconds = Field(0.01, gt=0, le=10, description="time step, seconds")
    input_noise: float = Field(0.0, ge=0, le=100, description="std of noise added to inputs")


class _Task(Spec):
    name: str = Field("task", min_length=1, max_length=200)
    description: str = ""
    timing: TaskTiming = TaskTiming()


@register_stimulus("task_perception")
class PerceptionTaskSpec(_Task):
    """The study's perception task: one input held at level ``x``; the network reports the
    mapped level (0.8 → 0.5, 0.5 → 0.8 by default) once the stimulus has been on for
    ``response_delay``."""

    kind: Literal["task_perception"] = "task_perception"
    levels: tuple[float, ...] = Field((0.8, 0.5), min_length=1)
    targets: tuple[float, ...] = Field((0.5, 0.8), min_length=1)
    duration: Seconds = Field(1.0, gt=0, le=600)
    response_delay: Seconds = Field(0.2, ge=0, le=600, description="loss starts after, s")
    tolerance: float = Field(0.1, gt=0, description="correct when |mean output - target| <")

    @model_validator(mode="after")
    def _pairs(self) -> PerceptionTaskSpec:
        if len(self.levels) != len(self.targets):
            raise ValueError("targets: one target per level")
        if self.response_delay >= self.duration:
            raise ValueError("response_delay: must be shorter than duration")
        return self


@register_stimulus("task_decision")
class DecisionTaskSpec(_Task):
    """Which of two noisy inputs is larger: output 1 on the larger one's channel, 0 on the
    other, after ``response_delay``."""

    kind: Literal["task_decision"] = "task_decision"
    mean_range: tuple[float, float] = Field((0.2, 1.0), description="input means drawn from")
    min_difference: float = Field(0.05, ge=0, description="|m1 - m2| at least")
    duration: Seconds = Field(1.0, gt=0, le=600)
    response_delay: Seconds = Field(0.3, ge=0, le=600)


@register_stimulus("task_delayed_discrimination")
class DelayedDiscriminationSpec(_Task):
    """Romo et al. (1999): two vibration frequencies f1, f2 separated by a delay; after f2
    report f1 > f2 (output channel 0) or f1 < f2 (channel 1)."""

    kind: Literal["task_delayed_discrimination"] = "task_delayed_discrimination"
    frequencies: tuple[Hertz, ...] = Field((10, 14, 18, 22, 26, 30, 34), min_length=2)
    fixation: Seconds = Field(0.1, ge=0, le=600)
    stimulus: Seconds = Field(0.2, gt=0, le=600, description="f1 and f2 each, seconds")
    delay: Seconds = Field(0.5, ge=0, le=600)
    decision: Seconds = Field(0.2, gt=0, le=600)


@register_stimulus("task_context_integration")
class ContextIntegrationSpec(_Task):
    """Mante et al. (2013): noisy motion and colour evidence, a context cue says which to
    integrate; report the sign of that one's mean at the end (output ±1)."""

    kind: Literal["task_context_integration"] = "task_context_integration"
    coherences: tuple[float, ...] = Field((-0.5, -0.15, -0.05, 0.05, 0.15, 0.5), min_length=1)
    evidence_noise: float = Field(1.0, ge=0, le=100, description="std per step")
    fixation: Seconds = Field(0.1, ge=0, le=600)
    stimulus: Seconds = Field(0.75, gt=0, le=600)
    decision: Seconds = Field(0.2, gt=0, le=600)


@register_stimulus("task_flip_flop")
class FlipFlopSpec(_Task):
    """Sussillo & Barak (2013): ``n_bits`` channels receive sparse ±1 pulses; output ``k``
    holds the sign of the last pulse on input ``k``."""

    kind: Literal["task_flip_flop"] = "task_flip_flop"
    n_bits: int = Field(3, ge=1, le=64)
    duration: Seconds = Field(1.0, gt=0, le=600)
    pulse_probability: float = Field(0.05, gt=0, le=1, description="per channel and step")


@register_stimulus("task_sine_wave")
class SineWaveSpec(_Task):
    """Sussillo & Abbott (2009): a static input level selects the frequency of the sine wave
    the output must generate."""

    kind: Literal["task_sine_wave"] = "task_sine_wave"
    frequencies: tuple[Hertz, ...] = Field((1.0, 2.0, 3.0, 4.0), min_length=1)
    duration: Seconds = Field(2.0, gt=0, le=600)
    warmup: Seconds = Field(0.2, ge=0, le=600, description="loss starts after, seconds")
