"""Checkpoints that survive a kill at any instant.

A checkpoint is one ``torch.save`` file written to a temporary name and renamed over the
previous one, so a run killed mid-write (SIGKILL included) leaves the last complete checkpoint.
Every long loop (L-BFGS fits, Adam training) saves its full state — parameters, optimiser
state, step counter, random generator states — through these two functions, and resumes
bitwise on CPU from what :func:`load_checkpoint` returns.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurorec.core.errors import DataError

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (anything ``torch.save`` takes) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors on CPU)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no checkpoint to resume from")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a truncated or foreign file: say which, keep the traceback out
        raise DataError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err})") from None


def generator_states(torch_gen: torch.Generator | None = None,
                     numpy_gen: np.random.Generator | None = None) -> dict[str, Any]:
    """The states of the run's random generators, to store in a checkpoint."""
    state: dict[str, Any] = {}
    if torch_gen is not None:
        state["torch"] = torch_gen.get_state()
    if numpy_gen is not None:
        state["numpy"] = numpy_gen.bit_generator.state
    return state


def restore_generators(state: dict[str, Any], torch_gen: torch.Generator | None = None,
                       numpy_gen: np.random.Generator | None = None) -> None:
    """Put generators back in the states :func:`generator_states` recorded."""
    if torch_gen is not None:
        torch_gen.set_state(state["torch"])
    if numpy_gen is not None:
        numpy_gen.bit_generator.state = state["numpy"]
