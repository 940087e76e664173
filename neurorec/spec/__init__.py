"""Declarative, validated specs: models in ``models/``, stimulus protocols in ``stimuli/``.

Model kinds (and the task protocols of the ``ctrnn`` family) are registered by the families in
``neurorec/families/``; the loader discovers them on first use (:func:`neurorec.spec.base.kinds`).
"""

from neurorec.spec import oscillator as _oscillator  # noqa: F401  (registers oscillating_object)
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
    "NaturalMovieSpec",
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
