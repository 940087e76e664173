"""A fitted GLM or R-GLM run as a Brian 2 network.

The models are discrete-time (bin ``Δ = model.bin_size_``); the network reproduces their
ancestral sampler exactly, not an ODE approximation of it:

- one ``NeuronGroup`` of ``n_trials × n_units`` units (trial ``b``, unit ``i`` at index
  ``b * n_units + i``), so all trials run side by side in one simulation;
- the stimulus drive is a 2-D ``TimedArray`` over (bin, condition × unit) read at the unit's
  ``condition * n_units + unit`` column; the bias when the stimulus is off is a constant column;
- the stimulus filter ``Σ_c Σ_k κ[i, c, k] Σ_l K_k(l) s_c(t - l)`` on the caller's stimulus
  series is an input fixed per bin (it reads no spike), precomputed from that series as in
  the model and read from a second 2-D ``TimedArray`` over (bin, trial × unit);
- spike history and coupling are finite (raised-cosine) lag filters: every unit keeps a ring
  buffer of its last ``L`` bin counts in state variables, shifted once per bin by a
  ``run_regularly`` operation, and the basis features ``Σ_l basis[l, k] y(t - l)`` are formed
  from it. Self-history weights ``h`` act inside the unit; coupling ``J`` is a ``Synapses``
  object between the units of one trial (``j ≠ i``) with a summed variable;
- the R-GLM state is a second ``NeuronGroup`` of ``n_trials × dim`` latents updated once per
  bin by the exact discrete map ``x_t = W0 y_{t-1} + R x_{t-1}`` (summed variables of
  ``Synapses`` for ``W0 y`` and ``R x``, then ``x = inp + rec``); ``B x_t`` reaches the units
  through a third summed variable. A linear ODE ``dx/dt = (R - I) x / Δ + …`` integrated at
  step ``Δ`` would only approximate this map;
- Poisson counts are drawn with Brian's ``poisson(λ)`` (any count per bin). With
  ``dt_substeps = S > 1`` the clock runs at ``Δ / S``, the drive is held for the bin (as in the
  model) and each sub-step draws ``Poisson(λ / S)``: the bin total is exactly ``Poisson(λ)``.

The network is assembled from the model's parts: the observation writes the rate and the draw
(:mod:`neurorec.core.observations`), and every drive term its variables, tables and synapses
(``brian2_equations`` / ``brian2_objects`` in :mod:`neurorec.families.glm.terms`, the latent in
:mod:`neurorec.families.glm.rglm`) on a :class:`_Net` builder.

Order inside a bin (all at ``t = kΔ``, slot ``start``): latent inputs are summed from the
previous bin's counts and state (order 0), ``x`` is updated (1), the ring buffer shifts (2), the
coupling and latent terms are summed onto the units (3), the drive and rate are formed (4),
counts are drawn (5).

In-bin correlations (``A``, correlated observations): units are drawn one after another
inside a bin, as in the model. The clock then runs at ``Δ / n_units`` and sub-step ``r`` of a
bin draws only the unit of rank ``r`` in ``unit_order_``, its drive raised by
``Σ_j A[i, j] y_j(t)`` over the units already drawn in this bin (a ``Synapses`` summed
variable of the current bin's counts, strictly lower triangular in the order, updated every
sub-step before the draw). Code is generated for Cython (runtime device); where Cython
cannot compile, the numpy target is used with a warning. Compiled extensions are cached in
``$NEUROREC_BRIAN2_CACHE`` or ``~/.cache/neurorec/brian2``. Object names are fixed so that a
second model with the same structure (lags, basis sizes, observation) reuses the compiled code.
"""

from __future__ import annotations

import functools
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from neurorec.core.errors import DataError, DivergenceError
from neurorec.families.glm.glm import GLM, MAX_RATE_HZ
from neurorec.families.glm.terms import InBin

CACHE_ENV = "NEUROREC_BRIAN2_CACHE"


