"""The bundled datasets by name: what they are and how to load them (``"name[:choice]"``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from neurorec.core.errors import DataError
from neurorec.data.recording import Recording
from neurorec.datasets import grasshopper, locust_al, v1_gratings


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
    ]


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
    if name == grasshopper.NAME:
        if sep and choice not in ("1", "2"):
            raise DataError(f"{spec}: recording: expected 1 or 2, got {choice!r}")
        return grasshopper.load_grasshopper(int(choice) if sep else 1)
    names = [d.name for d in list_datasets()]
    raise DataError(
        f"{spec}: dataset: unknown name {name!r}; choose one of {names} "
        "(e.g. 'v1_gratings:3', 'locust_al:C3H')"
    )
