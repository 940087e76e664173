"""Shared fixtures: real V1 sessions binned once per test session."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

import neurorec.families  # noqa: F401  (registers every kind)
from neurorec.data import bin_trials
from neurorec.data.recording import BinnedTrials
from neurorec.datasets import load

# one thread: small per-step matmuls (R-GLM recurrence) slow down badly when two
# OpenMP threads contend with anything else for two cores
torch.set_num_threads(1)
# the same for numpy's BLAS (statsmodels' SVDs and IRLS): spinning OpenBLAS threads on a busy
# 2-core machine turned a 20 s test into minutes
threadpool_limits(1)


@pytest.fixture(scope="session")
def v1_session0() -> BinnedTrials:
    """V1 session 0 (38 units, 208 trials of 90 × 10 ms bins), 20 % test split, seed 0."""
    return bin_trials(load("v1_gratings:0"), 0.01, test_fraction=0.2, seed=0)


def select_units(data: BinnedTrials, units: np.ndarray) -> BinnedTrials:
    """The same trials restricted to ``units``."""
    return dataclasses.replace(data, counts=data.counts[:, :, units], unit_ids=data.unit_ids[units])


@pytest.fixture(scope="session")
def v1_session3() -> BinnedTrials:
    """V1 session 3 (29 units, 672 trials of 90 × 10 ms bins), 20 % test split, seed 0."""
    return bin_trials(load("v1_gratings:3"), 0.01, test_fraction=0.2, seed=0)


@pytest.fixture(scope="session")
def small_nwb(tmp_path_factory):
    """V1 session 0 with 4 units (0, 3, 21, 29) as an NWB file, for quick CLI fits."""
    from neurorec.data import write_nwb

    rec = load("v1_gratings:0")
    keep = [0, 3, 21, 29]
    rec = dataclasses.replace(rec, spike_times=[rec.spike_times[i] for i in keep],
                              unit_ids=rec.unit_ids[keep])
    return write_nwb(rec, tmp_path_factory.mktemp("nwb") / "small.nwb")
