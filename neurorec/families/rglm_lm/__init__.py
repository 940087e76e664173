"""The R-GLM's linear recurrence with a softmax readout: a language model scored by perplexity
(kind ``rglm_lm``)."""

from neurorec.families.base import register_family
from neurorec.families.rglm_lm.model import RGLMLanguageModel
from neurorec.families.rglm_lm.spec import RGLMLMSpec

register_family("rglm_lm", RGLMLMSpec, RGLMLanguageModel, score="perplexity",
                capabilities=("resume",))

__all__ = ["RGLMLMSpec", "RGLMLanguageModel"]
