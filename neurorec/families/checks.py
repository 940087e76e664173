"""The model contract as executable checks, shipped with the library (after
``sklearn.utils.estimator_checks``).

:func:`family_checks` yields ``(name, check)`` pairs for one registered family; each
``check()`` raises ``AssertionError`` (or the project error the contract names) when the family
breaks the contract, and :class:`Skip` when the check does not apply (e.g. no ``brian2``
capability). :func:`parametrize_with_family_checks` turns them into pytest cases, so a family
written outside this package gets the same checks with one call::

    from neurorec.families.checks import parametrize_with_family_checks

    @parametrize_with_family_checks([family_of("mykind")])
    def test_mykind(check):
        check()

Every check runs on the family's :class:`~neurorec.families.base.Example` (small real data and
a spec dict). Fits are shared between checks of one family: three fits in all (the reference
fit, a second model with the same seed, and that model fitted again), so the suite stays fast.

A family that declares a ``session_model`` command also runs the ``session_*`` checks on its
``session_example`` (a small :class:`~neurorec.data.session.BinnedSession` and a spec with
``data.mode: session``) with that class: three shared fits again, plus one co-smoothing fit
with the ``session_heldout`` capability; the other families skip them.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pickle
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

from neurorec.core.errors import DataError, NotFittedError
from neurorec.families.base import CAPABILITIES, SCORES, Estimator, Example, Family
from neurorec.fit.run import FitLog, Run


class Skip(Exception):
    """A check that does not apply to this family (pytest reports it as skipped)."""


class _Run:
    """One family's example, fitted lazily and shared by its checks."""

    def __init__(self, family: Family):
        self.family = family
        self._example: Example | None = None
        self._cache: dict[str, Any] = {}

    @property
    def example(self) -> Example:
        if self._example is None:
            if self.family.example is None:
                raise AssertionError(f"{self.family.kind}: the family registers no Example")
            self._example = self.family.example()
        return self._example

    def data(self) -> tuple[Any, Any]:
        return self.example.data()

    def fitted(self) -> tuple[Estimator, float]:
        """The reference fit (seed 0) and its held-out score."""
        if "fitted" not in self._cache:
            model = self.example.make(seed=0)
            returned = model.fit(self.data()[0], progress=False)
            assert returned is model, f"{self.family.kind}: fit must return self"
            self._cache["fitted"] = (model, model.score(self.data()[1]))
        return self._cache["fitted"]

    def checkpoint_run(self) -> Run | None:
        """For a family with the ``resume`` capability, the :class:`~neurorec.fit.run.Run`
        (a temporary checkpoint folder) the second fit writes its checkpoints to; else None."""
        if not self.family.supports("resume"):
            return None
        if "checkpoints" not in self._cache:
            self._cache["checkpoints"] = tempfile.TemporaryDirectory(prefix="neurorec-check-")
        return Run(checkpoint_dir=self._cache["checkpoints"].name)

    def second(self) -> dict[str, Any]:
        """A second model with the same seed, fitted on a pickled snapshot's twin of the
        data: the snapshots before and after, its score and learned state. A family with
        the ``resume`` capability checkpoints this fit (:meth:`checkpoint_run`), so the
        same-seed check also says that checkpointing changes no number."""
        if "second" not in self._cache:
            train, test = self.data()
            before = (pickle.dumps(train), pickle.dumps(test))
            model = self.example.make(seed=0)
            model.fit(train, progress=False, run=self.checkpoint_run())
            score = model.score(test)
            self._cache["second"] = {
                "model": model, "score": score, "state": _numbers(model.learned_state()),
                "before": before, "after": (pickle.dumps(train), pickle.dumps(test))}
        return self._cache["second"]


#: keys of wall-clock measurements in a learned state (not compared between fits), and
#: where a resumed run says it resumed
_CLOCK = re.compile(r"seconds|time|per_s$|elapsed|wall|resumed_from")


def _numbers(value: Any) -> Any:
    """The arrays and scalars inside a learned state, comparable with :func:`_assert_same`
    (modules by their state dicts; wall-clock measurements, keys matching ``_CLOCK``,
    dropped)."""
    if isinstance(value, torch.nn.Module):
        return _numbers(value.state_dict())
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items() if not _CLOCK.search(str(k))}
    if isinstance(value, list | tuple):
        return [_numbers(v) for v in value]
    if isinstance(value, np.ndarray | int | float | np.number | bool | str) or value is None:
        return value
    if hasattr(value, "__dict__"):
        return _numbers(vars(value))
    return repr(value)


