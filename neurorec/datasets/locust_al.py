"""Locust antennal lobe, 10 units on tetrode B, experiment 2001-02-14 (C. Pouzat, GPL-3).

The bundled files ``files/locust_al/locust20010214_spike_trains/locust20010214_<GROUP>_tetB_u<K>
.txt`` (K = 1..10) are used unmodified: one spike a line, as a **sample index at 15 kHz**
(not seconds, as the upstream README says; about 7 % of values carry a fractional part).
Each group (an HDF5 group of the original recording) starts at time 0.

What the data holds (checked on the files, 895,756 spikes in all):

* Trials are 30.000 s apart (450,000 samples): every spike of every group falls between
  0.003 s and 28.764 s after a multiple of 30 s, at a flat rate up to an abrupt end, then
  ~1.24 s with no spike. Trial ``k`` of a group is therefore taken as ``[30 k, 30 k +
  28.77]`` s of that group's clock (``TRIAL_S`` = 28.77 s, the recorded part of the slot).
* Groups do not all hold 25 trials: slots per group are 25 (C3H_1, C3H_2, Citral, Mint_1,
  Octanol_1, Vanilla_1), 30 (C3H_3, C3H_5, C3H_6, Spontaneous_1..4) and 10 (C3H_4). Some slots
  hold no spike from any of the 10 units, which at ~80 spikes/s for the population means no
  trial was recorded there: C3H_5 slots 20-22, Octanol_1 slots 9-11, Spontaneous_1 slots 10 and
  20, Spontaneous_2 slots 22-24. Only slots with spikes become trials: 359 trials in all,
  ``trial_in_group`` keeping the slot number so the missing ones stay visible.
* Spontaneous groups have the same 30 s slot structure; their trials get ``odour="none"``.

Timeline: groups follow ``GROUPS`` order (C3H_1..6, Citral, Mint_1, Octanol_1, Vanilla_1,
Spontaneous_1..4); a group's clock starts one empty 30 s slot after the previous group's last
slot ends. With ``groups`` a subset, only those are laid out, in the same order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from neurorec.core.errors import DataError
from neurorec.data.recording import Recording
from neurorec.data.validation import validate_recording

NAME = "locust_al"
DIR = Path(__file__).parent / "files" / "locust_al"
SPIKE_DIR = DIR / "locust20010214_spike_trains"
SAMPLING_HZ = 15_000.0
SLOT_S = 30.0  # trial period (450,000 samples)
TRIAL_S = 28.77  # recorded part of each slot; last spike of any trial at 28.764 s
N_UNITS = 10
GROUPS = (
    "C3H_1", "C3H_2", "C3H_3", "C3H_4", "C3H_5", "C3H_6", "Citral", "Mint_1", "Octanol_1",
    "Vanilla_1", "Spontaneous_1", "Spontaneous_2", "Spontaneous_3", "Spontaneous_4",
)  # fmt: skip
LICENCE = "GPL-3.0 (see LICENSE; christophe-pouzat/zenodo-locust-datasets-analysis)"
CITATION = (
    "Pouzat C, Mazor O, Laurent G (2002). Using noise signature to optimize spike-sorting and "
    "to assess neuronal classification quality. J Neurosci Methods 122:43-57. Data: Pouzat C "
    "(2015), zenodo.org/record/21589; spike trains from "
    "github.com/christophe-pouzat/zenodo-locust-datasets-analysis."
)


def odour_of(group: str) -> str:
    """Odour of a group: ``"C3H_4"`` → ``"C3H"``, ``"Spontaneous_2"`` → ``"none"``."""
    base = re.sub(r"_\d+$", "", group)
    return "none" if base == "Spontaneous" else base


def _resolve_groups(groups: Sequence[str] | None) -> list[str]:
    """Group names (canonical order) from group names or odour names, case-insensitive."""
    if groups is None:
        return list(GROUPS)
    if isinstance(groups, str):
        groups = [groups]
    chosen: set[str] = set()
    bad = []
    for g in groups:
        key = str(g).lower()
        hits = [
            x for x in GROUPS
            if key in (x.lower(), odour_of(x).lower(), re.sub(r"_\d+$", "", x).lower())
        ]  # fmt: skip
        if hits:
            chosen.update(hits)
        else:
            bad.append(g)
    if bad or not chosen:
        odours = sorted({re.sub(r"_\d+$", "", x) for x in GROUPS})
        raise DataError(
            f"{NAME}: groups: unknown {bad or list(groups)}; choose groups {list(GROUPS)} "
            f"or odours {odours}"
        )
    return [g for g in GROUPS if g in chosen]


def _read_train(path: Path) -> np.ndarray:
    """One spike-train file, as sample indices (float)."""
    if not path.is_file():
        raise DataError(f"{path}: file: not found (the locust dataset ships with neurorec)")
    try:
        values = np.array(path.read_text().split(), dtype=float)
    except ValueError as exc:
        raise DataError(f"{path}: spike times: not one number a line ({exc})") from exc
    return values


def load_locust_al(groups: Sequence[str] | None = None) -> Recording:
    """The locust recording (all or some groups) as one :class:`Recording`.

    Args:
        groups: group names (``"C3H_1"``) or odour names (``"C3H"`` = C3H_1..6, ``"Mint"``,
            ``"Spontaneous"``/``"none"``), case-insensitive; None for all 14 groups.

    Returns:
        A ``Recording`` with 10 units ``tetB_u1..tetB_u10`` (spike times in seconds), one
        trial per recorded 30 s slot (see the module docstring): columns ``start_time``,
        ``stop_time`` (s), ``odour`` (str), ``group`` (str), ``trial_in_group`` (slot index
        in the group); ``stimulus_columns == ("odour",)``. Metadata ``group_offset_s`` gives
        where each group's clock starts on the common timeline.
    """
    names = _resolve_groups(groups)
    per_unit: list[list[np.ndarray]] = [[] for _ in range(N_UNITS)]
    rows = []
    offsets: dict[str, float] = {}
    offset = 0.0
    for g in names:
        trains = [
            _read_train(SPIKE_DIR / f"locust20010214_{g}_tetB_u{k}.txt")
            for k in range(1, N_UNITS + 1)
        ]
        t_all = np.concatenate(trains) / SAMPLING_HZ
        if t_all.size == 0:
            raise DataError(f"{SPIKE_DIR}: {g}: no spikes in any unit")
        slot = np.floor(t_all / SLOT_S).astype(np.int64)
        occupied = np.unique(slot)
        offsets[g] = offset
        for k in occupied:
            rows.append(
                {
                    "start_time": offset + k * SLOT_S,
                    "stop_time": offset + k * SLOT_S + TRIAL_S,
                    "odour": odour_of(g),
                    "group": g,
                    "trial_in_group": int(k),
                }
            )
        for u, tr in enumerate(trains):
            per_unit[u].append(offset + tr / SAMPLING_HZ)
        offset += (int(occupied.max()) + 2) * SLOT_S  # one empty slot between groups
    spike_times = [np.concatenate(parts) for parts in per_unit]
    rec = Recording(
        spike_times=spike_times,
        unit_ids=np.array([f"tetB_u{k}" for k in range(1, N_UNITS + 1)]),
        trials=pd.DataFrame(rows),
        stimulus_columns=("odour",),
        source=NAME if groups is None else f"{NAME}:{','.join(names)}",
        metadata={
            "dataset": NAME,
            "subject": "locust, experiment 2001-02-14, antennal lobe, tetrode B",
            "date": "2001-02-14",
            "groups": names,
            "group_offset_s": offsets,
            "sampling_hz": SAMPLING_HZ,
            "licence": LICENCE,
            "citation": CITATION,
        },
    )
    validate_recording(rec)
    return rec
