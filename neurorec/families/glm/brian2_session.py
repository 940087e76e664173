"""A fitted session GLM or session R-GLM run as a Brian 2 network on a continuous session.

The session models (:class:`~neurorec.families.glm.session.SessionGLM`,
:class:`~neurorec.families.glm.rglm.SessionRGLM`) are discrete-time, one bin ``Δ =
session.bin_size``; the network reproduces their one-step-ahead drive exactly (fed the
recorded counts) and draws from the same conditional distribution (closed loop):

- one ``NeuronGroup`` of ``n_units`` units, clock ``Δ``; bin ``k`` of the session runs at
  ``t = kΔ`` (the session's bins in order, whatever its clock does between segments);
- the covariates enter as ``TimedArray`` s, one per covariate term (``position``,
  ``head_direction``, ...): the term's contribution ``B_c(x_c(t)) · β_cu`` over
  (bin, unit), read at column ``i``; the bias ``b_u`` is a constant of the unit;
- the own-history filter is a ring buffer of the unit's last ``L`` bin counts in state
  variables, shifted once per bin and zeroed where a history segment starts (a
  ``TimedArray`` ``keep_h`` that is 0 on each segment's first bin, as
  :func:`~neurorec.core.splines.lagged` never reaches across a segment); the drive reads
  ``Σ_l w_ul y_u(t − l)`` with the unit's lag kernel ``w_ul = Σ_k h_uk H_k(l)``;
- the R-GLM latent is a second ``NeuronGroup`` of ``dim`` states updated once per bin by
  the exact map ``x_t = W0 e_{t-1} + R x_{t-1} [+ V z_t]`` with ``e_{t-1} = y_{t-1} −
  exp(η^GLM_{t-1})`` (the fixed GLM's prediction error, the model's default) or ``y_{t-1} −
  ȳ``, restarted at 0 where each segment starts (``keep_x``, as the model's fit and
  prediction do); ``W0 e``, ``R x`` and ``B x`` are summed variables of ``Synapses``;
  ``V z_t`` (``recurrent.stimulus_input``) is a ``TimedArray`` over (bin, state);
- Poisson counts are drawn with Brian's ``poisson(λ)`` (any count per bin).

Order inside bin ``k`` (slot ``start``): 0 the latent's input ``e`` from the previous bin's
count and GLM drive; 1 summed ``W0 e`` and ``R x``; 2 ``x`` updated; 3 ring buffer shift;
4 summed ``B x``; 5 drive and rate; 6 draw (or the given count).

Code is generated for Cython (runtime device, cache in ``$NEUROREC_BRIAN2_CACHE``) or, with
``target="numpy"``, for numpy (no compilation: faster for short runs).
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

import numpy as np

from neurorec.core.errors import DataError, DivergenceError
from neurorec.core.recurrence import STATE_MAX
from neurorec.data.session import BinnedSession, segment_bounds
from neurorec.families.glm.brian2 import _brian2_settings, _seeded, _target
from neurorec.families.glm.glm import MAX_RATE_HZ

__all__ = ["drive_brian2_session", "session_inputs", "simulate_brian2_session", "with_counts"]


def _parts(model):
    """(glm, latent params or None, rglm or None) of a fitted session GLM / R-GLM."""
    model.check_fitted()
    if hasattr(model, "glm_"):
        return model.glm_, {k: np.asarray(v, float) for k, v in model.latent_.items()}, model
    return model, None, None


def _starts(segment: np.ndarray) -> np.ndarray:
    """(n_bins,) 1.0, but 0.0 on each segment's first bin (bin 0 included)."""
    segment = np.asarray(segment)
    keep = np.ones(len(segment))
    if len(segment):
        keep[0] = 0.0
        keep[1:][segment[1:] != segment[:-1]] = 0.0
    return keep


