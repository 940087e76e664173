"""The task library: the study's perception and decision tasks, delayed discrimination
(Romo et al. 1999), context-dependent integration (Mante et al. 2013), the 3-bit flip-flop
(Sussillo & Barak 2013) and sine-wave generation (Sussillo & Abbott 2009)."""

from __future__ import annotations

import numpy as np

from neurorec.tasks.base import Task, Trials, masked_mean, register_task


def _zeros(n: int, t: int, c: int) -> np.ndarray:
    return np.zeros((n, t, c))


@register_task("task_perception")
class Perception(Task):
    """Input: one channel held at a level. Output: the level's target after the delay.
    Correct: |mean scored output - target| < tolerance."""

    n_inputs, n_outputs = 1, 1

    def _generate(self, n_trials: int, rng: np.random.Generator) -> Trials:
        s = self.spec
        n_steps, start = self.steps(s.duration), self.steps(s.response_delay)
        pick = rng.integers(len(s.levels), size=n_trials)
        level, target = np.asarray(s.levels)[pick], np.asarray(s.targets)[pick]
        inputs = np.broadcast_to(level[:, None, None], (n_trials, n_steps, 1)).copy()
        targets = np.broadcast_to(target[:, None, None], (n_trials, n_steps, 1)).copy()
        mask = _zeros(n_trials, n_steps, 1)
        mask[:, start:] = 1
        return Trials(inputs, targets, mask, self.dt, {"level": level, "target": target})

    def accuracy(self, outputs: np.ndarray, trials: Trials) -> float:
        err = np.abs(masked_mean(outputs, trials.mask) - masked_mean(trials.targets, trials.mask))
        return float(np.mean(err[:, 0] < self.spec.tolerance))


@register_task("task_decision")
class Decision(Task):
    """Inputs: two levels (noisy with ``timing.input_noise``). Outputs: 1 on the channel of the
    larger, 0 on the other. Correct: argmax of the mean scored outputs is the larger input."""

    n_inputs, n_outputs = 2, 2

    def _generate(self, n_trials: int, rng: np.random.Generator) -> Trials:
        s = self.spec
        n_steps, start = self.steps(s.duration), self.steps(s.response_delay)
        lo, hi = s.mean_range
        means = rng.uniform(lo, hi, size=(n_trials, 2))
        bad = np.abs(means[:, 0] - means[:, 1]) < s.min_difference
        while bad.any():  # redraw the few pairs too close to call
            means[bad] = rng.uniform(lo, hi, size=(int(bad.sum()), 2))
            bad = np.abs(means[:, 0] - means[:, 1]) < s.min_difference
        choice = np.argmax(means, axis=1)
        inputs = np.broadcast_to(means[:, None, :], (n_trials, n_steps, 2)).copy()
        targets = _zeros(n_trials, n_steps, 2)
        targets[np.arange(n_trials), :, choice] = 1.0
        mask = _zeros(n_trials, n_steps, 2)
        mask[:, start:] = 1
        return Trials(inputs, targets, mask, self.dt,
                      {"choice": choice, "difference": means[:, 0] - means[:, 1]})

    def accuracy(self, outputs: np.ndarray, trials: Trials) -> float:
        return _argmax_accuracy(outputs, trials)


def _argmax_accuracy(outputs: np.ndarray, trials: Trials) -> float:
    chosen = np.argmax(masked_mean(outputs, trials.mask), axis=1)
    return float(np.mean(chosen == trials.conditions["choice"]))


@register_task("task_delayed_discrimination")
class DelayedDiscrimination(Task):
    """Inputs: fixation (1 until the decision period), stimulus (f / max f during f1 and f2).
    Outputs: channel 0 for f1 > f2, channel 1 for f1 < f2, scored everywhere (0 before the
    decision). Correct: argmax over the decision period."""

    n_inputs, n_outputs = 2, 2

    def _generate(self, n_trials: int, rng: np.random.Generator) -> Trials:
        s = self.spec
        fix, stim, delay, dec = (self.steps(x) for x in (s.fixation, s.stimulus, s.delay,
                                                          s.decision))
        n_steps = fix + 2 * stim + delay + dec
        freqs = np.asarray(s.frequencies)
        pairs = np.stack([rng.choice(len(freqs), size=2, replace=False)
                          for _ in range(n_trials)])
        f1, f2 = freqs[pairs[:, 0]], freqs[pairs[:, 1]]
        choice = (f1 < f2).astype(int)
        inputs = _zeros(n_trials, n_steps, 2)
        inputs[:, : n_steps - dec, 0] = 1.0
        inputs[:, fix:fix + stim, 1] = (f1 / freqs.max())[:, None]
        second = fix + stim + delay
        inputs[:, second:second + stim, 1] = (f2 / freqs.max())[:, None]
        targets = _zeros(n_trials, n_steps, 2)
        targets[np.arange(n_trials), n_steps - dec:, choice] = 1.0
        mask = np.ones_like(targets)
        trials = Trials(inputs, targets, mask, self.dt, {"f1": f1, "f2": f2, "choice": choice})
        return trials

    def accuracy(self, outputs: np.ndarray, trials: Trials) -> float:
        dec = self.steps(self.spec.decision)
        decision = np.zeros_like(trials.mask)
        decision[:, -dec:] = 1
        return _argmax_accuracy(outputs, Trials(trials.inputs, trials.targets, decision,
                                                trials.dt, trials.conditions))


