"""neurorec.sklearn's GLM estimators and the GLM family fit the same model with the same
solver: on the design the family builds, their numbers agree to 1e-8."""

from __future__ import annotations

import numpy as np

from neurorec.families.base import model_for
from neurorec.families.glm.conformance import v1_small
from neurorec.sklearn import PoissonGLM
from neurorec.spec.load import validate_spec


def test_poisson_glm_equals_the_family_glm_on_its_design():
    train, _ = v1_small()
    spec = validate_spec({"kind": "glm", "data": {"bin_size": "10 ms"},
                          "stimulus": {"n_basis": 4}, "history": {"enabled": False},
                          "penalty": {"l2": 0.0, "stimulus_l2": 0.0},
                          "fit": {"tol": 1e-12}}, "<test>")
    family = model_for(spec, seed=0).fit(train, progress=False)
    K, T, N = train.counts.shape
    basis = family.stimulus_basis(T)  # (T, n_basis), the family's own stimulus basis
    onehot = np.eye(train.n_conditions)[train.condition]
    X = (onehot[:, None, :, None] * basis[None, :, None, :]).reshape(K * T, -1)
    Y = train.counts.reshape(K * T, N).astype(float)
    sk = PoissonGLM(alpha=0.0, fit_intercept=False, tol=1e-12, max_iter=200).fit(X, Y)
    ours = family.predict_rate(train).reshape(K * T, N)
    rel = np.abs(sk.predict(X) - ours).max() / ours.max()
    assert rel < 1e-8, rel
