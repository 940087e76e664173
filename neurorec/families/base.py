"""The contract every model family implements, and the registry that finds families by ``kind``.

A family is one folder under ``neurorec/families/``; its ``__init__`` calls
:func:`register_family` for each kind it provides. :func:`neurorec.families.registered` imports
every folder and returns the table, so the CLI, the fit pipeline, memory estimates, reports and
``export-nwb`` find a family without being edited.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from neurorec.core.errors import DataError, NotFittedError
from neurorec.core.metrics import bits_per_spike, log_likelihood
from neurorec.core.observations import Observation, make_observation
from neurorec.data.recording import BinnedTrials, TrialLayout
from neurorec.fit.checkpoint import load_checkpoint, save_checkpoint
from neurorec.fit.run import FitLog, Run
from neurorec.spec.base import Spec
from neurorec.spec.load import dump_spec, load_model_spec

#: What a family can do, declared as data (never probed with ``hasattr``).
CAPABILITIES = frozenset({
    "binned_trials",    # fits BinnedTrials by likelihood: ``neurorec fit``, bits/spike, export-nwb
    "heldout_neurons",  # co-smoothing: a ``heldout`` mask (constructor setting)
    "brian2",           # a Brian 2 backend that reproduces the torch simulation
    "stimulus_filter",  # driven by a stimulus time series
    "resume",           # training resumes bitwise from its checkpoints
    "latent_dynamics",  # has a linear latent with eigenvalues / time constants (R-GLM)
    "task",             # trained on a task protocol (``neurorec train`` / ``simulate``)
    "session_heldout",  # co-smoothing on a session: its session model takes ``heldout``
})

#: Commands a family may declare (``register_family(commands={name: "module:function"})``):
#: ``train_task`` (``neurorec train --task``: ``(spec, task_spec, out, **options) -> metrics``),
#: ``train_stimulus`` (``neurorec train --stimulus``: the same with a stimulus protocol),
#: ``probe`` (``neurorec probe``: ``(fit_dir) -> ProbeTarget``),
#: ``session_model`` (``neurorec fit`` with ``data.mode: session``: the class fitted to a
#: :class:`~neurorec.data.session.BinnedSession`, ``cls(spec, seed=..., [heldout=...])`` with
#: ``fit(session, *, progress, run)``, ``predict_rate(session)``, ``save(dir)``, and the class
#: attributes ``session_glm`` / ``counts_parameters``, see :class:`Model`).
COMMANDS = frozenset({"train_task", "train_stimulus", "probe", "session_model"})

#: How each family's ``score`` is defined, and its direction: ``+1`` higher is better, ``-1``
#: lower is better (a loss). :mod:`neurorec.families.checks` reads the direction.
SCORES: dict[str, int] = {"bits_per_spike": +1, "accuracy": +1, "perplexity": -1,
                          "task_loss": -1, "reconstruction": -1}


@dataclass(frozen=True)
class Example:
    """A small real problem every family provides for its checks
    (:mod:`neurorec.families.checks`), like a row of dynamax's table of model configurations.

    Data, not code over the model's insides: ``spec`` is the spec as a dict (validated like a
    file); ``data()`` returns ``(train, test)`` of the family's declared data type
    (:attr:`Family.data`); ``options()`` constructor keywords besides ``spec``, ``device`` and
    ``seed`` (settings only); ``chance`` the score of a trivial predictor on ``test`` (the
    checks require the fitted model to beat it in the score's direction); ``wrong(test)``
    data of the wrong shape for the fitted model (its ``score`` must raise DataError);
    ``sample(model, seed)`` a seeded draw through the public API, of shape ``sample_shape``
    (None: the family has no stochastic simulation); ``brian2(model) -> (torch, brian2)`` the
    same noise-free quantity from both backends (families with the ``brian2`` capability),
    equal to ``brian2_atol``.
    """

    spec: dict[str, Any]
    data: Callable[[], tuple[Any, Any]]
    chance: float
    options: Callable[[], dict[str, Any]] = dict
    wrong: Callable[[Any], Any] | None = None
    sample: Callable[[Estimator, int], np.ndarray] | None = None
    sample_shape: tuple[int, ...] | None = None
    brian2: Callable[[Estimator], tuple[np.ndarray, np.ndarray]] | None = None
    brian2_atol: float = 1e-9

    def make(self, seed: int = 0, device: str = "cpu") -> Estimator:
        """An unfitted model of :attr:`spec` (the registered class for its kind)."""
        from neurorec.spec.load import validate_spec

        spec = validate_spec(self.spec, "<example>")
        return FAMILIES[spec.kind].model(spec, device=device, seed=seed, **self.options())

    def fit(self, model: Estimator, run: Run | None = None) -> Estimator:
        """``model.fit(train, progress=False, run=run)``; returns what ``fit`` returned."""
        return model.fit(self.data()[0], progress=False, run=run)

    def score(self, model: Estimator) -> float:
        """``model.score(test)``."""
        return model.score(self.data()[1])


@dataclass(frozen=True)
class Family:
    """One registered kind: its spec schema, its model class and what it can do.

    ``example``: a zero-argument callable returning the family's :class:`Example` (lazy, so
    registering a family loads no data). ``session_example``: the same for a family that
    declares a ``session_model`` command — an :class:`Example` whose ``spec`` has
    ``data.mode: session`` and whose ``data()`` gives ``(train, test)`` sessions
    (:class:`~neurorec.data.session.BinnedSession`; they may be one session: its ``split``
    marks the test bins), ``chance`` the bits/spike of each unit's mean training rate on
    the test bins (the checks' ``session_*`` rows, :mod:`neurorec.families.checks`).
    """

    kind: str
    spec: type[Spec]
    model: type
    score: str = "bits_per_spike"
    #: the type(s) of data ``fit`` and ``score`` take (BinnedTrials, a Task, clips, ...)
    data: type | tuple[type, ...] = BinnedTrials
    capabilities: frozenset[str] = field(default_factory=frozenset)
    description: str = ""
    example: Callable[[], Example] | None = None
    #: ``(spec, (n_trials, n_bins, n_units, n_conditions)) -> {part: bytes}``, the peak
    #: memory of a fit, checked by ``neurorec fit`` before it starts; None: not estimated
    memory_estimate: Callable[[Spec, tuple[int, int, int, int]], dict[str, int]] | None = None
    #: the commands the family provides, by name (:data:`COMMANDS`), each a ``"module:function"``
    #: imported when used (so a family may name a workflow without importing it)
    commands: dict[str, str] = field(default_factory=dict)
    session_example: Callable[[], Example] | None = None

    def command(self, name: str) -> Callable:
        """The function the family declares for command ``name``; KeyError (naming the kinds
        that have it) when it declares none."""
        if name not in self.commands:
            able = sorted(k for k, f in FAMILIES.items() if name in f.commands)
            raise KeyError(f"{self.kind}: no {name!r} command ({', '.join(able)} have one)")
        module, _, attr = self.commands[name].partition(":")
        return getattr(importlib.import_module(module), attr)

    @property
    def package(self) -> str:
        """The family's folder as a module path, e.g. ``neurorec.families.glm`` (where its
        optional ``brian2`` module lives)."""
        return self.model.__module__.rsplit(".", 1)[0]

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger ``score`` is a better model (:data:`SCORES`)."""
        return SCORES[self.score] > 0

    def supports(self, capability: str) -> bool:
        if capability not in CAPABILITIES:
            raise KeyError(f"unknown capability {capability!r} (known: {sorted(CAPABILITIES)})")
        return capability in self.capabilities


