"""The R-GLM's linear recurrence with a softmax readout: a language model scored by perplexity
(kind ``rglm_lm``)."""

from neurorec.data.tokens import Tokens
from neurorec.families.base import register_family
from neurorec.families.rglm_lm.conformance import rglm_lm_example
from neurorec.families.rglm_lm.model import RGLMLanguageModel
from neurorec.families.rglm_lm.spec import RGLMLMSpec

register_family("rglm_lm", RGLMLMSpec, RGLMLanguageModel, data=Tokens, score="perplexity",
                capabilities=("resume",), example=rglm_lm_example)

__all__ = ["RGLMLMSpec", "RGLMLanguageModel"]
