"""The frozen, validated base of every spec and the registries of spec kinds.

A family registers its schema with :func:`register_model` / :func:`register_stimulus`; the
loader looks the ``kind`` up here, so adding a family needs no edit elsewhere.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TypeVar

from pydantic import BaseModel, ConfigDict

S = TypeVar("S", bound=type["Spec"])


class Spec(BaseModel):
    """Immutable, strictly validated description; never runs anything itself."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


MODEL_KINDS: dict[str, type[Spec]] = {}
STIMULUS_KINDS: dict[str, type[Spec]] = {}


def _register(table: dict[str, type[Spec]], kind: str) -> Callable[[S], S]:
    def decorate(cls: S) -> S:
        if kind in table:
            raise RuntimeError(f"spec kind {kind!r} registered twice")
        table[kind] = cls
        return cls

    return decorate


def register_model(kind: str) -> Callable[[S], S]:
    """Class decorator: make ``cls`` the schema of model specs with ``kind: <kind>``."""
    return _register(MODEL_KINDS, kind)


def register_stimulus(kind: str) -> Callable[[S], S]:
    """Class decorator: make ``cls`` the schema of stimulus protocols with ``kind: <kind>``."""
    return _register(STIMULUS_KINDS, kind)


#: Packages that register kinds when imported: the built-in families, then any third-party
#: package declaring an entry point in the group ``neurorec.families``. Imported by name on
#: first use, so this layer does not depend on the families it validates (a plugin hook, as
#: in pytest or Brian 2's devices).
FAMILY_PACKAGES = ("neurorec.families",)
_discovered = False


def discover_kinds() -> None:
    """Import every package that registers spec kinds (once)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for name in FAMILY_PACKAGES:
        importlib.import_module(name)
    for ep in entry_points(group="neurorec.families"):
        ep.load()


def model_kinds() -> dict[str, type[Spec]]:
    """``{kind: schema}`` of every registered model kind."""
    discover_kinds()
    return MODEL_KINDS


def stimulus_kinds() -> dict[str, type[Spec]]:
    """``{kind: schema}`` of every registered stimulus-protocol kind."""
    discover_kinds()
    return STIMULUS_KINDS
