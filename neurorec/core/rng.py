"""Torch's global generator, used without touching the caller's state."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def forked_global_rng(seed: int) -> Iterator[None]:
    """Inside the block torch's global generator (CPU and every CUDA device) is a fork seeded
    with ``seed``, for code that draws from it (e.g. torch's default layer initialisation);
    the caller's state is given back afterwards."""
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


__all__ = ["forked_global_rng"]
