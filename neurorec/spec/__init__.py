"""Declarative, validated specs: models in ``models/``, stimulus protocols in ``stimuli/``."""

from neurorec.spec import ctrnn as _ctrnn  # noqa: F401  (ctrnn model and task kinds)
from neurorec.spec import ctrnn_obs as _ctrnn_obs  # noqa: F401  (registers ctrnn_obs)
from neurorec.spec import lm as _lm  # noqa: F401  (registers rglm_lm)
from neurorec.spec import models as _models  # noqa: F401  (registers kinds)
from neurorec.spec import rnn_studies as _rnn_studies  # noqa: F401  (conv_rnn, rnn)
from neurorec.spec import ssrnn as _ssrnn  # noqa: F401  (registers ssrnn)
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
from neurorec.spec.stimuli import (
    DriftingGaborsSpec,
    DriftingGratingsSpec,
    NaturalMovieSpec,
    WhiteNoiseSpec,
)

__all__ = [
    "MODEL_KINDS",
    "STIMULUS_KINDS",
    "DriftingGaborsSpec",
    "DriftingGratingsSpec",
    "GLMSpec",
    "NaturalMovieSpec",
    "RGLMSpec",
    "Spec",
    "WhiteNoiseSpec",
    "apply_overrides",
    "dump_spec",
    "load_model_spec",
    "load_spec",
    "load_stimulus_spec",
    "read_yaml",
    "register_model",
    "register_stimulus",
    "validate_spec",
]