FAMILIES: dict[str, Family] = {}
#: kind -> model class, for the kinds fitted to BinnedTrials (``neurorec fit``).
MODELS: dict[str, type[Model]] = {}


def register_family(kind: str, spec: type[Spec], model: type, *, score: str = "bits_per_spike",
                    data: type | tuple[type, ...] = BinnedTrials,
                    capabilities: Iterable[str] = (), description: str = "",
                    example: Callable[[], Example] | None = None,
                    memory_estimate: Callable | None = None,
                    commands: dict[str, str] | None = None,
                    session_example: Callable[[], Example] | None = None) -> Family:
    """Register ``model`` as the class that realises specs of ``kind`` (schema ``spec``),
    fitted to and scored on ``data`` (a type or tuple of types). ``session_example``: the
    :class:`Example` on a session of a family with a ``session_model`` command
    (:attr:`Family.session_example`)."""
    caps = frozenset(capabilities)
    if unknown := caps - CAPABILITIES:
        raise ValueError(f"{kind}: unknown capabilities {sorted(unknown)}")
    commands = dict(commands or {})
    if unknown := set(commands) - COMMANDS:
        raise ValueError(f"{kind}: unknown commands {sorted(unknown)} (known: {sorted(COMMANDS)})")
    if session_example is not None and "session_model" not in commands:
        raise ValueError(f"{kind}: a session_example needs a 'session_model' command")
    if score not in SCORES:
        raise ValueError(f"{kind}: score {score!r} not in {sorted(SCORES)}")
    if kind in FAMILIES:
        raise RuntimeError(f"family kind {kind!r} registered twice")
    if spec.model_fields["kind"].default != kind:
        raise ValueError(f"{kind}: spec {spec.__name__}.kind defaults to "
                         f"{spec.model_fields['kind'].default!r}")
    family = Family(kind, spec, model, score, data, caps,
                    description or (spec.__doc__ or "").strip(), example, memory_estimate,
                    commands, session_example)
    FAMILIES[kind] = family
    model.kind = kind
    if "binned_trials" in caps:
        MODELS[kind] = model
    return family


