"""Declarative, validated specs: models in ``models/``, stimulus protocols in ``stimuli/``."""

from neurorec.spec import models as _models  # noqa: F401  (registers kinds)
from neurorec.spec import stimuli as _stimuli  # noqa: F401
from neurorec.spec.base import MODEL_KINDS, STIMULUS_KINDS, Spec, register_model, register_stimulus
from neurorec.spec.load import (
    apply_overrides,
    dump_spec,
    load_model_spec,
    load_spec,
    load_stimulus_spec,
    read_yaml,
    validate_spec,
)
from neurorec.spec.models import GLMSpec, RGLMSpec
from neurorec.spec.stimuli import DriftingGratingsSpec

__all__ = [
    "MODEL_KINDS", "STIMULUS_KINDS", "DriftingGratingsSpec", "GLMSpec", "RGLMSpec", "Spec",
    "apply_overrides", "dump_spec", "load_model_spec", "load_spec", "load_stimulus_spec",
    "read_yaml", "register_model", "register_stimulus", "validate_spec",
]