def cache_dir() -> Path:
    """Folder for Brian 2's compiled Cython extensions (``$NEUROREC_BRIAN2_CACHE`` overrides)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "neurorec" / "brian2"


@contextmanager
def _brian2_settings():
    """Cython target with the project's cache folder; restores Brian's prefs afterwards."""
    from brian2 import prefs

    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    old = prefs["codegen.target"], prefs["codegen.runtime.cython.cache_dir"]
    prefs["codegen.runtime.cython.cache_dir"] = str(folder)
    try:
        prefs["codegen.target"] = "cython" if _cython_available(str(folder)) else "numpy"
        yield
    finally:
        prefs["codegen.target"], prefs["codegen.runtime.cython.cache_dir"] = old


@contextmanager
def _target(name: str):
    """Code generated inside uses ``name``: one-off set-up code (building synapses from index
    arrays) runs as numpy instead of costing a Cython compilation each."""
    from brian2 import prefs

    old = prefs["codegen.target"]
    prefs["codegen.target"] = name
    try:
        yield
    finally:
        prefs["codegen.target"] = old


@functools.cache
def _cython_available(folder: str) -> bool:
    from brian2.codegen.runtime.cython_rt import CythonCodeObject

    if CythonCodeObject.is_available():
        return True
    warnings.warn("brian2: Cython cannot compile here; simulating with the (slower) numpy "
                  "target", RuntimeWarning, stacklevel=4)
    return False


@contextmanager
def _seeded(seed: int):
    """Brian seeds numpy's global generator: seed it and give the caller's state back."""
    from brian2 import seed as brian_seed

    state = np.random.get_state()  # noqa: NPY002 (Brian's generator is numpy's global one)
    brian_seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def _validate(model: GLM, condition: np.ndarray, n_bins: int, dt_substeps: int,
              counts: np.ndarray | None) -> np.ndarray:
    model.check_fitted()
    where = f"simulate_brian2({type(model).__name__})"
    if _in_bin(model) and dt_substeps != 1:
        raise DataError(f"{where}: dt_substeps: a model with in-bin correlations (A) uses one "
                        f"clock step per unit inside each bin; expected 1, got {dt_substeps}")
    if _in_bin(model) and counts is not None:
        raise DataError(f"{where}: counts: the drive on given counts is defined for models "
                        "without in-bin correlations (A)")
    condition = np.asarray(condition)
    if condition.ndim != 1 or not np.issubdtype(condition.dtype, np.integer):
        raise DataError(f"{where}: condition: expected a 1-D integer array, got "
                        f"{condition.dtype} of shape {condition.shape}")
    if condition.size and (condition.min() < 0 or condition.max() >= model.n_conditions_):
        raise DataError(f"{where}: condition: expected values in 0..{model.n_conditions_ - 1}, "
                        f"got {condition.min()}..{condition.max()}")
    if int(dt_substeps) != dt_substeps or dt_substeps < 1:
        raise DataError(f"{where}: dt_substeps: expected an integer ≥ 1, got {dt_substeps!r}")
    if dt_substeps > 1 and model.observation_name != "poisson":
        raise DataError(f"{where}: dt_substeps: sub-steps split Poisson counts; "
                        f"{model.observation_name} observations need dt_substeps=1, "
                        f"got {dt_substeps}")
    if n_bins < 1:
        raise DataError(f"{where}: n_bins: expected ≥ 1, got {n_bins}")
    if counts is not None:
        assert counts.shape == (len(condition), n_bins, model.n_units_), counts.shape
        assert dt_substeps == 1
    return condition.astype(np.int64)


def _in_bin(model: GLM) -> bool:
    """Whether the model couples units inside a bin (a non-zero ``A`` in its unit order)."""
    return any(isinstance(t, InBin) and t.active(_Params(model)) for t in model.terms)


class _Params:
    """What :meth:`InBin.active` reads before a network exists."""

    def __init__(self, model: GLM):
        self.model, self.p, self.context = model, model.params_, model.context()


def _block_pairs(n_trials: int, n_pre: int, n_post: int,
                 skip_diagonal: bool = False) -> dict[str, np.ndarray]:
    """``connect`` arguments joining all (pre, post) pairs inside each trial's block."""
    pre_l, post_l = np.meshgrid(np.arange(n_pre), np.arange(n_post), indexing="ij")
    keep = pre_l != post_l if skip_diagonal else np.ones(pre_l.shape, dtype=bool)
    pre_l, post_l = pre_l[keep], post_l[keep]
    trial = np.repeat(np.arange(n_trials), len(pre_l))
    pre = trial * n_pre + np.tile(pre_l, n_trials)
    post = trial * n_post + np.tile(post_l, n_trials)
    return {"i": pre, "j": post}


