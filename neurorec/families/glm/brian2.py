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
import torch

from neurorec.core.errors import DataError, DivergenceError
from neurorec.families.glm.glm import GLM, MAX_RATE_HZ, history_features

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
    model._check_fitted()
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
    p = model.params_
    return "A" in p and bool(np.any(p["A"] * model._order_mask().cpu().numpy()))


def _stimulus_table(model: GLM, n_bins: int) -> np.ndarray:
    """(n_bins, n_conditions * n_units) stimulus drive; column ``c * n_units + i``."""
    p = model.params_
    if "beta" in p:
        drive = np.einsum("ick,tk->tci", p["beta"], model.stimulus_basis(n_bins))
    else:
        drive = np.broadcast_to(p["bias"], (n_bins, model.n_conditions_, model.n_units_))
    return np.ascontiguousarray(drive.reshape(n_bins, -1), dtype=np.float64)


def _stimulus_filter_table(model: GLM, stimulus: np.ndarray | None, n_trials: int,
                           n_bins: int) -> np.ndarray | None:
    """(n_bins, n_trials * n_units) stimulus-filter drive, column ``b * n_units + i``; None
    for a model without a stimulus filter (which ignores ``stimulus``, as ``model.sample``)."""
    p = model.params_
    if "k" not in p:
        return None
    n_channels = p["k"].shape[1]
    got = None if stimulus is None else np.shape(stimulus)
    if got != (n_trials, n_bins, n_channels):
        raise DataError(f"simulate_brian2({type(model).__name__}): stimulus: a model with a "
                        f"stimulus filter samples given a stimulus of shape ({n_trials}, "
                        f"{n_bins}, {n_channels}) (trials, bins, channels), got {got}")
    basis = torch.as_tensor(model.stimulus_filter_basis(model.bin_size_), dtype=torch.float64)
    features = history_features(torch.as_tensor(np.asarray(stimulus), dtype=torch.float64),
                                basis, first_lag=0).numpy()
    drive = np.einsum("btck,ick->tbi", features, p["k"])
    return np.ascontiguousarray(drive.reshape(n_bins, -1), dtype=np.float64)


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


