"""Scale: the Dask units split (bit for bit) and the memory preflight (issue 29)."""

from __future__ import annotations

import numpy as np
import pytest

from neurorec.families import model_for
from neurorec.fit.distributed import UnitSplit, open_client, unit_chunks, unit_split
from neurorec.spec import load_model_spec
from neurorec.workflows.pipeline import bin_for_spec, load_recording


@pytest.fixture(scope="module")
def v1_train():
    spec = load_model_spec("models/glm_v1.yaml", [])
    data = bin_for_spec(spec, load_recording("v1_gratings:14"), 0)
    return spec, data.subset(~data.is_test)


def _fit(spec, train, split):
    model = model_for(spec, seed=0)
    with unit_split(split):
        model.fit(train, progress=False)
    return model.params_


def test_unit_chunks_cover_units_once():
    chunks = unit_chunks(17, 5)
    assert [(c.start, c.stop) for c in chunks] == [(0, 5), (5, 10), (10, 15), (15, 17)]
    with pytest.raises(ValueError):
        unit_chunks(3, 0)


def test_dask_two_workers_bit_identical_to_local(v1_train):
    """GLM (stimulus + history + coupling, batched Newton) on a 16-unit V1 session: the
    units split over 2 LocalCluster workers gives the same bits as the same split run
    in-process, and the split fit agrees with the unsplit one to rounding."""
    spec, train = v1_train
    local = _fit(spec, train, UnitSplit(None, units_per_task=8, threads=1))
    with open_client(workers=2) as client:
        split = UnitSplit(client, units_per_task=8, threads=1)
        remote = _fit(spec, train, split)
        assert split.tasks_run == [2]
        assert len(client.scheduler_info()["workers"]) == 2
    assert local.keys() == remote.keys()
    for k in local:
        assert np.array_equal(local[k], remote[k]), k
    whole = _fit(spec, train, None)
    for k in whole:
        scale = max(1.0, float(np.abs(whole[k]).max()))
        assert np.abs(whole[k] - local[k]).max() <= 1e-5 * scale, k