class _Net:
    """The network under construction: what terms declare (unit equations, lag bases, drive
    terms, ``TimedArray`` tables) and, once the unit group exists, the objects they add.

    Unit ``b * n_units + i`` is trial ``b``'s unit ``i``; ``p`` the fitted parameters;
    ``context`` the model's :class:`~neurorec.families.glm.terms.TermContext`.
    """

    def __init__(self, model: GLM, n_trials: int, n_bins: int, n_sub: int, in_bin: bool,
                 stimulus: np.ndarray | None, bin_dt):
        self.model, self.p, self.context = model, model.params_, model.context()
        self.n_trials, self.n_bins, self.n_sub, self.in_bin = n_trials, n_bins, n_sub, in_bin
        self.stimulus, self.bin_dt = stimulus, bin_dt
        self.eqs: list[str] = []
        self.drive_terms: list[str] = []
        self.lag_bases: dict[str, np.ndarray] = {}  # "h" / "c" -> (n_lags, n_basis)
        self.shift_first: list[str] = []  # run first in the per-bin shift (shared writes)
        self.condition_table: np.ndarray | None = None
        self.trial_tables: dict[str, np.ndarray] = {}
        self.objects: list = []
        self.units = None
        self.condition: np.ndarray | None = None  # (n_trials,) condition of each trial

    @staticmethod
    def linear(terms: list[str]) -> str:
        return " + ".join(terms) if terms else "0"

    def add_condition_table(self, table: np.ndarray) -> None:
        """Add (n_bins, n_conditions, n_units) drive to the per-condition input, read at the
        unit's ``condition * n_units + unit`` column of one 2-D ``TimedArray``."""
        table = np.asarray(table, dtype=np.float64)
        self.condition_table = table if self.condition_table is None \
            else self.condition_table + table

    def add_trial_table(self, name: str, table: np.ndarray) -> None:
        """A (n_bins, n_trials * n_units) input fixed per bin, read at column ``i``."""
        self.trial_tables[name] = np.ascontiguousarray(table, dtype=np.float64)

    def synapses(self, source, target, eqs: str, name: str, n_pre: int, n_post: int,
                 skip_diagonal: bool = False, **kwargs):
        """Synapses joining all (pre, post) pairs inside each trial's block."""
        import brian2 as b2

        syn = b2.Synapses(source, target, eqs, name=name, **kwargs)
        with _target("numpy"):
            syn.connect(**_block_pairs(self.n_trials, n_pre, n_post, skip_diagonal))
        return syn

    @staticmethod
    def by_pair(syn, n_pre_block: int, n_post_block: int) -> tuple:
        """Each synapse's (post, pre) index inside its trial's block."""
        return syn.j[:] % n_post_block, syn.i[:] % n_pre_block

    def add_summed(self, syn, order: int) -> None:
        """Add ``syn`` with its summed variables updated at ``start`` in slot ``order``."""
        for updater in syn.summed_updaters.values():
            updater.when, updater.order = "start", order
        self.objects.append(syn)


