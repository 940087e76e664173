"""The ctrnn_obs family's row in the conformance checks: a tiny network fitted briefly to the
V1 session the GLM rows use (:func:`neurorec.families.glm.conformance.v1_small`)."""

from __future__ import annotations

from neurorec.families.base import Example


def ctrnn_obs_example() -> Example:
    from neurorec.families.glm.conformance import binned_example

    return binned_example({"kind": "ctrnn_obs", "data": {"bin_size": "10 ms"},
                           "network": {"n_units": 6, "tau": "20 ms", "dt": "10 ms"},
                           "input": {"onset": "200 ms"},
                           "training": {"n_steps": 15, "batch_size": 16, "validate_every": 5,
                                        "patience": 3}})


def ctrnn_obs_session_example() -> Example:
    """A tiny network on the shared small open-field session (covariates as input
    channels, windows of 100 bins)."""
    from neurorec.families.glm.conformance import session_example

    return session_example({"kind": "ctrnn_obs",
                            "network": {"n_units": 8, "tau": "20 ms", "dt": "10 ms"},
                            "training": {"n_steps": 40, "batch_size": 8, "validate_every": 10,
                                         "patience": 3, "learning_rate": 0.03}})
