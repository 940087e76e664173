"""The conformance suite: one contract, checked on every registered family.

Generated from :func:`neurorec.families.registered` (never a hand-written list): each kind's
name is in the test ids, and a family added as a folder is checked without editing this file.
Each family supplies small real data through its :class:`~neurorec.families.base.Example`.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from neurorec.core.errors import NotFittedError
from neurorec.families import CAPABILITIES, registered
from neurorec.families.base import SCORES, Estimator
from neurorec.spec.base import model_kinds

FAMILIES = registered()
KINDS = sorted(FAMILIES)
_fitted: dict[str, tuple[Estimator, float]] = {}


def _example(kind: str):
    family = FAMILIES[kind]
    if family.example is None:  # an explicit, visible gap: listed in the run as xfail
        pytest.xfail(f"{kind}: the family registers no conformance Example yet")
    return family.example()


def _fit(kind: str) -> tuple[Estimator, float]:
    """The family's example model, fitted once per test session, and its score."""
    if kind not in _fitted:
        ex = _example(kind)
        model = ex.make()
        returned = ex.fit(model)
        assert returned is model, f"{kind}: fit must return self"
        _fitted[kind] = (model, ex.score(model))
    return _fitted[kind]


def test_every_validated_kind_is_registered():
    assert set(model_kinds()) == set(FAMILIES)


@pytest.mark.parametrize("kind", KINDS)
def test_family_lives_in_its_folder(kind):
    family = FAMILIES[kind]
    folder = family.spec.__module__.split(".")[2]
    assert family.spec.__module__.startswith(f"neurorec.families.{folder}.")
    assert family.model.__module__.startswith(f"neurorec.families.{folder}.")
    assert family.model.kind == kind
    if family.example is None and not issubclass(family.model, Estimator):
        pytest.xfail(f"{kind}: model does not implement Estimator yet")
    assert issubclass(family.model, Estimator), f"{kind}: model does not implement Estimator"
    assert family.capabilities <= CAPABILITIES and family.score in SCORES


@pytest.mark.parametrize("kind", [k for k in KINDS if FAMILIES[k].supports("brian2")])
def test_brian2_capability_has_a_backend(kind):
    backend = importlib.import_module(f"{FAMILIES[kind].package}.brian2")
    assert callable(getattr(backend, "simulate_brian2", None))


@pytest.mark.parametrize("kind", KINDS)
def test_not_fitted_error_before_fit(kind):
    ex = _example(kind)
    with pytest.raises(NotFittedError, match="call fit"):
        ex.score(ex.make())


@pytest.mark.parametrize("kind", KINDS)
def test_fit_returns_self_and_learned_attributes_end_in_underscore(kind):
    ex = _example(kind)
    before = set(vars(ex.make()))
    model, score = _fit(kind)
    new = {k for k in set(vars(model)) - before if not k.startswith("_")}
    assert new, f"{kind}: fit learned nothing"
    assert all(k.endswith("_") for k in new), sorted(k for k in new if not k.endswith("_"))
    assert np.isfinite(score)


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(kind, tmp_path):
    model, score = _fit(kind)
    ex = _example(kind)
    model.save(tmp_path / "saved")
    loaded = type(model).load(tmp_path / "saved")
    assert type(loaded) is type(model)
    assert ex.score(loaded) == score  # identical on CPU, not merely close
    if ex.simulate is not None:
        np.testing.assert_array_equal(ex.simulate(loaded, 3), ex.simulate(model, 3))


@pytest.mark.parametrize("kind", KINDS)
def test_seeded_simulation_is_reproducible(kind):
    ex = _example(kind)
    if ex.simulate is None:
        pytest.skip(f"{kind}: no stochastic simulation")
    model, _ = _fit(kind)
    a, b, c = ex.simulate(model, 5), ex.simulate(model, 5), ex.simulate(model, 6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c), f"{kind}: the seed changes nothing"


@pytest.mark.parametrize("kind", [k for k in KINDS if FAMILIES[k].supports("brian2")])
def test_brian2_agrees_with_torch(kind):
    ex = _example(kind)
    assert ex.brian2 is not None, f"{kind}: declares brian2 but its Example has no brian2 check"
    model, _ = _fit(kind)
    ours, theirs = ex.brian2(model)
    assert ours.shape == theirs.shape and np.abs(ours).max() > 0.05  # a non-trivial quantity
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=ex.brian2_atol)