@register_task("task_context_integration")
class ContextIntegration(Task):
    """Inputs: motion evidence, colour evidence, motion cue, colour cue. Output: the sign of the
    cued coherence (±1) in the decision period (scored there only). Correct: sign agrees."""

    n_inputs, n_outputs = 4, 1

    def _generate(self, n_trials: int, rng: np.random.Generator) -> Trials:
        s = self.spec
        fix, stim, dec = self.steps(s.fixation), self.steps(s.stimulus), self.steps(s.decision)
        n_steps = fix + stim + dec
        coh = np.asarray(s.coherences)[rng.integers(len(s.coherences), size=(n_trials, 2))]
        context = rng.integers(2, size=n_trials)
        inputs = _zeros(n_trials, n_steps, 4)
        noise = s.evidence_noise * rng.standard_normal((n_trials, stim, 2))
        inputs[:, fix:fix + stim, :2] = coh[:, None, :] + noise
        inputs[np.arange(n_trials), :, 2 + context] = 1.0
        relevant = coh[np.arange(n_trials), context]
        targets = _zeros(n_trials, n_steps, 1)
        targets[:, fix + stim:, 0] = np.sign(relevant)[:, None]
        mask = _zeros(n_trials, n_steps, 1)
        mask[:, fix + stim:] = 1
        return Trials(inputs, targets, mask, self.dt,
                      {"context": context, "motion": coh[:, 0], "colour": coh[:, 1],
                       "choice": (relevant > 0).astype(int)})

    def accuracy(self, outputs: np.ndarray, trials: Trials) -> float:
        mean = masked_mean(outputs, trials.mask)[:, 0]
        return float(np.mean((mean > 0).astype(int) == trials.conditions["choice"]))


@register_task("task_flip_flop")
class FlipFlop(Task):
    """Inputs: ``n_bits`` channels of single-step ±1 pulses. Outputs: the sign of the last
    pulse per channel, scored from each channel's first pulse on. Correct: fraction of scored
    (step, bit) with the right sign."""

    def __init__(self, spec):
        super().__init__(spec)
        self.n_inputs = self.n_outputs = spec.n_bits

    def _generate(self, n_trials: int, rng: np.random.Generator) -> Trials:
        s = self.spec
        n_steps = self.steps(s.duration)
        shape = (n_trials, n_steps, s.n_bits)
        pulses = (rng.random(shape) < s.pulse_probability) * rng.choice([-1.0, 1.0], size=shape)
        pulses[:, 0] = 0.0
        targets = np.zeros(shape)
        state = np.zeros((n_trials, s.n_bits))
        for t in range(n_steps):  # hold the last pulse's sign
            state = np.where(pulses[:, t] != 0, pulses[:, t], state)
            targets[:, t] = state
        mask = (targets != 0).astype(float)
        return Trials(pulses, targets, mask, self.dt)

    def accuracy(self, outputs: np.ndarray, trials: Trials) -> float:
        scored = trials.mask > 0
        return float(np.mean(np.sign(outputs[scored]) == trials.targets[scored]))


@register_task("task_sine_wave")
class SineWave(Task):
    """Input: a static level f / max f. Output: sin(2π f t). Correct: a trial whose scored
    R² (1 - MSE / target variance) exceeds 0.9."""

    n_inputs, n_outputs = 1, 1

    def _generate(self, n_trials: int, rng: np.random.Generator) -> Trials:
        s = self.spec
        n_steps, start = self.steps(s.duration), self.steps(s.warmup)
        freqs = np.asarray(s.frequencies)
        f = freqs[rng.integers(len(freqs), size=n_trials)]
        t = (np.arange(n_steps) + 1) * self.dt
        inputs = np.broadcast_to((f / freqs.max())[:, None, None], (n_trials, n_steps, 1)).copy()
        targets = np.sin(2 * np.pi * f[:, None] * t[None, :])[..., None]
        mask = _zeros(n_trials, n_steps, 1)
        mask[:, start:] = 1
        return Trials(inputs, targets, mask, self.dt, {"frequency": f})

    def accuracy(self, outputs: np.ndarray, trials: Trials) -> float:
        m = trials.mask[..., 0] > 0
        err = ((outputs[..., 0] - trials.targets[..., 0]) ** 2 * m).sum(1)
        var = (trials.targets[..., 0] ** 2 * m).sum(1)  # zero-mean target over whole periods
        return float(np.mean(1 - err / np.maximum(var, 1e-12) > 0.9))
