"""Physical quantities in specs: ``"100 ms"``, ``"0.1 s"``, ``"40 Hz"``, ``"22.5 deg"``.

A bare number means the field's base unit, which every schema states in its description
(seconds, hertz, degrees, ...). A small table instead of pint or brian2 units: specs only need
a handful of units, and the spec layer must import in milliseconds and never pull a simulator in.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator

# dimension -> {unit symbol: factor to the base unit}
UNITS: dict[str, dict[str, float]] = {
    "time": {"s": 1.0, "ms": 1e-3, "us": 1e-6, "min": 60.0},
    "frequency": {"Hz": 1.0, "kHz": 1e3},
    "angle": {"deg": 1.0, "rad": 180.0 / math.pi},
    "speed": {"deg/s": 1.0},
    "spatial_frequency": {"cyc/deg": 1.0, "cpd": 1.0},
}
BASE_UNIT = {"time": "s", "frequency": "Hz", "angle": "deg", "speed": "deg/s",
             "spatial_frequency": "cyc/deg"}

_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z/]+)?\s*$")


def parse_quantity(value: object, dimension: str) -> float:
    """Convert ``value`` to the base unit of ``dimension``.

    Raises ``ValueError`` with the expected units when the unit is unknown or of another
    dimension (pydantic turns it into a field error).
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a {dimension} such as 1 {BASE_UNIT[dimension]}, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a {dimension} such as '1 {BASE_UNIT[dimension]}', "
                         f"got {type(value).__name__}")
    match = _QUANTITY.match(value)
    if match is None:
        raise ValueError(f"cannot read {value!r} as a {dimension} (number and unit, e.g. "
                         f"'10 {next(iter(UNITS[dimension]))}')")
    number, unit = float(match.group(1)), match.group(2)
    if unit is None:
        return number
    table = UNITS[dimension]
    if unit not in table:
        other = [dim for dim, units in UNITS.items() if unit in units]
        hint = f"'{unit}' is a {other[0]}, " if other else f"unknown unit '{unit}', "
        raise ValueError(f"{hint}expected a {dimension} in {', '.join(table)}")
    return number * table[unit]


def _quantity(dimension: str) -> BeforeValidator:
    return BeforeValidator(lambda v: parse_quantity(v, dimension))


Seconds = Annotated[float, _quantity("time")]
Hertz = Annotated[float, _quantity("frequency")]
Degrees = Annotated[float, _quantity("angle")]
DegreesPerSecond = Annotated[float, _quantity("speed")]
CyclesPerDegree = Annotated[float, _quantity("spatial_frequency")]
