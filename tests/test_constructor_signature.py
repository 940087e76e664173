"""The contract's ``constructor_signature`` check (:mod:`neurorec.families.checks`):
``__init__(spec, *, device, seed, ...)`` — it refuses a family whose settings can be passed
positionally, and every registered family's model (and declared session model) refuses a
positional device or seed."""

from __future__ import annotations

import pytest

from neurorec.families import registered
from neurorec.families.base import Family
from neurorec.families.checks import _Run, check_constructor_signature


class _Fake:
    """Stands in for a family model; only its signature is looked at."""

    def fit(self, data, *, progress: bool = True, run=None):
        return self


class _Positional(_Fake):
    def __init__(self, spec, device: str = "cpu", seed: int = 0):
        self.spec, self.device, self.seed = spec, device, seed


class _ManyOptions(_Fake):
    def __init__(self, spec, *, device: str = "cpu", seed: int = 0, heldout=None, chunk=8):
        self.spec, self.device, self.seed = spec, device, seed


def _init_option_before_star(self, spec, heldout=None, *, device: str = "cpu", seed: int = 0):
    self.spec, self.device, self.seed, self.heldout = spec, device, seed, heldout


class _NoSeed(_Fake):
    def __init__(self, spec, *, device: str = "cpu"):
        self.spec, self.device = spec, device


class _Good(_Fake):
    def __init__(self, spec, *, device: str = "cpu", seed: int = 0, heldout=None):
        self.spec, self.device, self.seed, self.heldout = spec, device, seed, heldout


def _check(model: type) -> None:
    check_constructor_signature(_Run(Family("fake", object, model)))


def test_check_refuses_positional_settings():
    with pytest.raises(AssertionError, match=r"\['device', 'seed'\] must be keyword-only"):
        _check(_Positional)
    option_first = type("_OptionFirst", (_Fake,), {"__init__": _init_option_before_star})
    with pytest.raises(AssertionError, match=r"\['heldout'\] must be keyword-only"):
        _check(option_first)
    with pytest.raises(AssertionError, match=r"takes no \['seed'\]"):
        _check(_NoSeed)
    _check(_Good)
    _check(_ManyOptions)


@pytest.mark.parametrize("kind", sorted(registered()))
def test_registered_models_refuse_positional_device_and_seed(kind):
    family = registered()[kind]
    with pytest.raises(TypeError, match="positional argument"):
        family.model(None, "cpu")
    with pytest.raises(TypeError, match="positional argument"):
        family.model(None, "cpu", 0)
    if "session_model" in family.commands:
        with pytest.raises(TypeError, match="positional argument"):
            family.command("session_model")(None, 0)
