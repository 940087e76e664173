"""Model families, found by ``kind`` through :data:`MODELS`."""

from neurorec.models.base import MODELS, Model, model_for, register
from neurorec.models.ctrnn_obs import CTRNNObs
from neurorec.models.glm import GLM
from neurorec.models.rglm import RGLM

__all__ = ["GLM", "MODELS", "RGLM", "CTRNNObs", "Model", "model_for", "register"]
