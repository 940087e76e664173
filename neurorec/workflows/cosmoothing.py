"""Co-smoothing (Neural Latents Benchmark, Pei et al. 2021): score a model by how well it
predicts *held-out neurons* on test trials from the *held-in* neurons' spikes alone.

Split: the recorded units are divided once, by a seeded draw, into held-in and held-out.
A model is fitted on the training trials with every unit (held-out units as outputs only:
their spikes are targets, never predictors); on test trials it sees held-in spikes and
predicts every unit.

Scores (Poisson NLL including ``log y!``, rates clipped at 1e-9, as ``nlb_tools``):

* ``co_bps``: bits/spike of the held-out units on the test trials,
  ``(NLL_null - NLL_model) / (n_spikes · ln 2)``, the null model predicting each held-out
  unit's mean count per bin over those same test bins. This is ``nlb_tools.evaluation.
  bits_per_spike`` (null from the evaluated spikes), the benchmark's definition.
* ``co_bps_train_null``: the same with the null rate taken from the *training* trials (a
  null that, like the model, has not seen the test spikes; always ≥ ``co_bps``, because the
  test-trial mean is the best constant rate in hindsight).
* ``heldin_bits_per_spike``: the usual bits/spike restricted to the held-in units.
"""

from __future__ import annotations

import numpy as np

from neurorec.core.errors import DataError
from neurorec.core.metrics import bits_per_spike, per_neuron_bits_per_spike

DEFAULT_FRACTION = 0.25  # NLB holds out roughly a quarter to a third of the units


def heldout_mask(unit_ids: np.ndarray, heldout: str | float | list, seed: int = 0) -> np.ndarray:
    """(n_units,) bool, True for held-out units.

    Args:
        unit_ids: (n_units,) unit identifiers of the binned data.
        heldout: a fraction in (0, 1) (``"0.25"`` or ``0.25``): ``round(f · n_units)`` units
            (at least 1, at most n_units - 1) drawn without replacement with
            ``numpy.random.default_rng(seed)``; or a comma list (``"3,7"``) / a list of unit
            ids, each matched against ``unit_ids`` as a string, else read as a 0-based position.
        seed: seed of the draw.
    Raises:
        DataError: an unknown unit, a fraction outside (0, 1), or a split that leaves no
            held-in or no held-out unit.
    """
    ids = [str(u) for u in np.asarray(unit_ids)]
    n = len(ids)
    where = "--heldout-neurons"
    items: list[str] | None = None
    fraction: float | None = None
    if isinstance(heldout, (list, tuple, np.ndarray)):
        items = [str(x) for x in heldout]
    elif isinstance(heldout, float):
        fraction = heldout
    else:
        text = str(heldout).strip()
        try:
            value = float(text)
        except ValueError:
            items = [s.strip() for s in text.split(",") if s.strip()]
        else:
            if "," in text or (value.is_integer() and value >= 1):
                items = [text]
            else:
                fraction = value
    mask = np.zeros(n, dtype=bool)
    if fraction is not None:
        if not 0 < fraction < 1:
            raise DataError(f"{where}: {heldout}: a fraction must lie in (0, 1)")
        k = int(min(max(round(fraction * n), 1), n - 1))
        mask[np.random.default_rng(seed).choice(n, size=k, replace=False)] = True
    else:
        for item in items or []:
            if item in ids:
                mask[ids.index(item)] = True
            elif item.lstrip("-").isdigit() and 0 <= int(item) < n:
                mask[int(item)] = True
            else:
                raise DataError(f"{where}: {item}: no such unit (ids: {', '.join(ids[:20])}"
                                f"{' ...' if n > 20 else ''}; or a position 0..{n - 1})")
    if mask.all() or not mask.any():
        raise DataError(f"{where}: {heldout}: the split leaves {int((~mask).sum())} held-in and "
                        f"{int(mask.sum())} held-out units of {n}; need ≥ 1 of each")
    return mask


def co_bps(counts: np.ndarray, rates: np.ndarray, null_rates: np.ndarray | None = None) -> float:
    """Co-smoothing bits/spike of held-out units (Poisson).

    Args:
        counts: (n_trials, n_bins, n_heldout) test-trial counts of the held-out units.
        rates: same shape, predicted expected counts per bin.
        null_rates: (n_heldout,) the null model's expected count per bin; default: each
            unit's mean over ``counts`` (the NLB / nlb_tools definition).
    """
    if counts.sum() == 0:
        raise DataError("co-smoothing: held-out units fire no spike on the test trials")
    score = bits_per_spike(counts, rates, "poisson")
    if null_rates is None:
        return score
    # against another null: bits(rates) - bits(null) = (NLL_null - NLL_rates) / (spikes ln 2)
    null = np.broadcast_to(np.asarray(null_rates, dtype=float), counts.shape)
    return score - bits_per_spike(counts, null, "poisson")


def cosmoothing_metrics(test_counts: np.ndarray, test_rates: np.ndarray,
                        train_counts: np.ndarray, heldout: np.ndarray,
                        observation: str = "poisson") -> dict:
    """Everything co-smoothing adds to ``metrics.json``.

    Args:
        test_counts, test_rates: (n_test_trials, n_bins, n_units) counts and predictions of
            every unit (held-out predictions made from held-in spikes only).
        train_counts: (n_train_trials, n_bins, n_units) training counts (null of
            ``co_bps_train_null``).
        heldout: (n_units,) bool mask of held-out units.
        observation: the model's observation family; co-bps is Poisson by definition, so a
            Bernoulli model's spike probabilities are scored as Poisson rates too
            (``co_bps``) and additionally as Bernoulli (``co_bps_bernoulli``).
    """
    ho, hi = np.asarray(heldout, bool), ~np.asarray(heldout, bool)
    y_ho, r_ho = test_counts[..., ho], test_rates[..., ho]
    train_mean = train_counts[..., ho].reshape(-1, int(ho.sum())).mean(axis=0)
    out = {
        "co_bps": co_bps(y_ho, r_ho),
        "co_bps_train_null": co_bps(y_ho, r_ho, train_mean),
        "heldin_bits_per_spike": bits_per_spike(test_counts[..., hi], test_rates[..., hi],
                                                observation),
        "heldout_per_neuron_co_bps": per_neuron_bits_per_spike(y_ho, r_ho, "poisson"),
        "heldout_units": [int(i) for i in np.flatnonzero(ho)],
        "n_heldout_neurons": int(ho.sum()),
        "n_heldin_neurons": int(hi.sum()),
        "n_heldout_test_spikes": int(y_ho.sum()),
    }
    if observation == "bernoulli":
        out["co_bps_bernoulli"] = bits_per_spike(y_ho, r_ho, "bernoulli")
    return out


def check_supports(kind: str) -> None:
    """A model fits in co-smoothing mode when its family declares ``heldout_neurons``."""
    from neurorec.families import kinds_supporting

    able = kinds_supporting("heldout_neurons")
    if kind not in able:
        raise DataError(f"--heldout-neurons: models of kind '{kind}' do not support "
                        f"co-smoothing ({', '.join(able)} do)")