def _linear(terms: list[str]) -> str:
    return " + ".join(terms) if terms else "0"


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
    p = model.params_
    n_trials, n_units, n_sub = len(condition), model.n_units_, int(dt_substeps)
    in_bin = _in_bin(model)
    if in_bin:  # one sub-step per unit: rank r draws at sub-step r
        n_sub = n_units
    n = n_trials * n_units
    stim_filter = _stimulus_filter_table(model, stimulus, n_trials, n_bins)
    if n_trials == 0:
        return np.zeros((0, n_bins, n_units)), (np.zeros((0, n_bins, n_units))
                                                 if record_drive else None)
    bin_dt = float(model.bin_size_) * b2.second
    obs = model.observation_name

    bases = {}
    if "h" in p:
        bases["h"] = model.history_basis(model.bin_size_)
    if "J" in p:
        bases["c"] = model.coupling_basis(model.bin_size_)
    n_lags = max((basis.shape[0] for basis in bases.values()), default=0)
    rglm = "W0" in p

    # ------------------------------------------------------------------ unit equations
    eqs = ["cu : integer (constant)", "drive : 1", "ybin : 1", "rate : 1",
           "first_over : integer", "ceiling : 1 (shared, constant)",
           "inv_sub : 1 (shared, constant)", "bin_dt : second (shared, constant)"]
    eqs += [f"y_{lag} : 1" for lag in range(1, n_lags + 1)]
    for name, basis in bases.items():
        eqs += [f"f{name}_{k} : 1" for k in range(basis.shape[1])]
        eqs += [f"b{name}_{lag}_{k} : 1 (shared, constant)"
                for lag in range(1, basis.shape[0] + 1) for k in range(basis.shape[1])]
    if "h" in bases:
        eqs += [f"h_{k} : 1 (constant)" for k in range(bases["h"].shape[1])]
    if "c" in bases:
        eqs.append("coup : 1")
    if rglm:
        eqs.append("lat : 1")
    if obs == "gaussian":
        eqs.append("sigma : 1 (constant)")
    if in_bin:
        eqs += ["rank : integer (constant)", "slot : integer (shared)", "ain : 1"]

    stim = b2.TimedArray(_stimulus_table(model, n_bins), dt=bin_dt, name="neurorec_stim")
    namespace = {"neurorec_stim": stim}
    if stim_filter is not None:
        namespace["neurorec_stim_filter"] = b2.TimedArray(stim_filter, dt=bin_dt,
                                                          name="neurorec_stim_filter")
    if counts is not None:
        given = np.ascontiguousarray(counts.reshape(n_trials, n_bins, n_units)
                                     .transpose(1, 0, 2).reshape(n_bins, n), dtype=np.float64)
        namespace["neurorec_given"] = b2.TimedArray(given, dt=bin_dt, name="neurorec_given")
    units = b2.NeuronGroup(n, "\n".join(eqs), method="exact", dt=bin_dt / n_sub,
                           namespace=namespace, name="neurorec_units")
    units.cu = (condition[:, None] * n_units + np.arange(n_units)[None, :]).ravel()
    units.first_over = -1
    units.ceiling = MAX_RATE_HZ * model.bin_size_
    units.inv_sub = 1.0 / n_sub
    units.bin_dt = bin_dt
    for name, basis in bases.items():
        for lag in range(1, basis.shape[0] + 1):
            for k in range(basis.shape[1]):
                setattr(units, f"b{name}_{lag}_{k}", basis[lag - 1, k])
    if "h" in bases:
        for k in range(bases["h"].shape[1]):
            setattr(units, f"h_{k}", np.tile(p["h"][:, k], n_trials))
    if obs == "gaussian":
        units.sigma = np.tile(np.exp(p["log_sigma"]), n_trials)
    if in_bin:
        rank = np.empty(n_units, dtype=np.int64)
        rank[model.unit_order_] = np.arange(n_units)
        units.rank = np.tile(rank, n_trials)
    objects: list = [units]

    # ring buffer shift (order 2): y_l ← count l bins back, then the basis features
    shift = [f"y_{lag} = y_{lag - 1}" for lag in range(n_lags, 1, -1)]
    if n_lags:
        shift.append("y_1 = ybin")
    shift.append("ybin = 0")
    if in_bin:  # Brian wants writes to shared (scalar) variables first
        shift.insert(0, "slot = 0")
    for name, basis in bases.items():
        for k in range(basis.shape[1]):
            shift.append(f"f{name}_{k} = " + _linear(
                [f"b{name}_{lag}_{k} * y_{lag}" for lag in range(1, basis.shape[0] + 1)]))
    objects.append(units.run_regularly("\n".join(shift), dt=bin_dt, when="start", order=2,
                                       name="neurorec_shift"))

    # drive and expected count (order 4)
    terms = ["neurorec_stim(t, cu)"]
    if stim_filter is not None:
        terms.append("neurorec_stim_filter(t, i)")
    if "h" in bases:
        terms += [f"h_{k} * fh_{k}" for k in range(bases["h"].shape[1])]
    if "c" in bases:
        terms.append("coup")
    if rglm:
        terms.append("lat")
    drive_code = ["drive = " + " + ".join(terms)]
    if obs == "poisson":
        if model.spec.link == "exp":
            drive_code.append("rate = exp(drive)")
        else:  # softplus, overflow-free
            drive_code.append("rate = drive * int(drive > 0) + log1p(exp(-abs(drive)))")
        drive_code += [] if in_bin else [  # with A the draw checks the raised rate
            "first_over = first_over + (int(t / bin_dt + 0.5) - first_over)"
            " * int(first_over < 0) * int(not (rate <= ceiling))",
            # past the ceiling the run is reported as diverged; keep the draws finite meanwhile
            "rate = rate * int(rate <= ceiling) + ceiling * int(not (rate <= ceiling))"]
    elif obs == "bernoulli":
        drive_code.append("rate = 1 / (1 + exp(-drive))")
    objects.append(units.run_regularly("\n".join(drive_code), dt=bin_dt, when="start",
                                       order=4, name="neurorec_drive"))

    # draws (order 5, every sub-step; order 6 after the in-bin input of order 5)
    if counts is not None:
        draw = "ybin = neurorec_given(t, i)"
    elif in_bin:
        draw = _in_bin_draw(model)
    elif obs == "poisson":
        draw = "ybin = ybin + poisson(rate * inv_sub)"
    elif obs == "bernoulli":
        draw = "ybin = int(rand() < rate)"
    else:
        draw = "ybin = drive + sigma * randn()"
    objects.append(units.run_regularly(draw, when="start", order=6 if in_bin else 5,
                                       name="neurorec_draw"))
    if in_bin:
        objects.append(units.run_regularly("slot = slot + 1", when="end",
                                           name="neurorec_slot"))

    def summed(syn: b2.Synapses, order: int) -> b2.Synapses:
        for updater in syn.summed_updaters.values():
            updater.when, updater.order = "start", order
        return syn

    def by_pair(syn: b2.Synapses, n_pre_block: int, n_post_block: int) -> tuple:
        """Each synapse's (post, pre) index inside its trial's block."""
        return syn.j[:] % n_post_block, syn.i[:] % n_pre_block

    if "c" in bases:
        n_k = bases["c"].shape[1]
        syn_eqs = [f"w_{k} : 1 (constant)" for k in range(n_k)]
        syn_eqs.append("coup_post = " + _linear([f"w_{k} * fc_{k}_pre" for k in range(n_k)])
                       + " : 1 (summed)")
        coupling = b2.Synapses(units, units, "\n".join(syn_eqs), name="neurorec_coupling")
        with _target("numpy"):
            coupling.connect(**_block_pairs(n_trials, n_units, n_units, skip_diagonal=True))
        post_u, pre_u = by_pair(coupling, n_units, n_units)
        for k in range(n_k):
            setattr(coupling, f"w_{k}", p["J"][post_u, pre_u, k])
        objects.append(summed(coupling, 3))

    if in_bin:  # Σ_j A[i, j] y_j(t) over units already drawn in this bin, every sub-step
        inbin = b2.Synapses(units, units, "w : 1 (constant)\nain_post = w * ybin_pre : 1 "
                            "(summed)", dt=bin_dt / n_sub, name="neurorec_inbin")
        with _target("numpy"):
            inbin.connect(**_block_pairs(n_trials, n_units, n_units, skip_diagonal=True))
        post_u, pre_u = by_pair(inbin, n_units, n_units)
        inbin.w = (p["A"] * model._order_mask().cpu().numpy())[post_u, pre_u]
        objects.append(summed(inbin, 5))

    if rglm:
        dim = p["R"].shape[0]
        latent = b2.NeuronGroup(n_trials * dim, "x : 1\ninp : 1\nrec : 1", dt=bin_dt,
                                name="neurorec_latent")

        def linear_map(source, target, expr: str, weights: np.ndarray, n_pre: int,
                       n_post: int, name: str) -> b2.Synapses:
            """Synapses computing ``expr = Σ_pre weights[post, pre] · pre_var`` per trial."""
            syn = b2.Synapses(source, target, f"w : 1 (constant)\n{expr} : 1 (summed)",
                              name=name)
            with _target("numpy"):
                syn.connect(**_block_pairs(n_trials, n_pre, n_post))
            post, pre = by_pair(syn, n_pre, n_post)
            syn.w = weights[post, pre]
            return syn

        syn_in = linear_map(units, latent, "inp_post = w * ybin_pre", p["W0"], n_units, dim,
                            "neurorec_latent_in")
        syn_rec = linear_map(latent, latent, "rec_post = w * x_pre", p["R"], dim, dim,
                             "neurorec_latent_rec")
        syn_out = linear_map(latent, units, "lat_post = w * x_pre", p["B"], dim, n_units,
                             "neurorec_latent_out")
        step = latent.run_regularly("x = inp + rec", when="start", order=1,
                                    name="neurorec_latent_step")
        objects += [latent, summed(syn_in, 0), summed(syn_rec, 0), step, summed(syn_out, 3)]

    # counts of bin k-1, read at t = kΔ before the shift resets them
    count_mon = b2.StateMonitor(units, "ybin", record=True, dt=bin_dt, when="start", order=1,
                                name="neurorec_counts")
    objects.append(count_mon)
    if record_drive:
        drive_mon = b2.StateMonitor(units, "drive", record=True, dt=bin_dt, when="start",
                                    order=6, name="neurorec_drive_monitor")
        objects.append(drive_mon)

    net = b2.Network(*objects)
    with _seeded(seed):
        net.run(n_bins * bin_dt, namespace={})

    flat = np.concatenate([count_mon.ybin[:, 1:], np.asarray(units.ybin[:])[:, None]], axis=1)
    out = flat.reshape(n_trials, n_units, n_bins).transpose(0, 2, 1).copy()
    first_over = np.asarray(units.first_over[:]).reshape(n_trials, n_units)
    if (first_over >= 0).any():
        _raise_runaway(model, first_over)
    drive = None
    if record_drive:
        drive = np.asarray(drive_mon.drive).reshape(n_trials, n_units, n_bins).transpose(0, 2, 1)
    return out, drive


def _in_bin_draw(model: GLM) -> str:
    """Draw of the unit whose rank is this sub-step's slot, its drive raised by the in-bin
    input ``ain``; other units add 0. The runaway check sees the raised rate."""
    mine = "int(rank == slot)"
    obs = model.observation_name
    if obs == "gaussian":
        return f"ybin = ybin + {mine} * (drive + ain + sigma * randn())"
    if obs == "bernoulli":
        return f"ybin = ybin + {mine} * int(rand() < 1 / (1 + exp(-(drive + ain))))"
    if model.spec.link == "exp":
        rate = "exp(drive + ain)"
    else:
        rate = "(drive + ain) * int(drive + ain > 0) + log1p(exp(-abs(drive + ain)))"
    return "\n".join([
        f"rate = {rate}",
        "first_over = first_over + (int(t / bin_dt + 0.5 * inv_sub) - first_over)"
        f" * int(first_over < 0) * {mine} * int(not (rate <= ceiling))",
        "rate = rate * int(rate <= ceiling) + ceiling * int(not (rate <= ceiling))",
        f"ybin = ybin + {mine} * poisson(rate)"])


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

    The same distribution as ``model.sample(condition, n_bins, seed, stimulus)`` (not the
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
