"""The bundled datasets by name: what they are and how to load them (``"name[:choice]"``).

Trials data: ``load(spec) -> Recording``. Continuous sessions (``data.mode: session``):
``load_session(source, bin_size=0.01, *, series=None, position="position", smooth_s=0.1,
split_column="split", test_fraction=0.2, test_blocks=5, gap_s=None, seed=0)
-> BinnedSession`` takes an NWB path or a bundled session name (``open_field``,
``open_field:tanni``); ``session_for_spec(source, data_spec, gap_s=None, seed=0)`` reads
those arguments from a spec's ``data`` section.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from neurorec.core.errors import DataError
from neurorec.data.recording import Recording
from neurorec.data.session import BinnedSession
from neurorec.datasets import grasshopper, locust_al, open_field, v1_gratings


@dataclass(frozen=True)
class DatasetInfo:
    """One bundled dataset.

    Attributes:
        name: what ``load`` accepts before the optional ``:choice``.
        description: one line on what was recorded.
        size_bytes: size of its files on disk.
        licence: licence of the data files.
        citation: what to cite when showing results.
        sessions: number of separately loadable sessions (``name:first`` ..
            ``name:first + sessions - 1``).
        first: number of the first session.
    """

    name: str
    description: str
    size_bytes: int
    licence: str
    citation: str
    sessions: int
    first: int = 0


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def list_datasets() -> list[DatasetInfo]:
    """The bundled datasets, sizes measured from the files on disk."""
    return [
        DatasetInfo(
            name=v1_gratings.NAME,
            description=(
                "Macaque V1, drifting gratings in 16 directions, 27 sessions of 14-38 "
                "simultaneously recorded single units (tetrodes), 10 ms bins"
            ),
            size_bytes=_size(v1_gratings.DIR),
            licence=v1_gratings.LICENCE,
            citation=v1_gratings.CITATION,
            sessions=v1_gratings.N_SESSIONS,
        ),
        DatasetInfo(
            name=locust_al.NAME,
            description=(
                "Locust antennal lobe, 10 units on one tetrode, odour puffs (C3H, citral, "
                "mint, octanol, vanilla) and spontaneous activity, 359 trials of 28.8 s"
            ),
            size_bytes=_size(locust_al.DIR),
            licence=locust_al.LICENCE,
            citation=locust_al.CITATION,
            sessions=1,
        ),
        DatasetInfo(
            name=grasshopper.NAME,
            description=(
                "Grasshopper auditory receptor, one unit, 10 s of a Gaussian sound-envelope "
                "stimulus sampled at 20 kHz with its spike train (2 recordings, from nitime); "
                "10 trials of 1 s"
            ),
            size_bytes=grasshopper.size_bytes(),
            licence=grasshopper.LICENCE,
            citation=grasshopper.CITATION,
            sessions=len(grasshopper.RECORDINGS),
            first=grasshopper.RECORDINGS[0],
        ),
        DatasetInfo(
            name=open_field.NAME,
            description=open_field.DESCRIPTION + " (data.mode: session; 'open_field' is "
            "Sargolini's 600 s with 120 cells, 'open_field:tanni' 30 min of Tanni's path)",
            size_bytes=_trajectory_bytes(),
            licence=open_field.LICENCE,
            citation=open_field.CITATION,
            sessions=1,
        ),
    ]


def _trajectory_bytes() -> int:
    """Size of the trajectory files in the installed ratinabox package (0 when absent)."""
    try:
        return sum(open_field.trajectory_path(n).stat().st_size for n in open_field.TRAJECTORIES)
    except DataError:
        return 0


#: the bundled sessions by choice: simulate_open_field arguments
OPEN_FIELD_SESSIONS = {
    "": {"trajectory": "sargolini", "duration_s": 600.0, "n_units": 120, "seed": 0},
    "sargolini": {"trajectory": "sargolini", "duration_s": 600.0, "n_units": 120, "seed": 0},
    "tanni": {"trajectory": "tanni", "duration_s": 1800.0, "n_units": 120, "seed": 0},
}


def load_session(source: str | os.PathLike, bin_size: float = 0.01, *,
                 series: tuple[str, ...] | None = None, position: str | None = "position",
                 smooth_s: float = 0.1, split_column: str = "split",
                 test_fraction: float = 0.2, test_blocks: int = 5,
                 gap_s: float | None = None, seed: int = 0) -> BinnedSession:
    """A continuous session from an NWB file (``*.nwb``, read by
    :func:`neurorec.data.sessions_io.load_session_nwb`) or a bundled session name:
    ``open_field`` (= ``open_field:sargolini``, 600 s) or ``open_field:tanni`` (30 min),
    120 SIMULATED cells, simulated at ``bin_size`` with the data seed ``seed``.

    The bundled session's split is the default blocked one (``test_fraction`` in
    ``test_blocks`` blocks, guard bands of ``gap_s``)."""
    from pathlib import Path

    from neurorec.data.sessions_io import load_session_nwb

    text = str(source)
    path = Path(text)
    if path.suffix.lower() == ".nwb" or path.exists():
        if not path.exists():
            raise DataError(f"{text}: file: not found")
        return load_session_nwb(path, bin_size, series, position, smooth_s, split_column,
                                test_fraction, test_blocks, gap_s)
    name, _, choice = text.partition(":")
    name, choice = name.strip(), choice.strip()
    if name == open_field.NAME:
        if choice not in OPEN_FIELD_SESSIONS:
            raise DataError(f"{text}: session: expected one of "
                            f"{[k for k in OPEN_FIELD_SESSIONS if k]}, got {choice!r}")
        kw = dict(OPEN_FIELD_SESSIONS[choice])
        kw["seed"] = int(seed)
        return open_field.simulate_open_field(bin_size=bin_size, test_fraction=test_fraction,
                                              test_blocks=test_blocks, gap_s=gap_s, **kw)
    if name in (v1_gratings.NAME, locust_al.NAME, grasshopper.NAME):
        raise DataError(f"{text}: data.mode: {name!r} is trials data; use data.mode: trials")
    raise DataError(f"{text}: dataset: unknown session {name!r}; give an NWB file or "
                    f"{open_field.NAME!r}")


def session_for_spec(source: str | os.PathLike, data_spec, gap_s: float | None = None,
                     seed: int = 0) -> BinnedSession:
    """:func:`load_session` with the arguments of a spec's ``data`` section (``bin_size``,
    ``series``, ``position``, ``smooth``, ``split_column``, ``test_fraction``,
    ``test_blocks``, ``gap``); ``gap_s`` (e.g. :func:`neurorec.data.session_splits.
    guard_gap_s` of the whole spec) wins over ``data.gap`` when given."""
    d = data_spec
    gap = gap_s if gap_s is not None else getattr(d, "gap", None)
    return load_session(source, d.bin_size, series=d.series, position=d.position,
                        smooth_s=d.smooth, split_column=d.split_column,
                        test_fraction=d.test_fraction, test_blocks=d.test_blocks,
                        gap_s=gap, seed=seed)


def load(spec: str) -> Recording:
    """Load a bundled dataset by name.

    Args:
        spec: ``"v1_gratings"`` (session 0), ``"v1_gratings:7"`` (session 7 of 0..26),
            ``"locust_al"`` (all groups), ``"locust_al:C3H"`` (one odour's groups) or
            ``"locust_al:C3H_2"`` (one group; several joined by commas).

    Returns:
        The ``Recording``, validated.
    """
    name, sep, choice = str(spec).partition(":")
    name, choice = name.strip(), choice.strip()
    if name == v1_gratings.NAME:
        if not sep:
            return v1_gratings.load_v1_gratings(0)
        if not choice.isdigit() or not 0 <= int(choice) < v1_gratings.N_SESSIONS:
            raise DataError(
                f"{spec}: session: expected an integer in 0..{v1_gratings.N_SESSIONS - 1}, "
                f"got {choice!r}"
            )
        return v1_gratings.load_v1_gratings(int(choice))
    if name == locust_al.NAME:
        if not sep:
            return locust_al.load_locust_al()
        return locust_al.load_locust_al(
            [c.strip() for c in choice.split(",") if c.strip()] or [choice]
        )
    if name == open_field.NAME:
        raise DataError(f"{spec}: data.mode: {name!r} is a continuous session; set "
                        "data.mode: session")
    if name == grasshopper.NAME:
        if sep and choice not in ("1", "2"):
            raise DataError(f"{spec}: recording: expected 1 or 2, got {choice!r}")
        return grasshopper.load_grasshopper(int(choice) if sep else 1)
    names = [d.name for d in list_datasets()]
    raise DataError(
        f"{spec}: dataset: unknown name {name!r}; choose one of {names} "
        "(e.g. 'v1_gratings:3', 'locust_al:C3H')"
    )
