"""Simulate fitted models: reload a ``neurorec fit`` output directory and sample from it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from neurorec.core.errors import DataError, DivergenceError
from neurorec.data.recording import Recording, TrialLayout, counts_to_spike_times
from neurorec.families import Model, family_of
from neurorec.families.base import SPEC_FILE, STATE_FILE
from neurorec.spec import load_model_spec

GAP_S = 0.3  # silence between simulated trials on the exported timeline


def load_fitted(fit_dir: Path, device: str = "cpu") -> Model:
    """The model saved by ``neurorec fit`` in ``fit_dir``: ``model.pt`` + ``spec.yaml``
    through the family's :meth:`~neurorec.families.base.Estimator.load`."""
    if not (fit_dir / STATE_FILE).is_file():
        raise DataError(f"{fit_dir}: {STATE_FILE}: not found (not a `neurorec fit` output dir "
                        "of this version)")
    kind = load_model_spec(fit_dir / SPEC_FILE).kind
    return family_of(kind).model.load(fit_dir, device=device)


SAMPLING_FIELDS = ("sampling.max_rate_hz",)
"""Spec fields ``export-nwb --set`` may change on a fitted model: they act when sampling and
leave the fitted parameters' shapes and meaning alone."""


def check_fit_dir(fit_dir: Path) -> None:
    """``fit_dir`` is a ``neurorec fit`` output of a spike-train model with its held-out
    ``predictions.npz`` (the conditions to simulate); one DataError line otherwise."""
    from neurorec.families import MODELS

    spec_path = fit_dir / SPEC_FILE
    if not spec_path.is_file():
        raise DataError(f"{fit_dir}: {SPEC_FILE}: not found (not a `neurorec fit` output dir)")
    kind = load_model_spec(spec_path).kind
    if kind not in MODELS:
        raise DataError(f"{fit_dir}: kind: '{kind}' is not a model of recorded spike trains "
                        "(export-nwb samples a `neurorec fit` output dir)")
    if not (fit_dir / "predictions.npz").is_file():
        raise DataError(f"{fit_dir}: predictions.npz: not found (export-nwb samples one trial "
                        "per held-out trial of a `neurorec fit` output dir)")


def simulate_fit_dir(fit_dir: Path, seed: int = 0, overrides: Sequence[str] = ()) -> Recording:
    """Sample one trial per held-out trial's condition (and binned stimulus series, for a
    model with a stimulus filter) from the model fitted in ``fit_dir``; ``overrides``
    (``--set``) may change :data:`SAMPLING_FIELDS` of its spec."""
    model = load_fitted(fit_dir)
    if overrides:
        from neurorec.core.errors import SpecError
        from neurorec.spec.load import parse_overrides

        for keys, _ in parse_overrides(overrides):
            if ".".join(keys) not in SAMPLING_FIELDS:
                raise SpecError(f"{fit_dir / SPEC_FILE}: {'.'.join(keys)}: export-nwb --set "
                                f"changes only sampling fields of a fitted model "
                                f"({', '.join(SAMPLING_FIELDS)})")
        model.spec = load_model_spec(fit_dir / SPEC_FILE, overrides)
    with np.load(fit_dir / "predictions.npz") as pred:
        condition, unit_ids = pred["condition"], pred["unit_ids"]
        stimulus = pred["stimulus"] if "stimulus" in pred.files else None
    try:
        like = TrialLayout(condition, model.n_bins_, stimulus)
        counts = model.sample(len(condition), seed=seed, like=like).astype(np.int64)
    except DivergenceError as err:
        what = err.lines[0].split(" (try ")[0]
        raise DataError(f"{fit_dir}: {what}; bound the samples with the spec field "
                        "sampling.max_rate_hz (export-nwb --set sampling.max_rate_hz=500) or "
                        "fit with rate_ceiling_hz or link: softplus") from None
    capped = getattr(model, "last_sample_capped", 0.0)
    if capped:
        import sys

        print(f"{fit_dir}: warning: {100 * capped:.3g} % of unit-bins sampled at the cap "
              f"sampling.max_rate_hz = {model.spec.sampling.max_rate_hz:g} Hz (the model's "
              "closed loop runs above it there)", file=sys.stderr)
    bin_size = float(model.bin_size_)
    duration = counts.shape[1] * bin_size
    start = np.arange(len(condition)) * (duration + GAP_S)
    trials = pd.DataFrame({"start_time": start, "stop_time": start + duration,
                           "condition": condition})
    return Recording(spike_times=counts_to_spike_times(counts, start, bin_size),
                     unit_ids=np.asarray(unit_ids), trials=trials,
                     stimulus_columns=("condition",), source=f"simulation of {fit_dir}",
                     metadata={"simulated_from": str(fit_dir), "seed": seed,
                               "bin_size_s": bin_size})
