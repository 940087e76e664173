"""Fit a model spec to recorded data and evaluate it on held-out trials.

The one path every command takes: spec → recording → binned trials → split → fit → metrics.
Writing files is the report layer's job (:mod:`neurorec.report`).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from neurorec.core.errors import DataError, NeurorecError
from neurorec.core.metrics import (
    aic,
    bits_per_spike,
    log_likelihood,
    per_neuron_bits_per_spike,
)
from neurorec.core.rng import forked_global_rng
from neurorec.data.binning import bin_trials
from neurorec.data.recording import BinnedTrials, Recording
from neurorec.families import Model, family_of, model_for
from neurorec.fit.run import Run
from neurorec.spec.base import Spec


def load_recording(source: str) -> Recording:
    """A recording from an NWB file path or a bundled dataset name (``v1_gratings:3``)."""
    from neurorec import datasets
    from neurorec.data.nwb import read_nwb

    path = Path(source)
    if path.suffix.lower() == ".nwb" or path.exists():
        if not path.exists():
            raise DataError(f"{source}: file not found")
        return read_nwb(path)
    return datasets.load(source)


def resolve_device(device: str) -> str:
    """Check a ``--device`` request against what torch can do here."""
    if device == "cuda" and not torch.cuda.is_available():
        raise NeurorecError("--device cuda: torch.cuda.is_available() is False on this machine "
                            f"(torch {torch.__version__}); use --device cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise NeurorecError(f"--device {device}: expected cpu or cuda")
    return device


@dataclass
class FitResult:
    """A fitted model with its data split and held-out evaluation."""

    spec: Spec
    model: Model
    data: BinnedTrials
    train: BinnedTrials
    test: BinnedTrials
    test_rates: np.ndarray
    metrics: dict
    #: time rescaling and standard errors (``neurorec.workflows.evaluate.Evaluation``)
    evaluation: object | None = None


def bin_for_spec(spec: Spec, recording: Recording, seed: int) -> BinnedTrials:
    d = spec.data
    return bin_trials(recording, d.bin_size, conditions=d.conditions,
                      test_fraction=d.test_fraction, seed=seed, window=d.window,
                      align=getattr(d, "align", None), unequal=getattr(d, "unequal", "crop"))


def fit_and_evaluate(spec: Spec, recording: Recording, seed: int = 0, device: str = "cpu",
                     progress: bool = True, run: Run | None = None, check_memory: bool = True,
                     heldout_neurons: str | float | list | None = None,
                     cv: int | None = None) -> FitResult:
    """Fit ``spec`` on the training trials of ``recording`` and score the test trials.

    ``heldout_neurons`` (a fraction, or a comma list of unit ids / positions): co-smoothing
    (:mod:`~neurorec.workflows.cosmoothing`); held-out units, drawn with ``seed``, are outputs only
    and the metrics gain ``co_bps`` and ``heldin_bits_per_spike``.

    Args:
        run: the fit's :class:`~neurorec.fit.run.Run`: its checkpoint folder is where the
            optimiser keeps its state (every ``fit.check_every`` iterations and when it
            stops), and ``run.resume`` continues from there, bitwise the result an
            uninterrupted run gives (CPU, same seed); the pipeline adds what the run
            depends on (spec, data, seed, device, shape, held-out units) to its
            fingerprint. None: no checkpoints.
        check_memory: refuse up front a fit estimated to need more memory than available
            (:mod:`neurorec.workflows.resources`).
        cv: K: choose the penalty strengths by K-fold cross-validation over the training
            trials (:mod:`neurorec.workflows.cv`), then fit all training trials with them;
            ``metrics["cv"]`` holds the grid, the mean held-out LL per point and the choice.
    """
    if check_memory:
        from neurorec.workflows.resources import check_fit_memory

        check_fit_memory(spec, recording)
    # Torch's global generator is the caller's: the fit runs on a fork of it seeded with
    # ``seed`` (what a family that draws from it, e.g. torch's default layer init, sees), and
    # the caller's state, CPU and CUDA, is given back afterwards.
    with forked_global_rng(seed):
        return _fit_and_evaluate(spec, recording, seed, device, progress, run,
                                 heldout_neurons, cv)


def _valid(part: BinnedTrials, rates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(1, n_valid_bins, n_units) counts and rates of the bins inside ``part``'s trials."""
    return part.counts[part.mask][None], np.asarray(rates)[part.mask][None]


def _check_masked(spec: Spec, heldout_neurons, cv) -> None:
    """Masked (unequal) trials are fitted by kind glm, without co-smoothing or --cv."""
    if spec.kind != "glm":
        raise DataError(f"{spec.name}: data.unequal: mask is supported by kind glm only "
                        f"(got {spec.kind}); use data.unequal: crop")
    if heldout_neurons is not None or cv is not None:
        raise DataError(f"{spec.name}: data.unequal: mask does not combine with "
                        "--heldout-neurons or --cv; use data.unequal: crop")


