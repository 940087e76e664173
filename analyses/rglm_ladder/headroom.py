"""How much could any slow latent add to GLM + corr on these sessions? (issue 20, +0.01 target)

A latent state that integrates past spikes can only beat GLM + corr by carrying something the
GLM's 100 ms history and 50 ms coupling filters do not: slow shared fluctuations (population
gain within or across trials). This module adds such signals to GLM + corr *directly* as drive
terms (no latent, no non-convex fit; batched Newton, exact optimum) and scores held-out trials:

- ``pop_trace``: causal — log(1 + r_τ/100 Hz) of the population rate r_τ exponentially filtered
  over past bins with τ = 100 ms, 300 ms, 1 s (what a slow linear latent can compute);
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

    def spike_features(self, m, x, bin_size):
        return {self.key: self.features(x, bin_size)}

    def init(self, m, data, gen, baseline):
        n_features = self.features(m._tensor(data.counts[:1]), data.bin_size).shape[-1]
        return {"w_pop": m._tensor(np.zeros((data.counts.shape[2], n_features)))}

    def drive(self, m, p, d):
        return torch.einsum("btk,ik->bti", d[self.key], p["w_pop"])

    def columns(self, m, d, n_conditions):
        f, y = d[self.key], d["y"]
        return [Column("w_pop", f.reshape(-1, f.shape[-1]), y.new_ones(y.shape[2], f.shape[-1]),
                       self.group)]


class PopulationTrace(_PopulationFeature):
    """Causal: the population rate filtered by exponentials (τ in ``TAUS_S``) over past bins."""

    def features(self, y, bin_size):
        lags = np.arange(1, y.shape[1] + 1) * bin_size
        # unit-area kernels: a constant rate r gives r after a few τ
        basis = np.stack([np.exp(-lags / tau) * (1 - np.exp(-bin_size / tau)) for tau in TAUS_S],
                         axis=1)
        pop = y.sum(dim=2, keepdim=True) / bin_size
        trace = history_features(pop, torch.as_tensor(basis, dtype=y.dtype))[:, :, 0, :]
        return torch.log1p(trace / RATE_SCALE_HZ)


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
    train, test = data.subset(~data.is_test), data.subset(data.is_test)
    row = {"dataset": dataset, "n_units": int(test.counts.shape[2])}
    for name, extra in (("glm_corr", ()), ("pop_trace", (PopulationTrace(),)),
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
             "compute). `oracle_gain`: non-causal, the trial's whole population rate (an upper "
             "bound on a trial-level gain state).", "",
             "| feature | sessions with gain > 0 | mean gain | bootstrap 95 % CI | max |",
             "|---|---|---|---|---|"]
    base = np.array([r["glm_corr"] for r in rows])
    for name in ("pop_trace", "oracle_gain"):
        st = study.paired(np.array([r[name] for r in rows]), base)
        gain = np.array([r[name] for r in rows]) - base
        lines.append(f"| {name} | {int((gain > 0).sum())}/{len(gain)} | {st['mean']:+.4f} | "
                     f"[{st['ci'][0]:+.4f}, {st['ci'][1]:+.4f}] | {gain.max():+.4f} |")
    return lines


__all__ = ["OracleTrialGain", "PopulationTrace", "headroom_markdown", "run_headroom"]
