"""The model contract, checked on every registered family by the library's own checks
(:mod:`neurorec.families.checks`): generated from the registry, each id ``<kind>-<check>``."""

from __future__ import annotations

from neurorec.families import registered
from neurorec.families.checks import parametrize_with_family_checks
from neurorec.spec.base import model_kinds

FAMILIES = registered()


def test_every_validated_kind_is_registered():
    assert set(model_kinds()) == set(FAMILIES)


@parametrize_with_family_checks(FAMILIES[k] for k in sorted(FAMILIES))
def test_family(check):
    check()