def _fit_and_evaluate(spec: Spec, recording: Recording, seed: int, device: str,
                      progress: bool, run: Run | None,
                      heldout_neurons: str | float | list | None,
                      cv: int | None = None) -> FitResult:
    data = bin_for_spec(spec, recording, seed)
    train, test = data.subset(~data.is_test), data.subset(data.is_test)
    if len(test.counts) == 0 or len(train.counts) < 2:
        raise DataError(f"{recording.source}: trials: need held-out and ≥ 2 training trials, "
                        f"got {len(test.counts)} test and {len(train.counts)} training")
    if test.counts.sum() == 0:
        raise DataError(f"{recording.source}: units: no spikes in the held-out trials")
    if data.mask is not None:
        _check_masked(spec, heldout_neurons, cv)
    start = time.perf_counter()
    cv_result = None
    if cv is not None:
        from neurorec.workflows.cv import cross_validate, with_penalty

        if heldout_neurons is not None:
            raise DataError("--cv: cross-validation with --heldout-neurons is not supported "
                            "(choose the penalty without co-smoothing, then pass it with --set)")
        cv_result = cross_validate(spec, train, cv, seed, resolve_device(device),
                                   progress=progress)
        spec = with_penalty(spec, cv_result.chosen)
    heldout, options = None, {}
    if heldout_neurons is not None:
        from neurorec.workflows import cosmoothing

        cosmoothing.check_supports(spec.kind)
        heldout = options["heldout"] = cosmoothing.heldout_mask(data.unit_ids, heldout_neurons,
                                                                seed)
    model = model_for(spec, device=resolve_device(device), seed=seed, **options)
    if run is not None and run.checkpoints:
        from neurorec.spec.load import dump_spec

        fingerprint = {"spec": dump_spec(spec), "data": recording.source, "seed": seed,
                       "device": device, "shape": list(train.counts.shape),
                       "heldout": None if heldout is None else np.flatnonzero(heldout).tolist()}
        run = dataclasses.replace(run, fingerprint={**run.fingerprint, **fingerprint})
    model.fit(train, progress=progress, run=run)
    fit_time = time.perf_counter() - start
    rates = model.predict_rate(test)
    obs, scale = model.observation_name, model.noise_scale()
    if data.mask is None:
        train_ll = model.log_likelihood(train)
        test_y, test_r = test.counts, rates
    else:  # unequal trials: every score over the bins inside the trials only
        train_ll = log_likelihood(*_valid(train, model.predict_rate(train)), obs, scale)
        test_y, test_r = _valid(test, rates)
    per_neuron = per_neuron_bits_per_spike(test_y, test_r, obs, scale)
    metrics = {
        "model": spec.name,
        "kind": spec.kind,
        "observation": obs,
        "data": recording.source,
        "bits_per_spike": bits_per_spike(test_y, test_r, obs, scale),
        "log_likelihood": log_likelihood(test_y, test_r, obs, scale),
        "n_spikes": int(test.counts.sum()),
        "n_neurons": int(test.counts.shape[2]),
        "n_bins": int(test_y.shape[0] * test_y.shape[1]),
        "n_bins_per_trial": int(test.counts.shape[1]),
        "n_test_trials": int(test.counts.shape[0]),
        "n_train_trials": int(train.counts.shape[0]),
        "bin_size_s": data.bin_size,
        "per_neuron_bits_per_spike": per_neuron,
        "unit_ids": [str(u) for u in data.unit_ids],
        "train_log_likelihood": train_ll,
        "train_bits_per_spike": (model.score(train) if data.mask is None else
                                 bits_per_spike(*_valid(train, model.predict_rate(train)),
                                                obs, scale)),
        "n_parameters": model.n_parameters(),
        "aic": aic(train_ll, model.n_parameters()),
        "fit_time_s": fit_time,
        "seed": seed,
        "device": device,
        "convergence": {k: v for k, v in model.fit_report_.to_dict().items() if k != "history"},
    }
    if family_of(spec.kind).supports("latent_dynamics"):
        eig, tau = model.time_constants()
        metrics["time_constants_s"] = tau
        metrics["eigenvalues_R"] = [[float(e.real), float(e.imag)] for e in eig]
    if cv_result is not None:
        metrics["cv"] = cv_result.to_dict()
    if heldout is not None:
        metrics.update(cosmoothing.cosmoothing_metrics(test.counts, rates, train.counts, heldout,
                                                       obs))
    # the field's goodness-of-fit scores on the same held-out trials (issue 28): fp-bps,
    # PSTH R², time rescaling, standard errors; keys already set above are kept
    from neurorec.workflows.evaluate import FIT_FP_DRAWS, evaluation_metrics

    if data.mask is not None:
        metrics["unequal"] = "mask"
        metrics["n_masked_test_bins"] = int((~test.mask).sum())
        metrics["evaluation_skipped"] = ("fp-bps, PSTH R², time rescaling and standard "
                                         "errors are not defined on masked (unequal) trials")
        warnings.warn(f"{recording.source}: data.unequal: mask: "
                      f"{metrics['evaluation_skipped']}; bits/spike and log-likelihood are "
                      "over the bins inside the trials", UserWarning, stacklevel=2)
        return FitResult(spec, model, data, train, test, rates, metrics, None)
    evaluation = evaluation_metrics(model, test, data, train, test_rates=rates, seed=seed,
                                    heldout=heldout, fp_draws=FIT_FP_DRAWS, fp_in_bin=False)
    for key, value in evaluation.metrics.items():
        metrics.setdefault(key, value)
    return FitResult(spec, model, data, train, test, rates, metrics, evaluation)
