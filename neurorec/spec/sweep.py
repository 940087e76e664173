"""The schema of a sweep file (``sweeps/*.yaml``): one model spec fitted over a grid or a list
of ``--set`` overrides × seeds × datasets.

```yaml
kind: sweep
name: glm_v1_sessions
spec: ../models/glm_stimulus_only.yaml   # relative to this file
set: [fit.max_iter=200]                  # applied to every run, before the grid / list
grid: {penalty.l2: [0, 1.0e-3]}          # cartesian product (or ``list:`` of mappings)
seeds: [0, 1]
datasets: [v1_gratings:7, v1_gratings:23]
```

Loaded by :func:`load_sweep_spec` with the helpers of :mod:`neurorec.spec.load`, so problems
come out as ``PATH: field.path: message``. A sweep is a description only; running it is
:mod:`neurorec.workflows.sweep`'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from neurorec.core.errors import SpecError
from neurorec.spec.base import Spec
from neurorec.spec.load import load_spec, parse_overrides

Scalar = bool | int | float | str | None
# a value a --set path takes in one run: a YAML scalar or a flat list of scalars
Value = Scalar | list[Scalar]


def _check_path(path: str) -> str:
    parts = path.split(".")
    if not path or any(not p or p != p.strip() or "=" in p for p in parts):
        raise ValueError(f"{path!r}: expected a field path such as fit.max_iter")
    return path


class SweepSpec(Spec):
    """A sweep: every combination of (dataset, seed, point) is one ``neurorec fit`` run."""

    kind: Literal["sweep"] = "sweep"
    name: str = Field("sweep", min_length=1, max_length=200)
    description: str = ""
    spec: str = Field(..., min_length=1,
                      description="model spec file, relative to the sweep file's folder")
    set: tuple[str, ...] = Field((), description="field.path=value overrides for every run")
    grid: dict[str, list[Value]] | None = Field(
        None, description="field.path -> values; runs cover the cartesian product")
    points: list[dict[str, Value]] | None = Field(
        None, alias="list", description="explicit points, each a mapping field.path -> value")
    seeds: tuple[int, ...] = Field((0,), min_length=1, description="seeds, as `fit --seed`")
    datasets: tuple[str, ...] = Field(..., min_length=1,
                                      description="bundled dataset names or NWB paths")
    device: str = Field("cpu", description="torch device for every run: cpu or cuda")
    retries: int = Field(1, ge=0, le=5, description="re-submissions of a failed run")

    @field_validator("set")
    @classmethod
    def _set_items(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        try:
            parse_overrides(value)
        except SpecError as err:
            raise ValueError("; ".join(err.lines)) from None
        return value

    @field_validator("grid")
    @classmethod
    def _grid(cls, value: dict[str, list[Value]] | None) -> dict[str, list[Value]] | None:
        for path, values in (value or {}).items():
            _check_path(path)
            if not values:
                raise ValueError(f"{path}: needs at least one value")
        return value

    @field_validator("points")
    @classmethod
    def _points(cls, value: list[dict[str, Value]] | None) -> list[dict[str, Value]] | None:
        if value is not None and not value:
            raise ValueError("needs at least one point (or leave it out)")
        for point in value or []:
            for path in point:
                _check_path(path)
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(s < 0 for s in value) or len(set(value)) != len(value):
            raise ValueError(f"seeds must be distinct and ≥ 0, got {list(value)}")
        return value

    @field_validator("datasets")
    @classmethod
    def _datasets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"datasets must be distinct, got {list(value)}")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value not in ("cpu", "cuda") and not value.startswith("cuda:"):
            raise ValueError(f"expected cpu, cuda or cuda:N, got {value!r}")
        return value

    @model_validator(mode="after")
    def _grid_or_list(self) -> SweepSpec:
        if self.grid is not None and self.points is not None:
            raise ValueError("give either grid or list, not both")
        return self

    def point_paths(self) -> list[str]:
        """The swept field paths, in the order they first appear (the table's columns)."""
        if self.grid is not None:
            return list(self.grid)
        seen: dict[str, None] = {}
        for point in self.points or []:
            seen.update(dict.fromkeys(point))
        return list(seen)


SWEEP_KINDS: dict[str, type[Spec]] = {"sweep": SweepSpec}


def load_sweep_spec(path: str | Path, overrides: Sequence[str] = ()) -> SweepSpec:
    """Read and validate a sweep file; problems raise one :class:`SpecError` line each."""
    spec = load_spec(path, overrides, SWEEP_KINDS)
    assert isinstance(spec, SweepSpec)
    return spec


def format_value(value: Any) -> str:
    """A value as ``--set`` reads it back (YAML flow style): ``0.001``, ``[direction]``."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10**9)
    return text.removesuffix("\n").removesuffix("...").strip()