def _run(model: GLM, condition: np.ndarray, seed: int, n_bins: int | None = None,
         dt_substeps: int = 1, counts: np.ndarray | None = None,
         record_drive: bool = False,
         stimulus: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Build and run the network; ``counts`` (n_trials, n_bins, n_units) replaces the draws by
    given counts (the drive then is the model's one-step-ahead drive on them); ``stimulus``
    (n_trials, n_bins, n_channels) drives a model with a stimulus filter.

    Returns (n_trials, n_bins, n_units) counts and, with ``record_drive``, the drive.
    """
    import brian2 as b2

    n_bins = int(n_bins or model.n_bins_)
    condition = _validate(model, condition, n_bins, dt_substeps, counts)
    n_trials, n_units, n_sub = len(condition), model.n_units_, int(dt_substeps)
    in_bin = _in_bin(model)
    if in_bin:  # one sub-step per unit: rank r draws at sub-step r
        n_sub = n_units
    n = n_trials * n_units
    bin_dt = float(model.bin_size_) * b2.second
    net = _Net(model, n_trials, n_bins, n_sub, in_bin, stimulus, bin_dt)
    net.condition = condition
    for term in model.terms:  # declarations (and the stimulus checks) before any object
        term.brian2_equations(net)
    if n_trials == 0:
        return np.zeros((0, n_bins, n_units)), (np.zeros((0, n_bins, n_units))
                                                 if record_drive else None)
    obs = model.obs

    # ------------------------------------------------------------------ unit equations
    eqs = ["cu : integer (constant)", "drive : 1", "ybin : 1", "rate : 1",
           "first_over : integer", "ceiling : 1 (shared, constant)",
           "inv_sub : 1 (shared, constant)", "bin_dt : second (shared, constant)"]
    n_lags = max((basis.shape[0] for basis in net.lag_bases.values()), default=0)
    eqs += [f"y_{lag} : 1" for lag in range(1, n_lags + 1)]
    for name, basis in net.lag_bases.items():
        eqs += [f"f{name}_{k} : 1" for k in range(basis.shape[1])]
        eqs += [f"b{name}_{lag}_{k} : 1 (shared, constant)"
                for lag in range(1, basis.shape[0] + 1) for k in range(basis.shape[1])]
    eqs += net.eqs + obs.brian2_equations()

    namespace = {}
    terms = []
    if net.condition_table is not None:
        table = np.ascontiguousarray(net.condition_table.reshape(n_bins, -1))
        namespace["neurorec_stim"] = b2.TimedArray(table, dt=bin_dt, name="neurorec_stim")
        terms.append("neurorec_stim(t, cu)")
    for name, table in net.trial_tables.items():
        namespace[name] = b2.TimedArray(table, dt=bin_dt, name=name)
        terms.append(f"{name}(t, i)")
    if counts is not None:
        given = np.ascontiguousarray(counts.reshape(n_trials, n_bins, n_units)
                                     .transpose(1, 0, 2).reshape(n_bins, n), dtype=np.float64)
        namespace["neurorec_given"] = b2.TimedArray(given, dt=bin_dt, name="neurorec_given")
    units = b2.NeuronGroup(n, "\n".join(eqs), method="exact", dt=bin_dt / n_sub,
                           namespace=namespace, name="neurorec_units")
    net.units = units
    units.cu = (condition[:, None] * n_units + np.arange(n_units)[None, :]).ravel()
    units.first_over = -1
    cap = model._sample_cap()  # runaway-safe sampling caps the rate instead of raising
    units.ceiling = MAX_RATE_HZ * model.bin_size_ if cap is None else cap
    units.inv_sub = 1.0 / n_sub
    units.bin_dt = bin_dt
    for name, basis in net.lag_bases.items():
        for lag in range(1, basis.shape[0] + 1):
            for k in range(basis.shape[1]):
                setattr(units, f"b{name}_{lag}_{k}", basis[lag - 1, k])
    for var, values in obs.brian2_values(model.params_).items():
        setattr(units, var, np.tile(values, n_trials))
    objects: list = [units]

    # ring buffer shift (order 2): y_l ← count l bins back, then the basis features
    shift = [*net.shift_first, *[f"y_{lag} = y_{lag - 1}" for lag in range(n_lags, 1, -1)]]
    if n_lags:
        shift.append("y_1 = ybin")
    shift.append("ybin = 0")
    for name, basis in net.lag_bases.items():
        for k in range(basis.shape[1]):
            shift.append(f"f{name}_{k} = " + net.linear(
                [f"b{name}_{lag}_{k} * y_{lag}" for lag in range(1, basis.shape[0] + 1)]))
    objects.append(units.run_regularly("\n".join(shift), dt=bin_dt, when="start", order=2,
                                       name="neurorec_shift"))

    # drive and expected count (order 4)
    drive_code = ["drive = " + net.linear(terms + net.drive_terms),
                  *obs.brian2_drive_code(in_bin)]
    objects.append(units.run_regularly("\n".join(drive_code), dt=bin_dt, when="start",
                                       order=4, name="neurorec_drive"))

    # draws (order 5, every sub-step; order 6 after the in-bin input of order 5)
    if counts is not None:
        draw = "ybin = neurorec_given(t, i)"
    elif in_bin:
        # the unit whose rank is this sub-step's slot draws, its drive raised by the in-bin
        # input ``ain``; other units add 0. The runaway check sees the raised rate.
        draw = obs.brian2_in_bin_draw("int(rank == slot)")
    else:
        draw = obs.brian2_draw()
    objects.append(units.run_regularly(draw, when="start", order=6 if in_bin else 5,
                                       name="neurorec_draw"))
    if in_bin:
        objects.append(units.run_regularly("slot = slot + 1", when="end",
                                           name="neurorec_slot"))
    for term in model.terms:
        term.brian2_objects(net)
    objects += net.objects

    # counts of bin k-1, read at t = kΔ before the shift resets them
    count_mon = b2.StateMonitor(units, "ybin", record=True, dt=bin_dt, when="start", order=1,
                                name="neurorec_counts")
    objects.append(count_mon)
    if record_drive:
        drive_mon = b2.StateMonitor(units, "drive", record=True, dt=bin_dt, when="start",
                                    order=6, name="neurorec_drive_monitor")
        objects.append(drive_mon)

    network = b2.Network(*objects)
    with _seeded(seed):
        network.run(n_bins * bin_dt, namespace={})

    flat = np.concatenate([count_mon.ybin[:, 1:], np.asarray(units.ybin[:])[:, None]], axis=1)
    out = flat.reshape(n_trials, n_units, n_bins).transpose(0, 2, 1).copy()
    first_over = np.asarray(units.first_over[:]).reshape(n_trials, n_units)
    if (first_over >= 0).any() and cap is None:
        _raise_runaway(model, first_over)
    drive = None
    if record_drive:
        drive = np.asarray(drive_mon.drive).reshape(n_trials, n_units, n_bins).transpose(0, 2, 1)
    return out, drive


def _raise_runaway(model: GLM, first_over: np.ndarray) -> None:
    over = np.where(first_over >= 0, first_over, np.iinfo(np.int64).max)
    trial, unit = np.unravel_index(int(np.argmin(over)), over.shape)
    raise DivergenceError(
        f"simulation diverged: unit {unit} expected more than {MAX_RATE_HZ * model.bin_size_:.3g}"
        f" spikes in one {model.bin_size_ * 1e3:g} ms bin (trial {trial}, bin "
        f"{first_over[trial, unit]}; more than {MAX_RATE_HZ:g} Hz): positive feedback through "
        "history/coupling/recurrence runs away in closed loop (try link: softplus, or a "
        "stronger penalty)")


def simulate_brian2(model: GLM, condition: np.ndarray, seed: int, n_bins: int | None = None,
                    dt_substeps: int = 1, stimulus: np.ndarray | None = None) -> np.ndarray:
    """Sample a fitted GLM / R-GLM with Brian 2, one trial per entry of ``condition``.

    The same distribution as ``model.sample(n, seed=seed, like=...)`` (not the
    same draws:
    Brian's generator is numpy's, seeded with ``seed``; numpy's global state is restored).

    Args:
        model: fitted :class:`~neurorec.families.GLM` or :class:`~neurorec.families.RGLM`
            (Poisson, Bernoulli or Gaussian observations, with or without in-bin
            correlations ``A``).
        condition: (n_trials,) condition index of each trial.
        seed: seed of Brian's random numbers.
        n_bins: bins per trial (default: the fitted ``n_bins_``).
        dt_substeps: clock steps per bin (Poisson only); the bin's count is the sum of
            ``Poisson(λ / dt_substeps)`` draws, exactly ``Poisson(λ)``. Must be 1 with in-bin
            correlations (which take one step per unit).
        stimulus: (n_trials, n_bins, n_channels) binned stimulus series driving a model with a
            stimulus filter (required there, like ``model.sample``); others ignore it.
    Returns:
        (n_trials, n_bins, n_units) counts (float64, like ``model.sample``).
    Raises:
        DataError: a model with a stimulus filter got no stimulus, or one of another shape.
        DivergenceError: a unit's expected count exceeded ``MAX_RATE_HZ × bin_size``.
    """
    with _brian2_settings():
        return _run(model, condition, seed, n_bins=n_bins, dt_substeps=dt_substeps,
                    stimulus=stimulus)[0]


def drive_brian2(model: GLM, counts: np.ndarray, condition: np.ndarray,
                 stimulus: np.ndarray | None = None) -> np.ndarray:
    """(n_trials, n_bins, n_units) drive the network computes when it is fed ``counts``
    instead of its own draws (and ``stimulus``, for a stimulus filter): the one-step-ahead
    drive ``model._drive`` defines."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 3 or counts.shape[2] != getattr(model, "n_units_", counts.shape[2]):
        raise DataError(f"drive_brian2: counts: expected (n_trials, n_bins, n_units), got "
                        f"shape {counts.shape}")
    with _brian2_settings():
        return _run(model, condition, 0, n_bins=counts.shape[1], counts=counts,
                    record_drive=True, stimulus=stimulus)[1]