def model_for(spec: Spec, **kwargs) -> Model:
    """Instantiate the registered model for ``spec.kind``."""
    return FAMILIES[spec.kind].model(spec, **kwargs)


def check_fitted(model: object, attribute: str) -> None:
    """NotFittedError unless ``model`` has the learned ``attribute`` (set by ``fit``)."""
    if getattr(model, attribute, None) is None:
        raise NotFittedError(f"{type(model).__name__}: call fit() before using the model")


class Estimator(ABC):
    """The contract of every family (scikit-learn's, as nemos keeps it).

    ``__init__(spec, *, device, seed, ...)`` stores the spec and options only (the seed is a
    constructor setting, never a ``fit`` argument); ``fit(data, *, progress, run=None)``
    returns ``self`` (``run``: checkpoints, resume and budget, :class:`~neurorec.fit.run.Run`;
    a family may add keyword-only options after these); learned
    attributes end in ``_``; using a model before ``fit`` raises NotFittedError;
    ``save(directory)`` / ``load(directory)`` round-trip with identical predictions on CPU;
    ``score`` is the family's score (:data:`SCORES`, declared in its :class:`Family`).
    """

    kind: ClassVar[str]
    #: the learned attribute that marks a fitted model
    fitted_attribute: ClassVar[str] = "params_"

    def check_fitted(self) -> None:
        check_fitted(self, self.fitted_attribute)

    @abstractmethod
    def fit(self, data: Any, *, progress: bool = True, run: Run | None = None) -> Estimator:
        """Learn from ``data`` (the family's declared type, :attr:`Family.data`); returns
        ``self``. ``progress``: show a progress bar; ``run``: the run's checkpoint folder,
        resume flag and budget (None: no checkpoints)."""

    @abstractmethod
    def score(self, data: Any) -> float:
        """The family's score of ``data`` (:data:`SCORES`; its direction in
        :attr:`Family.higher_is_better`)."""

    #: options set on an instance before ``fit`` that belong to the fitted model
    #: (e.g. a co-smoothing mask) and are saved with it
    saved_options: ClassVar[tuple[str, ...]] = ()

    def learned_state(self) -> dict[str, Any]:
        """Every learned attribute (name ending in ``_``) and saved option, as saved."""
        names = [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]
        return {k: _to_cpu(getattr(self, k)) for k in (*names, *self.saved_options)
                if k in vars(self) or k in names}

    def restore_state(self, state: dict[str, Any]) -> None:
        """Put back what :meth:`learned_state` returned (onto this model's device)."""
        device = getattr(self, "device", "cpu")
        for k, v in state.items():
            setattr(self, k, _to_device(v, device))

    def init_options(self) -> dict[str, Any]:
        """The constructor arguments besides ``spec`` and ``device`` (sklearn's
        ``get_params``): every parameter of ``__init__`` stored under its own name."""
        names = [n for n in inspect.signature(type(self).__init__).parameters
                 if n not in ("self", "spec", "device")]
        return {n: getattr(self, n) for n in names if n in vars(self)}

    def save(self, directory: str | Path) -> Path:
        """Write ``spec.yaml`` and ``model.pt`` (learned state) into ``directory``."""
        self.check_fitted()
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        (out / SPEC_FILE).write_text(dump_spec(self.spec))
        save_checkpoint(out / STATE_FILE, {"kind": self.kind, "options": self.init_options(),
                                           "state": self.learned_state()})
        return out

    @classmethod
    def load(cls, directory: str | Path, *, device: str = "cpu") -> Estimator:
        """The fitted model that :meth:`save` wrote into ``directory``."""
        where = Path(directory)
        if not (where / STATE_FILE).is_file():
            raise DataError(f"{where}: {STATE_FILE}: not found (not a saved model)")
        spec = load_model_spec(where / SPEC_FILE)
        saved = load_checkpoint(where / STATE_FILE)
        if saved["kind"] != cls.kind or spec.kind != cls.kind:
            raise DataError(f"{where}: kind: saved a {saved['kind']!r} model, loading as "
                            f"{cls.kind!r}")
        model = cls(spec, device=device, **saved["options"])
        model.restore_state(saved["state"])
        return model


