"""The PLDS row in the conformance checks: a small Laplace-EM fit on a real V1 session."""

from __future__ import annotations

from neurorec.families.base import Example


def plds_example() -> Example:
    from neurorec.families.glm.conformance import binned_example

    return binned_example({"kind": "plds", "data": {"bin_size": "10 ms"},
                           "stimulus": {"n_basis": 6}, "latent": {"dim": 2},
                           "fit": {"max_iter": 2, "m_step_iter": 5}})


def plds_session_example() -> Example:
    """Laplace EM on the shared small open-field session (covariates as inputs)."""
    from neurorec.families.glm.conformance import session_example

    return session_example({"kind": "plds", "latent": {"dim": 2},
                            "fit": {"max_iter": 4, "m_step_iter": 10}})
