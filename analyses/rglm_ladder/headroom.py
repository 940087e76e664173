"""How much could any slow latent add to GLM + corr on these sessions? (issue 20, +0.01 target)

A latent state that integrates past spikes can only beat GLM + corr by carrying something the
GLM's 100 ms history and 50 ms coupling filters do not: slow shared fluctuations (population
gain within or across trials). This module adds such signals to GLM + corr *directly* as drive
terms (no latent, no non-convex fit; batched Newton, exact optimum) and scores held-out trials:

- ``pop_trace``: causal — log(1 + r_τ/100 Hz) of the population rate r_τ exponentially filtered
  over past bins with τ = 100 ms, 300 ms, 1 s (what a slow linear latent can compute);
- ``prev_trial``: causal across trials — log(1 + r/100 Hz) of the population rate r of the
  previous trial and the mean over the 5 previous trials, in recording order (what a state carried
  from trial to trial could know);
- ``oracle_gain``: non-causal — log(1 + mean population rate over the *whole* trial), own spikes
  included: more than any causal latent can know, so its gain bounds what a trial-level gain
  state could add.

Both are :class:`~neurorec.families.glm.terms.Term` subclasses defined here, added to the GLM's
own terms without touching the family (the composition issue 17 built). Called by
``analyses/rglm_ladder/run.py`` (one job per V1 session); rows land in ``headroom.csv`` and a
section of RESULTS.md.
"""

from __future__ import annotations

import numpy as np
import torch

from neurorec.families.glm.terms import Column, Term, history_features

TAUS_S = (0.1, 0.3, 1.0)
RATE_SCALE_HZ = 100.0  # log(1 + r / 100 Hz): the features stay O(1) for V1 population rates


class _PopulationFeature(Term):
    """A drive ``Σ_k w[i, k] f_k(b, t)`` from features shared by every unit."""

    params = ("w_pop",)
    group = None
    key = "POP"

    def features(self, y: torch.Tensor, bin_size: float) -> torch.Tensor:
        """(n_trials, n_bins, n_features) from counts ``y`` (n_trials, n_bins, n_units)."""
        raise NotImplementedError

    def spike_features(self, ctx, x, bin_size):
        return {self.key: self.features(x, bin_size)}

    def init(self, ctx, data, gen, baseline):
        n_features = self.features(ctx.tensor(data.counts[:1]), data.bin_size).shape[-1]
        return {"w_pop": ctx.tensor(np.zeros((data.counts.shape[2], n_features)))}

    def drive(self, ctx, p, d):
        return torch.einsum("btk,ik->bti", d[self.key], p["w_pop"])

    def columns(self, ctx, d, n_conditions):
        f, y = d[self.key], d["y"]
        return [Column("w_pop", f.reshape(-1, f.shape[-1]), y.new_ones(y.shape[2], f.shape[-1]),
                       self.group)]


class PopulationTrace(_PopulationFeature):
    """Causal: the population rate filtered by exponentials (τ in ``TAUS_S``) over past bins."""

    def features(self, y, bin_size):
        lags = np.arange(1, y.shape[1] + 1) * bin_size
        # kernel (1 - a) a^l over lags l ≥ 1, a = exp(-Δ/τ): a constant rate r gives a·r after
        # a few τ (area a, 0.90-0.99 here: a scale the fitted weight absorbs)
        basis = np.stack([np.exp(-lags / tau) * (1 - np.exp(-bin_size / tau)) for tau in TAUS_S],
                         axis=1)
        pop = y.sum(dim=2, keepdim=True) / bin_size
        trace = history_features(pop, torch.as_tensor(basis, dtype=y.dtype))[:, :, 0, :]
        return torch.log1p(trace / RATE_SCALE_HZ)


class PreviousTrials(_PopulationFeature):
    """Causal across trials: features of earlier trials' population rates, passed in per trial
    as the data's stimulus channels (:func:`with_previous_trials`), the same in every bin."""

    def features(self, y, bin_size):  # pragma: no cover - read from the inputs instead
        raise NotImplementedError

    def static_features(self, ctx, inputs):
        return {self.key: ctx.tensor(inputs.stimulus)}

    def spike_features(self, ctx, x, bin_size):
        return {}

    def init(self, ctx, data, gen, baseline):
        return {"w_pop": ctx.tensor(np.zeros((data.counts.shape[2], data.stimulus.shape[2])))}


def with_previous_trials(data, n_back: int = 5):
    """``data`` (all trials, recording order) with stimulus channels log(1 + r/100 Hz) of the
    previous trial's population rate and of the mean over the ``n_back`` previous trials (the
    session mean before the first trial)."""
    import dataclasses

    rate = data.counts.sum(axis=(1, 2)) / (data.counts.shape[1] * data.bin_size)
    padded = np.r_[np.full(n_back, rate.mean()), rate]
    prev = padded[n_back - 1:-1]
    mean_back = np.array([padded[k:k + n_back].mean() for k in range(len(rate))])
    feat = np.log1p(np.stack([prev, mean_back], axis=1) / RATE_SCALE_HZ)
    return dataclasses.replace(
        data, stimulus=np.repeat(feat[:, None, :], data.counts.shape[1], axis=1))


