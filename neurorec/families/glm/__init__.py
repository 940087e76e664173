"""GLM and R-GLM of binned spike trains (kinds ``glm`` and ``rglm``).

spec.py (schemas) · glm.py (the GLM) · rglm.py (the GLM plus a linear latent) ·
brian2.py (Brian 2 network of a fitted model).
"""

from neurorec.families.base import register_family
from neurorec.families.glm.conformance import (
    glm_example,
    glm_session_example,
    rglm_example,
    rglm_session_example,
)
from neurorec.families.glm.glm import GLM
from neurorec.families.glm.resources import glm_fit_memory
from neurorec.families.glm.rglm import RGLM
from neurorec.families.glm.spec import GLMSpec, RGLMSpec

_CAPS = ("binned_trials", "heldout_neurons", "brian2", "stimulus_filter", "session_heldout")
register_family("glm", GLMSpec, GLM, capabilities=_CAPS, example=glm_example,
                memory_estimate=glm_fit_memory,
                commands={"session_model": "neurorec.families.glm.session:SessionGLM"},
                session_example=glm_session_example)
register_family("rglm", RGLMSpec, RGLM, capabilities=(*_CAPS, "latent_dynamics", "resume"),
                example=rglm_example, memory_estimate=glm_fit_memory,
                commands={"session_model": "neurorec.families.glm.rglm:SessionRGLM"},
                session_example=rglm_session_example)

__all__ = ["GLM", "RGLM", "GLMSpec", "RGLMSpec"]
