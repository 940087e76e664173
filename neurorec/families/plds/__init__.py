"""Poisson linear dynamical system fitted by Laplace EM (kind ``plds``; Macke et al. 2011).

spec.py (schema) · inference.py (Laplace E-step, causal filter, M-steps, sampling: pure
functions on arrays) · model.py (the estimator) · conformance.py (its contract example).
"""

from neurorec.families.base import register_family
from neurorec.families.plds.conformance import plds_example, plds_session_example
from neurorec.families.plds.model import PLDS
from neurorec.families.plds.spec import PLDSSpec

register_family("plds", PLDSSpec, PLDS,
                capabilities=("binned_trials", "heldout_neurons", "latent_dynamics"),
                example=plds_example,
                commands={"session_model": "neurorec.families.plds.model:PLDS"},
                session_example=plds_session_example)

__all__ = ["PLDS", "PLDSSpec"]
