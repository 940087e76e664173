"""The GLM family's rows in the conformance checks: small fits on a real V1 session, and on
a small simulated open-field session (the session examples every session family shares)."""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np

from neurorec.core.metrics import bits_per_spike
from neurorec.data import bin_trials
from neurorec.data.recording import BinnedTrials, TrialLayout
from neurorec.data.session import BinnedSession
from neurorec.datasets import load
from neurorec.families.base import Example


@cache
def v1_small() -> tuple[BinnedTrials, BinnedTrials]:
    """V1 session 14, its first 6 units; (train, test) trials, 10 ms bins, seed 0."""
    data = bin_trials(load("v1_gratings:14"), 0.01, test_fraction=0.2, seed=0)
    data = dataclasses.replace(data, counts=data.counts[:, :, :6], unit_ids=data.unit_ids[:6])
    return data.subset(~data.is_test), data.subset(data.is_test)


def fewer_units(data: BinnedTrials) -> BinnedTrials:
    """``data`` without its last unit: wrong-shape data for a model fitted to all units."""
    return dataclasses.replace(data, counts=data.counts[:, :, :-1], unit_ids=data.unit_ids[:-1])


def sample_small(model, seed: int) -> np.ndarray:
    """(4, 20, 6) counts drawn for the first four held-out trials' conditions."""
    return model.sample(4, seed=seed, like=TrialLayout(v1_small()[1].condition, 20))


def binned_example(spec: dict, **fields) -> Example:
    """The Example of a spike-train family on :func:`v1_small` (bits/spike; chance 0: the
    null model of bits/spike, each unit's mean count, scores 0 by definition)."""
    return Example(spec=spec, data=v1_small, chance=0.0, wrong=fewer_units,
                   sample=sample_small, sample_shape=(4, 20, 6), **fields)


def brian2_drive(model) -> tuple[np.ndarray, np.ndarray]:
    """The one-step-ahead drive on three recorded held-out trials: log of the torch model's
    predicted rate (exp link) vs the Brian 2 network's drive."""
    from neurorec.families.glm.brian2 import drive_brian2

    test = v1_small()[1].subset(np.arange(len(v1_small()[1].condition)) < 3)
    return np.log(model.predict_rate(test)), drive_brian2(model, test.counts, test.condition)


_COMMON = {"data": {"bin_size": "10 ms"}, "stimulus": {"n_basis": 6},
           "history": {"n_basis": 3, "duration": "50 ms"}, "penalty": {"l2": 1e-4},
           "fit": {"max_iter": 8, "early_stopping": False}}


def glm_example() -> Example:
    return binned_example({"kind": "glm", **_COMMON,
                           "coupling": {"enabled": True, "n_basis": 2, "duration": "30 ms"}},
                          brian2=brian2_drive, brian2_atol=1e-10)


def rglm_example() -> Example:
    return binned_example({"kind": "rglm", **_COMMON, "recurrent": {"dim": 3}},
                          brian2=brian2_drive, brian2_atol=1e-10)


# ------------------------------------------------------------------ session examples
@cache
def open_field_small() -> BinnedSession:
    """The simulated open-field session (:func:`~neurorec.datasets.open_field.
    simulate_open_field`): 8 cells, 60 s of the Sargolini trajectory, 10 ms bins, seed 11;
    its default split (five test blocks, 20 % of the bins, with guard bands) marks the test
    bins. 6000 bins: 4710 train, 1200 test."""
    from neurorec.datasets.open_field import simulate_open_field

    return simulate_open_field(n_units=8, duration_s=60.0, trajectory="sargolini", seed=11,
                               start_s=0.0)


def open_field_pair() -> tuple[BinnedSession, BinnedSession]:
    """``(train, test)``: the same session twice (its split marks the test bins)."""
    session = open_field_small()
    return session, session


def training_mean_bits(session: BinnedSession) -> float:
    """Bits/spike on the ``test`` bins of predicting each unit's mean count over the
    ``train`` bins: the trivial predictor a session model must beat (below 0: the NLB
    null is the test bins' own mean)."""
    counts = session.counts
    test, train = session.mask("test"), session.mask("train")
    null = np.broadcast_to(counts[train].mean(axis=0), counts[test].shape)
    return float(bits_per_spike(counts[test][None], null[None]))


def session_example(spec: dict) -> Example:
    """The session Example of a spike-train family: ``spec`` (``data.mode: session`` is set
    here) on :func:`open_field_small`."""
    data = {**spec.get("data", {}), "mode": "session", "bin_size": 0.01}
    return Example(spec={**spec, "data": data}, data=open_field_pair,
                   chance=training_mean_bits(open_field_small()))


#: small covariate bases of the session GLM / R-GLM examples (position, head direction,
#: running speed; models/session_glm.yaml's terms at a fraction of their size)
_SESSION_GLM = {
    "stimulus": {"enabled": False},
    "covariates": [
        {"name": "position", "basis": "tensor_bspline", "n_basis": [4, 4], "ridge": 1e-4},
        {"name": "head_direction", "basis": "cyclic_bspline", "n_basis": 4, "ridge": 1e-4},
        {"name": "speed", "basis": "bspline", "n_basis": 4, "range": [0.0, 0.6],
         "ridge": 1e-4}],
    "history": {"enabled": True, "n_basis": 3, "duration": 0.05}}


def glm_session_example() -> Example:
    return session_example({"kind": "glm", **_SESSION_GLM})


def rglm_session_example() -> Example:
    return session_example({"kind": "rglm", **_SESSION_GLM,
                            "recurrent": {"dim": 2, "alternations": 0},
                            "fit": {"max_iter": 5, "dtype": "float64"}})