def session_inputs(model, session: BinnedSession) -> dict:
    """What the network reads from the session and the fitted model (numpy float64).

    Args:
        model: fitted :class:`~neurorec.families.glm.session.SessionGLM` or
            :class:`~neurorec.families.glm.rglm.SessionRGLM`.
        session: the session whose covariates (and, for the drive, counts) are fed.
    Returns:
        ``terms``: covariate term name -> (n_bins, n_units) contribution to the drive
        (log expected count per bin); ``bias`` (n_units,); ``kernel`` (n_units, L)
        own-history weight of lag 1..L, or None; ``keep_h`` (n_bins,) 0 where a history
        segment starts, else 1; and for an R-GLM ``latent`` (``W0`` (dim, U), ``R`` (dim, dim),
        ``B`` (U, dim), ``b`` (U,)), ``keep_x`` (n_bins,) 0 where the latent restarts,
        ``vz`` (n_bins, dim) or None, ``y_mean`` (U,), ``residual`` (bool).
    """
    from neurorec.core.bases import raised_cosine_log
    from neurorec.families.glm.session import covariate_design

    glm, latent, rglm = _parts(model)
    where = f"simulate_brian2_session({type(model).__name__})"
    if session.n_units != glm.n_units_:
        raise DataError(f"{where}: session has {session.n_units} units, the model "
                        f"{glm.n_units_}")
    if not np.isclose(session.bin_size, glm.bin_size_):
        raise DataError(f"{where}: session bin_size {session.bin_size} s, the model's "
                        f"{glm.bin_size_} s")
    segment = np.asarray(session.segment)
    starts = segment_bounds(segment)[:-1]
    if len(np.unique(segment[starts])) != len(starts):
        raise DataError(f"{where}: session.segment: a segment id recurs after another one; "
                        "expected one id per contiguous stretch")
    cov = covariate_design(glm.spec.covariates, session, glm.spec.name, glm.bounds_)
    terms = {}
    for name, block in zip(cov.names, cov.blocks, strict=True):
        terms[name] = np.asarray(block.dot(glm.coef_[:, glm.slices_[name]].T), float)
    p = 1 + cov.n_cols
    out = {"terms": terms, "bias": glm.coef_[:, 0].astype(float), "kernel": None,
           "keep_h": _starts(segment)}
    if glm.n_history:
        n_lags = max(1, round(glm.spec.history.duration / session.bin_size))
        basis = raised_cosine_log(n_lags, glm.n_history)  # (L, K)
        kernel = glm.coef_[:, p:p + glm.n_history] @ basis.T  # (U, L)
        if glm.heldout is not None:  # a held-out unit reads no own history
            kernel[np.asarray(glm.heldout, bool)] = 0.0
        out["kernel"] = kernel
    if latent is not None:
        out["keep_x"] = _starts(segment)  # the latent restarts with each segment, as fitted
        out["latent"] = latent
        out["y_mean"] = np.asarray(rglm.y_mean_, float)
        out["residual"] = bool(rglm.residual)
        out["vz"] = None
        if "V" in latent:
            z = rglm._design(session)
            out["vz"] = np.asarray(z @ latent["V"].T, float)
    return out


@contextmanager
def _settings(target: str | None):
    with _brian2_settings():
        if target is None:
            yield
        else:
            with _target(target):
                yield


