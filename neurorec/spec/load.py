"""Read YAML specs, apply ``--set`` overrides and validate them against the registered schemas.

Every problem becomes one line ``PATH: field.path: message`` inside a :class:`SpecError`.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from neurorec.core.errors import SpecError
from neurorec.spec.base import Spec, model_kinds, stimulus_kinds


def _line_map(text: str) -> dict[tuple[str, ...], str]:
    """Where every key path of a YAML document is (``"line 7"``), for messages only."""
    lines: dict[tuple[str, ...], str] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        lines.setdefault(path, f"line {node.start_mark.line + 1}")
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*path, str(key.value))
                lines[sub] = f"line {key.start_mark.line + 1}"
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, str(i)))

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


def read_yaml(path: str | Path) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """Parse a YAML mapping; syntax errors become ``PATH: yaml: line N, column M: problem``."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(f"{path}: cannot read: {err}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError(f"{path}: yaml: {where}{err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: yaml: {err}") from None
    if not isinstance(raw, dict):
        got = "an empty file" if raw is None else f"a {type(raw).__name__}"
        raise SpecError(f"{path}: (top): expected a mapping with a 'kind' key, got {got}")
    return raw, _line_map(text)


def parse_overrides(overrides: Iterable[str]) -> list[tuple[list[str], Any]]:
    """``["fit.max_iter=50"]`` -> ``[(["fit", "max_iter"], 50)]``; values are read as YAML."""
    parsed = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
            raise SpecError(f"--set {item}: expected field.path=value")
        try:
            parsed.append((key.strip().split("."), yaml.safe_load(value) if value else ""))
        except yaml.YAMLError:
            raise SpecError(f"--set {item}: cannot read the value as YAML") from None
    return parsed


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``raw`` with each ``field.path=value`` set (intermediate mappings created)."""
    out = copy.deepcopy(raw)
    for keys, value in parse_overrides(overrides):
        node: Any = out
        for depth, key in enumerate(keys[:-1]):
            nxt = node.get(key) if isinstance(node, dict) else None
            if nxt is None:
                nxt = {}
                node[key] = nxt
            elif not isinstance(nxt, dict):
                raise SpecError(f"--set {'.'.join(keys)}={value}: "
                                f"{'.'.join(keys[:depth + 1])} is not a mapping")
            node = nxt
        node[keys[-1]] = value
    return out


def _reject_non_finite(raw: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """NaN/Inf never make sense in a spec; pydantic's range checks let NaN through."""
    if isinstance(raw, float) and not math.isfinite(raw):
        return [(path, f"must be a finite number, got {raw}")]
    if isinstance(raw, dict):
        return [p for k, v in raw.items() for p in _reject_non_finite(v, (*path, str(k)))]
    if isinstance(raw, list):
        return [p for i, v in enumerate(raw) for p in _reject_non_finite(v, (*path, str(i)))]
    return []


def _message(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required field is missing"
    msg = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    got = error.get("input")
    if kind not in ("value_error",) and not isinstance(got, dict | list) and got is not None:
        msg = f"{msg} (got {got!r})"
    return msg


#: pydantic names the member of a union it tried inside ``loc`` (``int``, ``tuple[int, int]``,
#: ``function-after[...]``): not a field of the spec, so not part of the path a user edits
_UNION_MEMBER = re.compile(r"^(int|float|str|bool|list|tuple|dict|none|literal|function-\w+)"
                           r"(\[.*\])?$|[\[\]]")


def _field_path(loc: tuple) -> tuple[str, ...]:
    """The spec field path of a pydantic error location, without union-member tags."""
    return tuple(str(p) for p in loc if not _UNION_MEMBER.search(str(p)))


def validate_spec(raw: dict[str, Any], source: str = "<spec>",
                  lines: dict[tuple[str, ...], str] | None = None,
                  kinds: dict[str, type[Spec]] | None = None) -> Spec:
    """Validate a parsed spec against the schema its ``kind`` names."""
    lines = lines or {}
    table = kinds if kinds is not None else {**model_kinds(), **stimulus_kinds()}
    kind = raw.get("kind")
    if kind not in table:
        known = ", ".join(sorted(table))
        what = "required field is missing" if kind is None else f"unknown kind {kind!r}"
        raise SpecError(f"{source}: kind: {what} (known: {known})")
    problems = _reject_non_finite(raw)
    try:
        spec = table[kind].model_validate(raw)
    except ValidationError as err:
        seen = {loc for loc, _ in problems}
        # a NaN/Inf already reported is not reported again by the section holding it
        # (e.g. window [inf, 1 s] would also fail "stop must be after start")
        for e in err.errors():
            loc = _field_path(e["loc"])
            # a union field fails once per member: report the field once, at its shortest path
            if any(s[:len(loc)] == loc or loc[:len(s)] == s for s in seen):
                continue
            seen.add(loc)
            problems.append((loc, _message(e)))
    else:
        if not problems:
            return spec
    out = []
    for loc, msg in problems:
        # validators of a whole section name the field in their message: keep the section path
        line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)
        where = f" ({line})" if line else ""
        out.append(f"{source}: {'.'.join(loc) or '(top)'}: {msg}{where}")
    raise SpecError(out)


def load_spec(path: str | Path, overrides: Sequence[str] = (),
              kinds: dict[str, type[Spec]] | None = None) -> Spec:
    """Read, override and validate one spec file."""
    raw, lines = read_yaml(path)
    raw = apply_overrides(raw, overrides)
    for keys, _ in parse_overrides(overrides):
        lines[tuple(keys)] = "from --set"
        for n in range(1, len(keys)):  # mappings the override created
            lines.setdefault(tuple(keys[:n]), "from --set")
    return validate_spec(raw, str(path), lines, kinds)


def load_model_spec(path: str | Path, overrides: Sequence[str] = ()) -> Spec:
    return load_spec(path, overrides, model_kinds())


def load_stimulus_spec(path: str | Path, overrides: Sequence[str] = ()) -> Spec:
    return load_spec(path, overrides, stimulus_kinds())


def dump_spec(spec: Spec) -> str:
    """The resolved spec as YAML (defaults filled in, units in base units)."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
