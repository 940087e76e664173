"""Model families, one folder each; every folder registers its kinds when imported.

:func:`registered` imports every subpackage of this folder (so adding a family is adding a
folder) and returns ``{kind: Family}``.
"""

from __future__ import annotations

import importlib
import pkgutil

from neurorec.families.base import (
    CAPABILITIES,
    FAMILIES,
    MODELS,
    Family,
    Model,
    model_for,
    register_family,
)


def _discover() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.ispkg:
            importlib.import_module(f"{__name__}.{info.name}")


_discover()


def registered() -> dict[str, Family]:
    """``{kind: Family}`` for every kind that ``neurorec validate`` accepts as a model spec."""
    return dict(FAMILIES)


def kinds_supporting(capability: str) -> list[str]:
    """The registered kinds that declare ``capability``, sorted."""
    return sorted(k for k, f in FAMILIES.items() if f.supports(capability))


def family_of(kind: str) -> Family:
    """The family registered for ``kind``; KeyError naming the known kinds otherwise."""
    try:
        return FAMILIES[kind]
    except KeyError:
        raise KeyError(f"no family registered for kind {kind!r} "
                       f"(known: {', '.join(sorted(FAMILIES))})") from None


from neurorec.families.ctrnn_obs import CTRNNObs  # noqa: E402  (convenience re-exports)
from neurorec.families.glm import GLM, RGLM  # noqa: E402

__all__ = ["CAPABILITIES", "FAMILIES", "GLM", "MODELS", "RGLM", "CTRNNObs", "Family", "Model",
           "family_of", "kinds_supporting", "model_for", "register_family", "registered"]