def _run_session(model, session: BinnedSession, seed: int, given: bool,
                 record_drive: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Build and run the network over every bin of ``session``; ``given``: the unit's count
    in each bin is the session's (the drive is then the model's one-step-ahead drive),
    else drawn. Returns (n_bins, n_units) counts and, with ``record_drive``, the drive."""
    import brian2 as b2

    inp = session_inputs(model, session)
    n_bins, n_units = session.n_bins, session.n_units
    bin_dt = float(session.bin_size) * b2.second
    latent = inp.get("latent")
    kernel = inp["kernel"]
    n_lags = 0 if kernel is None else kernel.shape[1]

    namespace = {"keep_h": b2.TimedArray(inp["keep_h"], dt=bin_dt, name="neurorec_keep_h")}
    drive_terms = ["bias"]
    for j, (name, table) in enumerate(inp["terms"].items()):
        ta = f"neurorec_cov_{j}_" + "".join(c if c.isalnum() else "_" for c in name)
        namespace[ta] = b2.TimedArray(np.ascontiguousarray(table), dt=bin_dt, name=ta)
        drive_terms.append(f"{ta}(t, i)")
    drive_terms += [f"w_{lag} * y_{lag}" for lag in range(1, n_lags + 1)]
    eqs = ["bias : 1 (constant)", "glm : 1", "drive : 1", "rate : 1", "ybin : 1",
           "n_over : integer", "ceiling : 1 (shared, constant)"]
    eqs += [f"y_{lag} : 1" for lag in range(1, n_lags + 1)]
    eqs += [f"w_{lag} : 1 (constant)" for lag in range(1, n_lags + 1)]
    if latent is not None:
        eqs += ["err : 1", "lat : 1", "lat_b : 1 (constant)", "ybar : 1 (constant)"]
        namespace["keep_x"] = b2.TimedArray(inp["keep_x"], dt=bin_dt, name="neurorec_keep_x")
    if given:
        namespace["neurorec_given"] = b2.TimedArray(
            np.ascontiguousarray(session.counts, dtype=np.float64), dt=bin_dt,
            name="neurorec_given")
    units = b2.NeuronGroup(n_units, "\n".join(eqs), method="exact", dt=bin_dt,
                           namespace=namespace, name="neurorec_session_units")
    units.bias = inp["bias"]
    units.ceiling = MAX_RATE_HZ * session.bin_size
    for lag in range(1, n_lags + 1):
        setattr(units, f"w_{lag}", kernel[:, lag - 1])
    objects: list = [units]

    if latent is not None:
        W0, R, B, b = latent["W0"], latent["R"], latent["B"], latent["b"]
        dim = R.shape[0]
        units.lat_b = b
        units.ybar = inp["y_mean"]
        # 0: the state's input from bin k-1 (its count and its GLM drive); 0 at a restart
        # sampling: a runaway is refused after the run (DivergenceError); these bounds only
        # keep it finite until then (no NaN reaches the draw), where the model is finite too
        glm_rate = "exp(glm)" if given else "exp(clip(glm, -1e300, 700))"
        err = f"(ybin - {glm_rate})" if inp["residual"] else "(ybin - ybar)"
        objects.append(units.run_regularly(f"err = {err} * keep_x(t)", dt=bin_dt,
                                           when="start", order=0, name="neurorec_err"))
        lat_eqs = ["x : 1", "inp : 1", "rec : 1"]
        lat_ns = {"keep_x": namespace["keep_x"]}
        x_code = "inp + rec * keep_x(t)"
        if inp["vz"] is not None:
            lat_ns["neurorec_vz"] = b2.TimedArray(np.ascontiguousarray(inp["vz"]), dt=bin_dt,
                                                  name="neurorec_vz")
            x_code += " + neurorec_vz(t, i)"
        x_code = f"x = {x_code}" if given else f"x = clip({x_code}, {-STATE_MAX}, {STATE_MAX})"
        states = b2.NeuronGroup(dim, "\n".join(lat_eqs), method="exact", dt=bin_dt,
                                namespace=lat_ns, name="neurorec_session_latent")
        objects.append(states)

        def linear_map(source, target, expr: str, weights: np.ndarray, name: str, order: int):
            """Summed ``expr`` of ``target`` (a (n_post, n_pre) ``weights`` map)."""
            syn = b2.Synapses(source, target, f"w : 1 (constant)\n{expr} (summed)",
                              name=name, dt=bin_dt)
            post, pre = np.meshgrid(np.arange(weights.shape[0]), np.arange(weights.shape[1]),
                                    indexing="ij")
            with _target("numpy"):
                syn.connect(i=pre.ravel(), j=post.ravel())
                syn.w = weights[syn.j[:], syn.i[:]]
            for updater in syn.summed_updaters.values():
                updater.when, updater.order = "start", order
            objects.append(syn)

        linear_map(units, states, "inp_post = w * err_pre : 1", W0, "neurorec_w0", 1)
        linear_map(states, states, "rec_post = w * x_pre : 1", R, "neurorec_r", 1)
        objects.append(states.run_regularly(x_code, dt=bin_dt, when="start", order=2,
                                            name="neurorec_x"))
        linear_map(states, units, "lat_post = w * x_pre : 1", B, "neurorec_b", 4)
        drive_code = "drive = glm + lat_b + lat"
    else:
        drive_code = "drive = glm"

    # 3: ring buffer y_l <- count l bins back, emptied where a history segment starts
    shift = [f"y_{lag} = y_{lag - 1} * keep_h(t)" for lag in range(n_lags, 1, -1)]
    if n_lags:
        shift.append("y_1 = ybin * keep_h(t)")
    shift.append("ybin = 0")
    objects.append(units.run_regularly("\n".join(shift), dt=bin_dt, when="start", order=3,
                                       name="neurorec_shift"))
    # 5: drive and expected count (the rate is held at the ceiling for the draw)
    objects.append(units.run_regularly(
        "\n".join([f"glm = {' + '.join(drive_terms)}", drive_code, "rate = exp(drive)",
                   "n_over = n_over + int(rate > ceiling)"]),
        dt=bin_dt, when="start", order=5, name="neurorec_drive"))
    # 6: the count of this bin
    draw = "ybin = neurorec_given(t, i)" if given else "ybin = poisson(clip(rate, 0, ceiling))"
    objects.append(units.run_regularly(draw, dt=bin_dt, when="start", order=6,
                                       name="neurorec_draw"))
    count_mon = b2.StateMonitor(units, "ybin", record=True, dt=bin_dt, when="end",
                                name="neurorec_session_counts")
    objects.append(count_mon)
    drive_mon = None
    if record_drive:
        drive_mon = b2.StateMonitor(units, "drive", record=True, dt=bin_dt, when="end",
                                    name="neurorec_session_drive")
        objects.append(drive_mon)
    network = b2.Network(*objects)
    with _seeded(seed):
        network.run(n_bins * bin_dt, namespace={})
    counts = np.asarray(count_mon.ybin).T.copy()
    n_over = np.asarray(units.n_over[:])
    if not given and (n_over > 0).any():
        unit = int(np.argmax(n_over))
        raise DivergenceError(
            f"simulation diverged: unit {unit} expected more than "
            f"{MAX_RATE_HZ * session.bin_size:.3g} spikes in one {session.bin_size * 1e3:g} ms "
            f"bin in {n_over[unit]} bins (more than {MAX_RATE_HZ:g} Hz): positive feedback "
            "through history/recurrence runs away in closed loop")
    drive = None if drive_mon is None else np.asarray(drive_mon.drive).T.copy()
    return counts, drive


def drive_brian2_session(model, session: BinnedSession, target: str | None = None) -> np.ndarray:
    """(n_bins, n_units) drive (log expected count per bin) the network computes when fed the
    session's recorded counts: the model's one-step-ahead drive (``SessionGLM.drive``; for a
    ``SessionRGLM`` ``log predict_rate``).

    Args:
        model: fitted session GLM or R-GLM.
        session: covariates and counts (the model's units and bin size).
        target: Brian 2 codegen target (``"numpy"`` or ``"cython"``); None: Cython where it
            compiles.
    """
    with _settings(target):
        return _run_session(model, session, 0, given=True, record_drive=True)[1]


def simulate_brian2_session(model, session: BinnedSession, seed: int,
                            target: str | None = None,
                            record_drive: bool = False):
    """Sample spike counts of a fitted session GLM / R-GLM in closed loop on ``session``'s
    covariates with Brian 2 (each bin's count drawn from ``Poisson(exp(drive))`` given the
    covariates and the counts drawn so far).

    Args:
        model: fitted session GLM or R-GLM.
        session: the covariates, bins, segments and clock (its counts are not read).
        seed: seed of Brian's random numbers (numpy's global generator; its state is restored).
        target: as in :func:`drive_brian2_session`.
        record_drive: also return the drive of each bin.
    Returns:
        (n_bins, n_units) float64 counts, or (counts, drive) with ``record_drive``.
    Raises:
        DivergenceError: a unit's expected count exceeded ``MAX_RATE_HZ × bin_size``.
    """
    with _settings(target):
        counts, drive = _run_session(model, session, seed, given=False,
                                     record_drive=record_drive)
    return (counts, drive) if record_drive else counts


def with_counts(session: BinnedSession, counts: np.ndarray) -> BinnedSession:
    """``session`` with other (n_bins, n_units) counts (e.g. a sample), as integers."""
    return dataclasses.replace(session, counts=np.asarray(np.round(counts), np.int64))