class OracleTrialGain(_PopulationFeature):
    """Non-causal: the population's mean rate over the whole trial, the same in every bin."""

    def features(self, y, bin_size):
        rate = y.sum(dim=(1, 2), keepdim=True) / (y.shape[1] * bin_size)
        return torch.log1p(rate / RATE_SCALE_HZ).expand(-1, y.shape[1], 1)


def run_headroom(dataset: str, spec_path: str, seed: int) -> dict:
    """Held-out bits/spike of GLM + corr (``spec_path`` without a rate ceiling, batched Newton)
    alone and with each population feature, on the ladder's split of ``dataset``."""
    from neurorec.core.metrics import bits_per_spike
    from neurorec.families.glm.glm import GLM
    from neurorec.spec import load_model_spec
    from neurorec.workflows.pipeline import bin_for_spec
    from neurorec.workflows.study import load_clean

    spec = load_model_spec(spec_path)
    spec = spec.model_copy(update={"rate_ceiling_hz": None})
    data = bin_for_spec(spec, load_clean(dataset), seed)
    row = {"dataset": dataset, "n_units": int(data.counts.shape[2])}
    if data.stimulus is not None:
        raise ValueError(f"{dataset}: the headroom's previous-trial feature uses the stimulus "
                         "channels, and this recording has a stimulus series")
    # trials come in recording order (start_time), so the previous trial is the one before;
    # only PreviousTrials reads the stimulus channels this adds
    data = with_previous_trials(data)
    train, test = data.subset(~data.is_test), data.subset(data.is_test)
    for name, extra in (("glm_corr", ()), ("pop_trace", (PopulationTrace(),)),
                        ("prev_trial", (PreviousTrials(),)),
                        ("oracle_gain", (OracleTrialGain(),))):
        model = GLM(spec, seed=seed, terms=[*GLM.default_terms(spec), *extra])
        model.fit(train, progress=False)
        row[name] = bits_per_spike(test.counts, model.predict_rate(test), "poisson", None)
    return row


def headroom_markdown(rows: list[dict]) -> list[str]:
    """The RESULTS.md section: mean gain over GLM + corr with bootstrap CI per feature."""
    from neurorec.workflows import study

    if not rows:
        return []
    lines = ["", "## Headroom: what a slow shared signal adds to GLM + corr (`headroom.py`)", "",
             "GLM + corr (rung 4 without the ceiling, batched Newton) with a population feature "
             "added as a drive term; held-out bits/spike, same split. `pop_trace`: causal, the "
             "population rate filtered with τ = 100 ms, 300 ms, 1 s (what a slow latent can "
             "compute). `prev_trial`: causal across trials, the previous trial's and the 5 "
             "previous trials' population rate in recording order (what a state carried "
             "between trials could know). `oracle_gain`: non-causal, the trial's whole "
             "population rate (an upper bound on a trial-level gain state).", "",
             "| feature | sessions with gain > 0 | mean gain | bootstrap 95 % CI | max |",
             "|---|---|---|---|---|"]
    base = np.array([r["glm_corr"] for r in rows])
    for name in ("pop_trace", "prev_trial", "oracle_gain"):
        if name not in rows[0]:
            continue
        st = study.paired(np.array([r[name] for r in rows]), base)
        gain = np.array([r[name] for r in rows]) - base
        lines.append(f"| {name} | {int((gain > 0).sum())}/{len(gain)} | {st['mean']:+.4f} | "
                     f"[{st['ci'][0]:+.4f}, {st['ci'][1]:+.4f}] | {gain.max():+.4f} |")
    return lines


def main() -> None:
    """``python analyses/rglm_ladder/headroom.py --out CSV [--v1-sessions 0-26]``: the headroom
    alone (the ladder runs the same jobs)."""
    import argparse
    from pathlib import Path

    from neurorec.workflows import study

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="CSV to write")
    parser.add_argument("--v1-sessions", default="0-26")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    spec = Path(__file__).resolve().parents[2] / "models" / "ladder" / "4_glm_corr.yaml"
    sessions = study.parse_sessions(args.v1_sessions)
    rows = [run_headroom(f"v1_gratings:{s}", str(spec), args.seed) for s in sessions]
    study.write_csv(args.out, rows)
    print("\n".join(headroom_markdown(rows)))


__all__ = ["OracleTrialGain", "PopulationTrace", "PreviousTrials", "headroom_markdown",
           "run_headroom", "with_previous_trials"]

if __name__ == "__main__":
    from neurorec.core.errors import run_script

    run_script(main)
