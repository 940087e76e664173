"""Checkpoints: atomic writes, generator states restored so a resumed stream is identical."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurorec.core.errors import DataError
from neurorec.fit.checkpoint import (
    generator_states,
    load_checkpoint,
    restore_generators,
    save_checkpoint,
)


def test_resumed_generators_continue_the_same_stream(tmp_path):
    tg, ng = torch.Generator().manual_seed(3), np.random.default_rng(3)
    torch.randn(5, generator=tg), ng.normal(size=5)
    save_checkpoint(tmp_path / "c.pt", {"rng": generator_states(tg, ng), "w": torch.ones(2)})
    expected = torch.randn(4, generator=tg), ng.normal(size=4)
    tg2, ng2 = torch.Generator(), np.random.default_rng(0)
    state = load_checkpoint(tmp_path / "c.pt")
    restore_generators(state["rng"], tg2, ng2)
    assert torch.equal(torch.randn(4, generator=tg2), expected[0])
    np.testing.assert_array_equal(ng2.normal(size=4), expected[1])
    assert torch.equal(state["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary left behind


def test_truncated_checkpoint_is_a_data_error(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"w": torch.arange(1000.0)})
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "c.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="unreadable checkpoint"):
        load_checkpoint(tmp_path / "c.pt")
    with pytest.raises(DataError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
