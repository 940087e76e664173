"""The contract's ``session_*`` checks (:mod:`neurorec.families.checks`) are not vacuous: each
one below fails on a session model (the session GLM with one defect) that breaks what it
checks, and passes on the GLM as registered. The broken models fit a private copy of the
session example's data, so the cached shared session is never touched."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from neurorec.core.errors import NotFittedError
from neurorec.families import family_of
from neurorec.families.checks import (
    _Run,
    check_session_data_not_mutated,
    check_session_fit_leaves_global_rng,
    check_session_heldout_cosmoothing,
    check_session_not_fitted_error,
    check_session_same_seed_same_rates,
    check_session_save_load_round_trip,
)
from neurorec.families.glm.session import SessionGLM


class MutatesCounts(SessionGLM):
    """Writes into the session's counts while predicting."""

    def predict_rate(self, session):
        session.counts[0, 0] += 1
        return super().predict_rate(session)


class GlobalNoise(SessionGLM):
    """Perturbs its coefficients with the global numpy generator (no seed)."""

    def fit(self, session, *, progress=False, run=None, **kw):
        super().fit(session, progress=progress, run=run, **kw)
        self.coef_ = self.coef_ + 1e-9 * np.random.standard_normal(self.coef_.shape)  # noqa: NPY002
        return self


class IgnoresHeldout(SessionGLM):
    """Takes a held-out mask and drops it: every unit keeps its own spike history."""

    def __init__(self, spec, *, seed: int = 0, heldout=None, chunk: int = 32):
        super().__init__(spec, seed=seed, heldout=None, chunk=chunk)


class ForgetsHistoryWeights(SessionGLM):
    """``load`` drops the history weights."""

    @classmethod
    def load(cls, directory):
        model = super().load(directory)
        model.coef_ = model.coef_.copy()
        model.coef_[:, model.coef_.shape[1] - model.n_history:] = 0.0
        return model


class UnguardedPredict(SessionGLM):
    """``predict_rate`` before ``fit`` fails with an AttributeError, not NotFittedError."""

    def predict_rate(self, session):
        return np.exp(self.coef_[:, 0])[None] + 0 * session.counts


def _run_with(cls: type) -> _Run:
    """The glm family with ``cls`` as its session model, on a private copy of the session
    example's data."""
    glm = family_of("glm")
    example = glm.session_example()
    session = example.data()[0]
    own = dataclasses.replace(session, counts=np.array(session.counts))
    private = dataclasses.replace(example, data=lambda: (own, own))
    family = dataclasses.replace(glm, commands={"session_model": f"{__name__}:{cls.__name__}"},
                                 session_example=lambda: private)
    return _Run(family)


@pytest.mark.parametrize(("broken", "check"), [
    (MutatesCounts, check_session_data_not_mutated),
    (GlobalNoise, check_session_fit_leaves_global_rng),
    (GlobalNoise, check_session_same_seed_same_rates),
    (IgnoresHeldout, check_session_heldout_cosmoothing),
    (ForgetsHistoryWeights, check_session_save_load_round_trip),
], ids=lambda x: getattr(x, "__name__", str(x)))
def test_session_check_fails_on_a_broken_model(broken, check):
    with pytest.raises(AssertionError):
        check(_run_with(broken))
    check(_run_with(SessionGLM))  # the same check passes on the model as registered


def test_not_fitted_check_refuses_an_attribute_error():
    with pytest.raises(AttributeError):
        check_session_not_fitted_error(_run_with(UnguardedPredict))
    check_session_not_fitted_error(_run_with(SessionGLM))
    with pytest.raises(NotFittedError, match="call fit"):
        SessionGLM(None).predict_rate(None)
