"""The PLDS row in the conformance checks: a small Laplace-EM fit on a real V1 session."""

from __future__ import annotations

from neurorec.families.base import Example


def plds_example() -> Example:
    from neurorec.families.glm.conformance import binned_example

    return binned_example({"kind": "plds", "data": {"bin_size": "10 ms"},
                           "stimulus": {"n_basis": 6}, "latent": {"dim": 2},
                           "fit": {"max_iter": 2, "m_step_iter": 5}})