SPEC_FILE = "spec.yaml"
STATE_FILE = "model.pt"


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor | torch.nn.Module):
        return copy.deepcopy(value).cpu() if isinstance(value, torch.nn.Module) else value.cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    return value


def _to_device(value: Any, device: Any) -> Any:
    if isinstance(value, torch.Tensor | torch.nn.Module):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value


class Model(Estimator):
    """sklearn-like contract: ``fit`` returns self, learned attributes end in ``_``.

    Every method taking data takes :class:`BinnedTrials`; rates are expected counts per bin,
    trial × time × unit.
    """

    kind: ClassVar[str]
    #: a session model's fitted SessionGLM (its convergence, partial dependence, what is
    #: saved): ``"self"`` (the model is one), an attribute name (``"glm_"``), or None (it
    #: has none: its own ``fit_report_`` and ``save``)
    session_glm: ClassVar[str | None] = None
    #: whether ``n_parameters()`` counts the model's parameters (``metrics["n_parameters"]``)
    counts_parameters: ClassVar[bool] = True
    #: what the fit did (``metrics.json``'s ``convergence``, ``fit_history.json``, the
    #: report's convergence figure); set by ``fit``
    fit_report_: FitLog
    #: None, or the (n_units,) bool mask of co-smoothing's held-out units (a constructor
    #: setting of families with the ``heldout_neurons`` capability)
    heldout: np.ndarray | None = None

    @property
    def observation_name(self) -> str:
        """The spec's observation model (``poisson`` for a spec without the field)."""
        return getattr(self.spec, "observation", "poisson")

    @cached_property
    def obs(self) -> Observation:
        """The observation model (likelihood, scores, draws) of the spec, built on first use
        (the constructor stores settings only)."""
        return make_observation(self.observation_name, getattr(self.spec, "link", None))

    @abstractmethod
    def fit(self, data: BinnedTrials, *, progress: bool = True, run: Run | None = None
            ) -> Model: ...

    @abstractmethod
    def predict_rate(self, data: BinnedTrials) -> np.ndarray:
        """(n_trials, n_bins, n_units) expected count per bin, given the observed past."""

    @abstractmethod
    def sample(self, n: int, *, seed: int,
               like: BinnedTrials | TrialLayout | None = None) -> np.ndarray:
        """(n, n_bins, n_units) counts drawn ancestrally from the model (every family that
        can sample takes ``sample(n, *, seed, like=None)``: ``n`` trials / sequences / clips).

        ``like``: trials whose first ``n`` conditions, bins per trial and stimulus series
        (a model driven by one) the draws take; None: conditions ``0, 1, …`` in turn over the
        fitted ones and the fitted bins per trial
        (:func:`~neurorec.data.recording.sample_layout`)."""

    @abstractmethod
    def n_parameters(self) -> int: ...

    def _check_shape(self, data: BinnedTrials) -> None:
        """DataError unless ``data`` has the bins, units and conditions the model was fitted
        to (``n_bins_``, ``n_units_``, ``n_conditions_``)."""
        self.check_fitted()
        got = data.counts.shape[1:]
        if got != (self.n_bins_, self.n_units_) or data.n_conditions != self.n_conditions_:
            raise DataError(f"{data.source}: counts: model was fitted to {self.n_bins_} bins × "
                            f"{self.n_units_} units × {self.n_conditions_} conditions, got "
                            f"{got[0]} × {got[1]} × {data.n_conditions}")

    def _check_session(self, session: Any) -> None:
        """DataError unless the model was fitted to a session (it has ``inputs_scaler_``) with
        ``session``'s number of units."""
        self.check_fitted()
        if "inputs_scaler_" not in vars(self):
            raise DataError(f"{session.source}: the model was fitted to trials, not a session")
        if session.n_units != self.n_units_:
            raise DataError(f"{session.source}: counts: model was fitted to {self.n_units_} "
                            f"units, got {session.n_units}")

    def noise_scale(self) -> np.ndarray | None:
        """(n_units,) noise standard deviation of Gaussian observations, else None."""
        return None

    def log_likelihood(self, data: BinnedTrials) -> float:
        """Total log-likelihood of ``data.counts`` in nats."""
        return log_likelihood(data.counts, self.predict_rate(data), self.observation_name,
                              self.noise_scale())

    def score(self, data: BinnedTrials) -> float:
        """Bits per spike (NLB definition) on ``data``."""
        return bits_per_spike(data.counts, self.predict_rate(data), self.observation_name,
                              self.noise_scale())