def _assert_same(a: Any, b: Any, where: str) -> None:
    """Bitwise equality of nested arrays / scalars (NaN equal to NaN)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), \
            f"{where}: keys {sorted(map(str, a))} vs {sorted(map(str, b))}"
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=where)
    elif isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _global_rng_state() -> tuple[bytes, bytes]:
    return (torch.random.get_rng_state().numpy().tobytes(),
            pickle.dumps(np.random.get_state()))  # noqa: NPY002  (checked, not used)


def _one_line(exc: BaseException, kind: str, what: str) -> None:
    text = str(exc)
    assert text and "\n" not in text, f"{kind}: {what}: the error is not one line: {text!r}"


def _refused(error: type[Exception], kind: str, what: str, call: Callable[[], Any]) -> str:
    """``call()`` must raise ``error`` with a one-line message (returned)."""
    try:
        call()
    except error as exc:
        _one_line(exc, kind, what)
        return str(exc)
    raise AssertionError(f"{kind}: {what} raised no {error.__name__}")


# --------------------------------------------------------------------------- the checks
def check_lives_in_its_folder(run: _Run) -> None:
    """Spec and model come from ``neurorec/families/<folder>/`` (or the third-party package
    that registered them) and the model implements :class:`Estimator`."""
    family = run.family
    spec_package = family.spec.__module__.rsplit(".", 1)[0]
    model_package = family.model.__module__.rsplit(".", 1)[0]
    assert spec_package == model_package, \
        f"{family.kind}: spec in {family.spec.__module__}, model in {family.model.__module__}"
    assert family.model.kind == family.kind
    assert issubclass(family.model, Estimator), f"{family.kind}: model is not an Estimator"


def check_declarations(run: _Run) -> None:
    """Capabilities, score (with its direction) and data type are declared as data."""
    family = run.family
    assert family.capabilities <= CAPABILITIES, sorted(family.capabilities - CAPABILITIES)
    assert family.score in SCORES, f"{family.kind}: score {family.score!r} unknown"
    types = family.data if isinstance(family.data, tuple) else (family.data,)
    assert types and all(isinstance(t, type) for t in types), f"{family.kind}: data {types}"


def check_capability_members(run: _Run) -> None:
    """What a capability promises is declared on the model, so workflows read it without
    probing: ``heldout_neurons`` — ``heldout`` is a constructor setting; ``latent_dynamics``
    — the fitted model's ``time_constants()`` gives ``(eigenvalues, tau)`` of one length,
    tau finite or inf, in seconds; ``binned_trials`` — a fit leaves a ``fit_report_``
    (:class:`~neurorec.fit.run.FitLog`: ``metrics.json``'s ``convergence``)."""
    family, kind = run.family, run.family.kind
    if family.supports("heldout_neurons"):
        params = inspect.signature(family.model.__init__).parameters
        assert "heldout" in params and params["heldout"].default is None, \
            f"{kind}: heldout_neurons needs __init__(..., heldout=None)"
    if not (family.supports("latent_dynamics") or family.supports("binned_trials")):
        raise Skip(f"{kind} declares neither latent_dynamics nor binned_trials")
    model, _ = run.fitted()
    if family.supports("latent_dynamics"):
        eig, tau = model.time_constants()
        eig, tau = np.asarray(eig), np.asarray(tau)
        assert eig.ndim == tau.ndim == 1 and len(eig) == len(tau) > 0, \
            f"{kind}: time_constants() shapes {eig.shape}, {tau.shape}"
        assert not np.isnan(tau).any() and (tau > 0).all(), f"{kind}: time constants {tau}"
    if family.supports("binned_trials"):
        assert isinstance(model.fit_report_, FitLog), \
            f"{kind}: fit_report_ is a {type(model.fit_report_).__name__}, not a FitLog"
        convergence = model.fit_report_.to_dict()
        assert set(FitLog.SUMMARY) <= set(convergence), f"{kind}: {sorted(convergence)}"


def check_commands_resolve(run: _Run) -> None:
    """Every command the family declares (``train_task``, ``train_stimulus``, ``probe``) names
    a function that imports."""
    for name in run.family.commands:
        assert callable(run.family.command(name)), f"{run.family.kind}: command {name!r}"


def check_example_data_type(run: _Run) -> None:
    """The example's train and test data are of the family's declared data type."""
    train, test = run.data()
    for name, d in (("train", train), ("test", test)):
        assert isinstance(d, run.family.data), \
            f"{run.family.kind}: example {name} data is {type(d).__name__}, the family " \
            f"declares {run.family.data}"


def _settings_after_spec(cls: type, kind: str, what: str, required: tuple[str, ...]) -> None:
    """``cls.__init__(spec, *, <settings>)``: ``spec`` the one positional argument, every other
    parameter keyword-only with a default, ``required`` among them."""
    params = list(inspect.signature(cls.__init__).parameters.values())
    names = [p.name for p in params]
    assert names[:2] == ["self", "spec"] and params[1].kind in (
        inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD), \
        f"{kind}: {what}.__init__{tuple(names)}: the first argument must be the spec"
    settings = params[2:]
    positional = [p.name for p in settings if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    assert not positional, \
        f"{kind}: {what}.__init__'s {positional} must be keyword-only (__init__(spec, *, ...))"
    missing = [r for r in required if r not in names[2:]]
    assert not missing, f"{kind}: {what}.__init__ takes no {missing}"
    no_default = [p.name for p in settings if p.default is inspect.Parameter.empty]
    assert not no_default, f"{kind}: {what}.__init__'s {no_default} have no default"


def check_constructor_signature(run: _Run) -> None:
    """``__init__(spec, *, device, seed, ...)``: the spec is the one positional argument;
    ``device``, ``seed`` and every other setting are keyword-only with defaults (so
    ``Model(spec, "cuda")`` is a TypeError, never a silently misread setting); the seed goes to
    the constructor, not to ``fit``. The family's declared session model (command
    ``session_model``, when it is not the model itself) takes ``(spec, *, seed, ...)`` too."""
    kind = run.family.kind
    _settings_after_spec(run.family.model, kind, run.family.model.__name__, ("device", "seed"))
    if "session_model" in run.family.commands:
        session = run.family.command("session_model")
        if session is not run.family.model:
            _settings_after_spec(session, kind, session.__name__, ("seed",))
    fit = inspect.signature(run.family.model.fit).parameters
    assert "progress" in fit, f"{run.family.kind}: fit takes no 'progress'"
    assert "seed" not in fit, f"{run.family.kind}: fit takes a seed (the constructor's)"


def check_fit_signature(run: _Run) -> None:
    """``fit(data, *, progress, run=None, ...)``: one positional argument, the data; the
    rest keyword-only with defaults (``progress``, ``run``, then the family's own options),
    as :meth:`Estimator.fit` declares; ``score(data)``."""
    kind = run.family.kind
    params = list(inspect.signature(run.family.model.fit).parameters.values())[1:]
    assert params and params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, \
        f"{kind}: fit's first argument must be the data, got {params[:1]}"
    rest = params[1:]
    bad = [p.name for p in rest if p.kind is not inspect.Parameter.KEYWORD_ONLY
           or p.default is inspect.Parameter.empty]
    assert not bad, f"{kind}: fit's {bad} must be keyword-only with defaults (fit(data, *, ...))"
    names = [p.name for p in rest]
    assert names[:2] == ["progress", "run"], \
        f"{kind}: fit(data, *, progress, run, ...) expected, got fit(data, *, {names})"
    assert rest[1].default is None, f"{kind}: fit's run must default to None"
    score = [p for p in list(inspect.signature(run.family.model.score).parameters.values())[1:]
             if p.default is inspect.Parameter.empty]
    assert len(score) == 1, f"{kind}: score(data) expected, required {[p.name for p in score]}"


def check_constructor_stores_settings_only(run: _Run) -> None:
    """``__init__`` stores its arguments under their own names (plus what the class declares
    in ``derived_settings``), learns nothing, reads no data and draws nothing from the global
    random generators."""
    _assert_stores_settings_only(lambda: run.example.make(seed=3), run.family.kind)


def _assert_stores_settings_only(make: Callable[[], Any], where: str) -> None:
    """``make()`` (a constructor call with ``seed=3``) draws nothing from the global
    generators, sets only its parameters (and the class's ``derived_settings``), stores the
    seed as given and sets no learned attribute."""
    before = _global_rng_state()
    model = make()
    assert _global_rng_state() == before, f"{where}: __init__ drew random numbers"
    params = set(inspect.signature(type(model).__init__).parameters) - {"self"}
    extra = set(vars(model)) - params - set(getattr(model, "derived_settings", ()))
    assert not extra, f"{where}: {type(model).__name__}.__init__ set {sorted(extra)} " \
                      "(not settings)"
    assert model.seed == 3, f"{where}: seed not stored as given"
    learned = [k for k in vars(model) if k.endswith("_") and not k.startswith("_")]
    assert not learned, f"{where}: __init__ set learned attributes {learned}"


def check_clone_from_options(run: _Run) -> None:
    """``type(m)(m.spec, device=m.device, **m.init_options())`` rebuilds the same unfitted
    model (scikit-learn's ``clone``)."""
    model = run.example.make(seed=5)
    twin = type(model)(model.spec, device=model.device, **model.init_options())
    assert twin.init_options().keys() == model.init_options().keys()
    assert twin.spec == model.spec and twin.seed == model.seed == 5


def check_not_fitted_error(run: _Run) -> None:
    """``score`` before ``fit`` raises NotFittedError ("call fit"), in one line."""
    model = run.example.make()
    message = _refused(NotFittedError, run.family.kind, "score before fit",
                       lambda: model.score(run.data()[1]))
    assert "call fit" in message


def check_unfitted_refusals(run: _Run) -> None:
    """``save`` and ``sample`` of an unfitted model raise NotFittedError too."""
    import tempfile

    model, kind = run.example.make(), run.family.kind
    with tempfile.TemporaryDirectory() as tmp:
        _refused(NotFittedError, kind, "save before fit", lambda: model.save(tmp))
    if run.example.sample is not None:
        _refused(NotFittedError, kind, "sample before fit", lambda: run.example.sample(model, 0))


def check_fit_returns_self(run: _Run) -> None:
    """``fit`` returns the model itself."""
    model, _ = run.fitted()  # asserts ``returned is model``
    assert isinstance(model, run.family.model)


def check_learned_attributes(run: _Run) -> None:
    """``fit`` learns something, and every public attribute it adds ends in ``_``."""
    before = set(vars(run.example.make()))
    model, _ = run.fitted()
    new = {k for k in set(vars(model)) - before if not k.startswith("_")
           and not isinstance(getattr(type(model), k, None), functools.cached_property)}
    assert new, f"{run.family.kind}: fit learned nothing"
    assert all(k.endswith("_") for k in new), sorted(k for k in new if not k.endswith("_"))
    assert getattr(model, model.fitted_attribute, None) is not None


def check_score(run: _Run) -> None:
    """``score(test)`` is a finite float that beats the example's trivial predictor in the
    declared direction (``SCORES``: higher is better unless the score is a loss)."""
    _, score = run.fitted()
    assert isinstance(score, float) and np.isfinite(score), f"{run.family.kind}: {score!r}"
    chance = run.example.chance
    if run.family.higher_is_better:
        assert score > chance, f"{run.family.kind}: score {score} not above chance {chance}"
    else:
        assert score < chance, f"{run.family.kind}: loss {score} not below chance {chance}"


def check_fit_leaves_global_rng(run: _Run) -> None:
    """Fitting draws only from seeded generators: the global torch and numpy states are
    unchanged afterwards."""
    run.fitted()
    before = _global_rng_state()
    run.second()
    assert _global_rng_state() == before, f"{run.family.kind}: fit used the global RNG"


def check_data_not_mutated(run: _Run) -> None:
    """``fit`` and ``score`` leave their input data unchanged (pickled bytes equal)."""
    second = run.second()
    assert second["before"][0] == second["after"][0], f"{run.family.kind}: fit changed train"
    assert second["before"][1] == second["after"][1], f"{run.family.kind}: score changed test"


def check_same_seed_same_numbers(run: _Run) -> None:
    """Two models built with the same seed fit to bitwise the same score and state."""
    model, score = run.fitted()
    second = run.second()
    assert second["score"] == score, f"{run.family.kind}: {second['score']} != {score}"
    _assert_same(_numbers(model.learned_state()), second["state"], run.family.kind)


def check_resume_bitwise(run: _Run) -> None:
    """A family with the ``resume`` capability: a fit resumed (``Run(resume=True)``) from the
    checkpoints of a finished fit (the second fit, checkpointed) gives bitwise its numbers
    and held-out score, and those of the reference fit without checkpoints."""
    if not run.family.supports("resume"):
        raise Skip(f"{run.family.kind} declares no resume capability")
    kind = run.family.kind
    second = run.second()
    ckpt = run.checkpoint_run()
    written = sorted(p.name for p in ckpt.checkpoint_dir.iterdir())
    assert written, f"{kind}: fit(run=Run(checkpoint_dir=...)) wrote no checkpoint"
    train, test = run.data()
    resumed = run.example.make(seed=0)
    resumed.fit(train, progress=False,
                run=Run(checkpoint_dir=ckpt.checkpoint_dir, resume=True))
    _assert_same(_numbers(resumed.learned_state()), second["state"], f"{kind}: resumed")
    assert resumed.score(test) == second["score"], f"{kind}: resumed score differs"
    reference, score = run.fitted()
    _assert_same(second["state"], _numbers(reference.learned_state()),
                 f"{kind}: checkpointed vs plain fit")
    assert second["score"] == score, f"{kind}: checkpointing changed the score"


def check_fit_twice(run: _Run) -> None:
    """Fitting a fitted model again starts afresh: the same score and state as its first
    fit (nothing carried over from the previous fit)."""
    second = run.second()
    model = second["model"]
    train, test = run.data()
    model.fit(train, progress=False)
    assert model.score(test) == second["score"]
    _assert_same(_numbers(model.learned_state()), second["state"], run.family.kind)


def check_wrong_shape_data_error(run: _Run) -> None:
    """Data of the wrong shape for the fitted model raise DataError in one line."""
    if run.example.wrong is None:
        raise AssertionError(f"{run.family.kind}: the Example gives no wrong-shape data")
    model, _ = run.fitted()
    wrong = run.example.wrong(run.data()[1])
    _refused(DataError, run.family.kind, "score on wrong-shape data", lambda: model.score(wrong))


def check_save_load_round_trip(run: _Run) -> None:
    """``save`` / ``load`` round-trip: the same class, options and bitwise score (and the same
    samples)."""
    import tempfile

    model, score = run.fitted()
    with tempfile.TemporaryDirectory() as tmp:
        model.save(tmp)
        loaded = type(model).load(tmp)
    assert type(loaded) is type(model)
    assert loaded.init_options().keys() == model.init_options().keys()
    assert loaded.score(run.data()[1]) == score  # identical on CPU, not merely close
    if run.example.sample is not None:
        np.testing.assert_array_equal(run.example.sample(loaded, 3),
                                      run.example.sample(model, 3))


def check_load_refusals(run: _Run) -> None:
    """``load`` of a folder without a saved model, or of another kind's model, raises
    DataError in one line."""
    import tempfile

    model, _ = run.fitted()
    kind = run.family.kind
    with tempfile.TemporaryDirectory() as tmp:
        _refused(DataError, kind, "load of an empty folder", lambda: type(model).load(tmp))
        model.save(tmp)
        other = type(f"Other{type(model).__name__}", (type(model),), {"kind": "other"})
        _refused(DataError, kind, "load as another kind", lambda: other.load(tmp))


def check_sample_reproducible(run: _Run) -> None:
    """A seeded draw is reproducible, and another seed gives other numbers."""
    if run.example.sample is None:
        raise Skip(f"{run.family.kind}: no stochastic simulation")
    model, _ = run.fitted()
    a, b, c = (run.example.sample(model, s) for s in (5, 5, 6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c), f"{run.family.kind}: the seed changes nothing"


def check_sample_shape(run: _Run) -> None:
    """Samples have the declared shape and are finite."""
    if run.example.sample is None:
        raise Skip(f"{run.family.kind}: no stochastic simulation")
    model, _ = run.fitted()
    draw = np.asarray(run.example.sample(model, 1))
    assert draw.shape == run.example.sample_shape, \
        f"{run.family.kind}: sample shape {draw.shape}, declared {run.example.sample_shape}"
    assert np.isfinite(draw).all()


def check_sample_signature(run: _Run) -> None:
    """A family that samples takes ``sample(n, *, seed, like=...)``: ``n`` (how many trials /
    sequences / clips) first, ``seed`` keyword-only and without a default, ``like`` (the data
    the draws take their conditions / lengths / prompt from) a keyword."""
    if run.example.sample is None:
        raise Skip(f"{run.family.kind}: no stochastic simulation")
    params = inspect.signature(run.family.model.sample).parameters
    names = [n for n in params if n != "self"]
    assert names[:1] == ["n"], f"{run.family.kind}: sample's first argument is {names[:1]}"
    seed = params.get("seed")
    assert seed is not None and seed.kind is inspect.Parameter.KEYWORD_ONLY \
        and seed.default is inspect.Parameter.empty, \
        f"{run.family.kind}: sample's seed must be keyword-only and required"
    assert "like" in params and params["like"].kind in (
        inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD), \
        f"{run.family.kind}: sample takes no 'like'"
    assert set(names) == {"n", "seed", "like"}, \
        f"{run.family.kind}: sample takes {names}, not (n, *, seed, like)"


def check_brian2_backend(run: _Run) -> None:
    """A family declaring ``brian2`` has ``<package>.brian2.simulate_brian2``."""
    if not run.family.supports("brian2"):
        raise Skip(f"{run.family.kind}: no brian2 capability")
    backend = importlib.import_module(f"{run.family.package}.brian2")
    assert callable(getattr(backend, "simulate_brian2", None))


def check_brian2_agrees(run: _Run) -> None:
    """The Brian 2 backend computes the torch model's noise-free quantity."""
    if not run.family.supports("brian2"):
        raise Skip(f"{run.family.kind}: no brian2 capability")
    assert run.example.brian2 is not None, \
        f"{run.family.kind}: declares brian2 but its Example has no brian2 check"
    model, _ = run.fitted()
    ours, theirs = run.example.brian2(model)
    assert ours.shape == theirs.shape and np.abs(ours).max() > 0.05  # a non-trivial quantity
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=run.example.brian2_atol)


# --------------------------------------------------------------------------- sessions
class _Sessions:
    """One family's session example (:attr:`Family.session_example`) fitted lazily with its
    declared session model (command ``session_model``) and shared by the ``session_*``
    checks: the reference fit (seed 0), a second model with the same seed (fitted, then
    fitted again) and, with the ``session_heldout`` capability, one co-smoothing fit."""

    def __init__(self, run: _Run):
        family = run.family
        if "session_model" not in family.commands:
            raise Skip(f"{family.kind} declares no session_model")
        if family.session_example is None:
            raise AssertionError(f"{family.kind}: declares a session_model but registers no "
                                 "session_example")
        self.kind = family.kind
        self.cls = family.command("session_model")
        self.example = family.session_example()
        self._cache: dict[str, Any] = {}

    @classmethod
    def of(cls, run: _Run) -> _Sessions:
        if "sessions" not in run._cache:
            run._cache["sessions"] = cls(run)
        return run._cache["sessions"]

    def data(self) -> tuple[Any, Any]:
        return self.example.data()

    def make(self, seed: int = 0, **options: Any) -> Any:
        """An unfitted session model of the example's spec: ``cls(spec, seed=seed, ...)``."""
        from neurorec.spec.load import validate_spec

        spec = validate_spec(self.example.spec, "<session example>")
        return self.cls(spec, seed=seed, **self.example.options(), **options)

    def reference(self) -> dict[str, Any]:
        """The reference fit (seed 0): the model, its rates on the test session and its
        score."""
        if "reference" not in self._cache:
            train, test = self.data()
            self._cache["before"] = (_session_arrays(train), _session_arrays(test))
            model = self.make(seed=0)
            returned = model.fit(train, progress=False)
            self._cache["reference"] = {"model": model, "returned": returned,
                                        "rates": model.predict_rate(test),
                                        "score": model.score(test)}
        return self._cache["reference"]

    def second(self) -> dict[str, Any]:
        """A second model with the same seed, fitted and then fitted again: the rates after
        each fit, the global random state before and after its first fit, and the data's
        arrays copied before the reference fit and read after all of them (and the
        reference's ``predict_rate`` and ``score``)."""
        if "second" not in self._cache:
            self.reference()
            train, test = self.data()
            rng = _global_rng_state()
            model = self.make(seed=0)
            model.fit(train, progress=False)
            rng_after = _global_rng_state()
            rates = model.predict_rate(test)
            model.fit(train, progress=False)
            self._cache["second"] = {
                "model": model, "rates": rates, "refit_rates": model.predict_rate(test),
                "rng": (rng, rng_after), "before": self._cache["before"],
                "after": (_session_arrays(train), _session_arrays(test))}
        return self._cache["second"]


def _session_arrays(session: Any) -> dict[str, Any]:
    """Copies of a session's arrays (counts, time, covariates, split, segment, unit ids)."""
    return {"counts": np.array(session.counts), "time": np.array(session.time),
            "covariates": {k: np.array(v) for k, v in session.covariates.items()},
            "split": np.array(session.split), "segment": np.array(session.segment),
            "unit_ids": np.array(session.unit_ids), "bin_size": session.bin_size}


def check_session_model_class(run: _Run) -> None:
    """A family declaring ``session_model`` names a class with ``fit``, ``predict_rate``,
    ``score``, ``save`` and ``load`` and the declarations the session workflow reads
    (``session_glm``, ``counts_parameters``); its ``session_example`` has ``data.mode:
    session``, sessions as data, and builds an instance of exactly that class."""
    from neurorec.data.session import BinnedSession

    s = _Sessions.of(run)
    assert isinstance(s.cls, type), f"{s.kind}: session_model {s.cls!r} is not a class"
    for method in ("fit", "predict_rate", "score", "save", "load"):
        assert callable(getattr(s.cls, method, None)), f"{s.kind}: {s.cls.__name__}.{method}"
    assert getattr(s.cls, "session_glm", None) is None or isinstance(s.cls.session_glm, str)
    assert isinstance(getattr(s.cls, "counts_parameters", None), bool), \
        f"{s.kind}: {s.cls.__name__}.counts_parameters is not declared"
    assert s.example.spec.get("kind") == s.kind, f"{s.kind}: session example of another kind"
    assert s.example.spec.get("data", {}).get("mode") == "session", \
        f"{s.kind}: the session example's spec has no data.mode: session"
    for name, d in zip(("train", "test"), s.data(), strict=True):
        assert isinstance(d, BinnedSession), \
            f"{s.kind}: session example {name} data is {type(d).__name__}"
    assert type(s.make()) is s.cls


def check_session_constructor_stores_settings_only(run: _Run) -> None:
    """The session model's ``__init__`` stores its arguments under their own names (plus its
    ``derived_settings``), learns nothing and draws nothing from the global generators."""
    s = _Sessions.of(run)
    _assert_stores_settings_only(lambda: s.make(seed=3), f"{s.kind} (session model)")


def check_session_not_fitted_error(run: _Run) -> None:
    """An unfitted session model's ``predict_rate``, ``score`` and ``save`` raise
    NotFittedError ("call fit"), in one line."""
    s = _Sessions.of(run)
    model, test = s.make(), s.data()[1]
    for what, call in (("predict_rate", lambda: model.predict_rate(test)),
                       ("score", lambda: model.score(test))):
        message = _refused(NotFittedError, s.kind, f"session {what} before fit", call)
        assert "call fit" in message, f"{s.kind}: {message!r}"
    with tempfile.TemporaryDirectory() as tmp:
        _refused(NotFittedError, s.kind, "session save before fit", lambda: model.save(tmp))


def check_session_fit_returns_self(run: _Run) -> None:
    """The session model's ``fit`` returns the model itself."""
    ref = _Sessions.of(run).reference()
    assert ref["returned"] is ref["model"], f"{run.family.kind}: session fit must return self"


def check_session_predict_rate(run: _Run) -> None:
    """``predict_rate(session)`` is (n_bins, n_units) float expected counts, finite and > 0."""
    s = _Sessions.of(run)
    rates, test = s.reference()["rates"], s.data()[1]
    assert isinstance(rates, np.ndarray) and rates.shape == (test.n_bins, test.n_units), \
        f"{s.kind}: rates {getattr(rates, 'shape', type(rates))}, session " \
        f"({test.n_bins}, {test.n_units})"
    assert np.issubdtype(rates.dtype, np.floating), f"{s.kind}: rates of dtype {rates.dtype}"
    assert np.isfinite(rates).all() and (rates > 0).all(), \
        f"{s.kind}: rates not finite and positive (min {np.nanmin(rates)})"


def check_session_score(run: _Run) -> None:
    """``score(session)`` is the NLB bits/spike of ``predict_rate`` on the test bins (to
    1e-9) and beats the example's trivial predictor (each unit's mean training rate)."""
    from neurorec.core.metrics import bits_per_spike

    s = _Sessions.of(run)
    ref, test = s.reference(), s.data()[1]
    score = ref["score"]
    assert isinstance(score, float) and np.isfinite(score), f"{s.kind}: {score!r}"
    rows = test.mask("test")
    expected = bits_per_spike(test.counts[rows][None], ref["rates"][rows][None])
    assert np.isclose(score, expected, rtol=1e-9, atol=1e-12), \
        f"{s.kind}: score {score} != bits/spike of predict_rate on the test bins {expected}"
    assert score > s.example.chance, \
        f"{s.kind}: session score {score} not above chance {s.example.chance}"


def check_session_data_not_mutated(run: _Run) -> None:
    """``fit``, ``predict_rate`` and ``score`` leave the session's arrays (counts, time,
    covariates, split, segment, unit ids) equal to copies taken before."""
    second = _Sessions.of(run).second()
    for i, name in enumerate(("train", "test")):
        _assert_same(second["before"][i], second["after"][i],
                     f"{run.family.kind}: session {name} changed")


def check_session_fit_leaves_global_rng(run: _Run) -> None:
    """Fitting a session draws only from seeded generators: the global torch and numpy
    states are unchanged afterwards."""
    before, after = _Sessions.of(run).second()["rng"]
    assert before == after, f"{run.family.kind}: session fit used the global RNG"


def check_session_same_seed_same_rates(run: _Run) -> None:
    """Two session models built with the same seed predict bitwise the same rates."""
    s = _Sessions.of(run)
    np.testing.assert_array_equal(s.second()["rates"], s.reference()["rates"],
                                  err_msg=f"{s.kind}: same seed, other rates")


def check_session_fit_twice(run: _Run) -> None:
    """Fitting a fitted session model again starts afresh: bitwise the rates of its first
    fit."""
    second = _Sessions.of(run).second()
    np.testing.assert_array_equal(second["refit_rates"], second["rates"],
                                  err_msg=f"{run.family.kind}: the second fit differs")


def check_session_save_load_round_trip(run: _Run) -> None:
    """``save`` / ``cls.load`` of a session model: the same class and bitwise the same
    rates."""
    s = _Sessions.of(run)
    model = s.reference()["model"]
    with tempfile.TemporaryDirectory() as tmp:
        model.save(tmp)
        loaded = type(model).load(tmp)
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(loaded.predict_rate(s.data()[1]), s.reference()["rates"],
                                  err_msg=f"{s.kind}: reloaded session model's rates")


def check_session_heldout_cosmoothing(run: _Run) -> None:
    """A family with ``session_heldout``: the session model takes ``heldout=None``; fitted
    with units 1 and the last held out, replacing those units' spikes by other counts leaves
    every predicted rate bitwise unchanged, while replacing a held-in unit's spikes changes
    them (the predictions do read the held-in spikes)."""
    import dataclasses

    if not run.family.supports("session_heldout"):
        raise Skip(f"{run.family.kind} declares no session_heldout capability")
    s = _Sessions.of(run)
    params = inspect.signature(s.cls.__init__).parameters
    assert "heldout" in params and params["heldout"].default is None, \
        f"{s.kind}: session_heldout needs {s.cls.__name__}(..., heldout=None)"
    train, test = s.data()
    heldout = np.zeros(train.n_units, bool)
    heldout[[1, -1]] = True
    model = s.make(seed=0, heldout=heldout).fit(train, progress=False)
    rates = model.predict_rate(test)
    rng = np.random.default_rng(0)
    other = np.array(test.counts)
    other[:, heldout] = rng.poisson(1.0, (test.n_bins, int(heldout.sum())))
    np.testing.assert_array_equal(
        model.predict_rate(dataclasses.replace(test, counts=other)), rates,
        err_msg=f"{s.kind}: a held-out unit's spikes changed the predictions")
    other = np.array(test.counts)
    other[:, 0] = rng.poisson(1.0, test.n_bins)
    assert not np.array_equal(model.predict_rate(dataclasses.replace(test, counts=other)),
                              rates), f"{s.kind}: the predictions ignore held-in spikes"


#: the session checks (families declaring ``session_model``; the rest skip them), sharing
#: three fits of the session example (four with ``session_heldout``)
SESSION_CHECKS: tuple[Callable[[_Run], None], ...] = (
    check_session_model_class, check_session_constructor_stores_settings_only,
    check_session_not_fitted_error, check_session_fit_returns_self, check_session_predict_rate,
    check_session_score, check_session_data_not_mutated, check_session_fit_leaves_global_rng,
    check_session_same_seed_same_rates, check_session_fit_twice,
    check_session_save_load_round_trip, check_session_heldout_cosmoothing,
)


#: every check, in the order they run (the fitting ones share three fits)
CHECKS: tuple[Callable[[_Run], None], ...] = (
    check_lives_in_its_folder, check_declarations, check_commands_resolve,
    check_constructor_signature, check_fit_signature, check_capability_members,
    check_constructor_stores_settings_only, check_clone_from_options, check_not_fitted_error,
    check_unfitted_refusals, check_example_data_type, check_fit_returns_self,
    check_learned_attributes, check_score, check_fit_leaves_global_rng, check_data_not_mutated,
    check_same_seed_same_numbers, check_wrong_shape_data_error, check_save_load_round_trip,
    check_load_refusals, check_sample_signature, check_sample_reproducible,
    check_sample_shape, check_fit_twice,
    check_resume_bitwise,
    check_brian2_backend, check_brian2_agrees,
    *SESSION_CHECKS,
)


class FamilyCheck:
    """One named check bound to one family; call it to run it."""

    def __init__(self, check: Callable[[_Run], None], run: _Run):
        self.check, self.run = check, run
        self.name = check.__name__.removeprefix("check_")

    def __call__(self) -> None:
        self.check(self.run)

    def __repr__(self) -> str:
        return f"{self.run.family.kind}-{self.name}"


def family_checks(family: Family) -> Iterator[FamilyCheck]:
    """The contract's checks for ``family``, each a callable named ``<kind>-<check>``; the
    ones that fit share one set of fits."""
    run = _Run(family)
    for check in CHECKS:
        yield FamilyCheck(check, run)


def parametrize_with_family_checks(families: Iterable[Family]) -> Callable:
    """A pytest decorator parametrising a test's ``check`` argument over every check of every
    family (ids ``<kind>-<check>``); :class:`Skip` becomes a pytest skip. Usage::

        @parametrize_with_family_checks(registered().values())
        def test_family(check):
            check()
    """
    import pytest

    checks = [c for f in families for c in family_checks(f)]

    def skipping(check: FamilyCheck) -> Callable[[], None]:
        def run() -> None:
            try:
                check()
            except Skip as exc:
                pytest.skip(str(exc))
        run.__name__ = repr(check)
        return run

    return pytest.mark.parametrize("check", [skipping(c) for c in checks],
                                   ids=[repr(c) for c in checks])
