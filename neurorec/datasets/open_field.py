"""The bundled open-field session: SIMULATED place, head-direction and speed cells driven by
real rat trajectories.

Public API (stable):

- ``simulate_open_field(n_units=120, duration_s=600.0, trajectory="sargolini", seed=0,
  bin_size=0.01, gain_sd=0.5, gain_tau_s=10.0, test_fraction=0.2, test_blocks=5,
  gap_s=0.1) -> BinnedSession``
- ``trajectory_path(name) -> Path`` and ``load_trajectory(name) -> (t, pos)``: the real
  trajectories that ship inside the ``ratinabox`` package (MIT): ``sargolini`` (600 s at
  50 Hz, 1 × 1 m box; Sargolini et al. 2006, Science 312:758) and ``tanni`` (7,323 s at
  30 Hz, 3.5 × 2.5 m; Tanni et al. 2022, Curr Biol 32:3505), read from the installed
  package's ``data/`` folder (de Cothi, George et al.; RatInABox, George et al. 2024, eLife
  13:e85274).

The spikes are SIMULATED; only the trajectories are recorded. Generative model, on bins of
``bin_size`` seconds (10 ms by default):

``λ_tu = rate_u(x_t) · bin_size · exp(Σ_k h_uk y_{t-k,u}) · G_t``, ``y_tu ~ Poisson(λ_tu)``

- ``rate_u``: each cell's tuning in Hz, one of three kinds (shares 50 / 30 / 20 %):
  place (``base + peak · exp(-|p - c|² / 2σ²)``, peak 5–20 Hz, σ 8–15 % of the shorter side
  of the box), head direction (von Mises ``base + peak · exp(κ (cos(θ - μ) - 1))``, κ 1.5–4,
  peak 5–20 Hz) or speed (``r0 + r1 (1 - exp(-v / v0))``, saturating, r0 1–3 Hz, r1 5–15 Hz).
- ``p`` position (m), ``v`` running speed and ``θ`` head direction: speed is derived from
  the position on the bins exactly as :func:`neurorec.data.sessions_io.running_speed` does
  (Gaussian smoothing s.d. 0.1 s); head direction is the movement direction smoothed as a
  speed-weighted unit vector (s.d. 0.25 s) plus a slow angular offset (Ornstein–Uhlenbeck,
  s.d. 0.3 rad, τ 2 s), so it differs from the movement direction.
- ``h_uk``: a refractory self-history filter, ``h(τ) = -a_u exp(-τ / 10 ms)`` for lags
  ``τ = k · bin_size ≤ 50 ms``, ``a_u = 8 × U(0.7, 1.3)`` (``h(10 ms) ≈ -2.9``).
- ``G_t = exp(g_t - gain_sd² / 2)``: a shared slow gain, ``g`` an Ornstein–Uhlenbeck process
  (s.d. ``gain_sd``, time constant ``gain_tau_s``) shared by every cell, started stationary.

Ground truth (``session.truth``): ``rates`` (n_bins, n_units), the conditional intensity
``λ`` (expected counts per bin given the simulated past and the gain); ``rates_no_gain``,
the same with ``G_t`` replaced by its session mean (the best constant: the "true covariate
model"); ``gain`` (n_bins,) ``G_t``; ``gain_constant`` that mean; the tuning on grids
(``tuning_position`` (n_units, n_x, n_y) Hz on ``grid_x``, ``grid_y`` m;
``tuning_head_direction`` (n_units, 72) on ``grid_head_direction`` rad; ``tuning_speed``
(n_units, 51) on ``grid_speed`` m/s), ``cell_type`` (n_units,), ``history_filter``
(n_units, n_lags) on ``history_lags_s``.

Trajectories shorter than ``duration_s`` are looped forward, backward, forward ... (a
continuous path, no jump); the ``tanni`` recording is long enough for 2 h.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from neurorec.core.errors import DataError
from neurorec.data.session import BinnedSession

NAME = "open_field"
TRAJECTORIES = ("sargolini", "tanni")
LICENCE = "MIT (the trajectories, shipped in the ratinabox package); spikes are simulated"
CITATION = (
    "SIMULATED spikes on real rat trajectories: Sargolini F et al. (2006) Conjunctive "
    "representation of position, direction, and velocity in entorhinal cortex. Science "
    "312:758-762; Tanni S, de Cothi W, Barry C (2022) State transitions in the "
    "statistically stable place cell population correspond to rate of perceptual change. "
    "Curr Biol 32:3505-3514; George TM, Rastogi M, de Cothi W, Clopath C, Stachenfeld K, "
    "Barry C (2024) RatInABox, a toolkit for modelling locomotion and neuronal activity in "
    "continuous environments. eLife 13:e85274"
)
DESCRIPTION = (
    "SIMULATED open-field session: place, head-direction and speed cells with refractory "
    "history and a shared slow gain, driven by a real rat trajectory (Sargolini et al. 2006, "
    "600 s, or Tanni et al. 2022, 2 h; shipped in ratinabox), 10 ms bins, with ground-truth "
    "rates"
)
SMOOTH_S = 0.1  # the position smoothing of the derived speed (the reader's default)
REFRACTORY_TAU_S = 0.01
REFRACTORY_AMPLITUDE = 8.0
REFRACTORY_LENGTH_S = 0.05


def trajectory_path(name: str) -> Path:
    """The ``.npz`` file of a trajectory inside the installed ``ratinabox`` package."""
    if name not in TRAJECTORIES:
        raise DataError(f"{NAME}: trajectory: expected one of {list(TRAJECTORIES)}, "
                        f"got {name!r}")
    spec = importlib.util.find_spec("ratinabox")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"{NAME}: trajectory: the ratinabox package is not installed "
                        "(pip install ratinabox); it ships the rat trajectories")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / f"{name}.npz"
    if not path.is_file():
        raise DataError(f"{path}: file: not found in the installed ratinabox package")
    return path


def load_trajectory(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(n,) times from 0 s and (n, 2) position, metres (lower-left corner of the box at 0)."""
    path = trajectory_path(name)
    with np.load(path) as z:
        if "t" not in z.files or "pos" not in z.files:
            raise DataError(f"{path}: keys: expected 't' and 'pos', got {z.files}")
        t = np.asarray(z["t"], float)
        pos = np.asarray(z["pos"], float)
    return t - t[0], pos - pos.min(axis=0)


def _looped(t: np.ndarray, pos: np.ndarray, duration_s: float) -> tuple[np.ndarray, np.ndarray]:
    """The trajectory repeated forward, backward, forward ... until it covers ``duration_s``."""
    ts, ps = [t], [pos]
    end = t[-1]
    forward = False
    while end < duration_s:
        seg_t = t[1:] + end
        seg_p = pos[::-1][1:] if not forward else pos[1:]
        ts.append(seg_t)
        ps.append(seg_p)
        end = seg_t[-1]
        forward = not forward
    return np.concatenate(ts), np.concatenate(ps)


def _ou(rng: np.random.Generator, n: int, sd: float, tau_s: float, dt: float) -> np.ndarray:
    """(n,) stationary Ornstein–Uhlenbeck path with s.d. ``sd`` and time constant ``tau_s``."""
    a = np.exp(-dt / tau_s)
    noise = rng.standard_normal(n) * sd * np.sqrt(1 - a * a)
    out = np.empty(n)
    x = rng.standard_normal() * sd
    for i in range(n):  # x_i = a x_{i-1} + noise_i; a plain loop costs ~0.1 s per 10^5 bins
        out[i] = x
        x = a * x + noise[i]
    return out


def _tuning(rng: np.random.Generator, n_units: int, box: np.ndarray) -> dict:
    """Random tuning parameters of ``n_units`` cells in a box of size ``box`` (m)."""
    n_place = round(0.5 * n_units)
    n_hd = round(0.3 * n_units)
    kinds = np.array(["place"] * n_place + ["head_direction"] * n_hd
                     + ["speed"] * (n_units - n_place - n_hd))
    side = float(box.min())
    return {
        "cell_type": kinds,
        "centre": rng.uniform(0.1, 0.9, (n_units, 2)) * box,
        "sigma": rng.uniform(0.08, 0.15, n_units) * side,
        "peak": np.exp(rng.uniform(np.log(5.0), np.log(20.0), n_units)),
        "base": rng.uniform(0.2, 0.5, n_units),
        "mu": rng.uniform(-np.pi, np.pi, n_units),
        "kappa": rng.uniform(1.5, 4.0, n_units),
        "hd_base": rng.uniform(0.5, 1.5, n_units),
        "r0": rng.uniform(1.0, 3.0, n_units),
        "r1": rng.uniform(5.0, 15.0, n_units),
        "v0": rng.uniform(0.1, 0.2, n_units),
        "refractory": REFRACTORY_AMPLITUDE * rng.uniform(0.7, 1.3, n_units),
    }


def tuning_rates(params: dict, position: np.ndarray, head_direction: np.ndarray,
                 speed: np.ndarray) -> np.ndarray:
    """(n, n_units) tuning rates, Hz, at (n, 2) position (m), (n,) head direction (rad) and
    (n,) speed (m/s): each cell's own kind of tuning (see the module docstring)."""
    kind = params["cell_type"]
    out = np.empty((len(position), kind.size))
    u = kind == "place"
    d2 = ((position[:, None, :] - params["centre"][u][None]) ** 2).sum(-1)
    out[:, u] = params["base"][u] + params["peak"][u] * np.exp(-d2 / (2 * params["sigma"][u] ** 2))
    u = kind == "head_direction"
    out[:, u] = params["hd_base"][u] + params["peak"][u] * np.exp(
        params["kappa"][u] * (np.cos(head_direction[:, None] - params["mu"][u]) - 1))
    u = kind == "speed"
    out[:, u] = params["r0"][u] + params["r1"][u] * (1 - np.exp(-speed[:, None] / params["v0"][u]))
    return out


def _head_direction(rng: np.random.Generator, direction: np.ndarray, speed: np.ndarray,
                    bin_size: float) -> np.ndarray:
    """Movement direction smoothed as a speed-weighted unit vector (s.d. 0.25 s) plus a slow
    OU angular offset (s.d. 0.3 rad, τ 2 s), wrapped to (-π, π]."""
    from scipy.ndimage import gaussian_filter1d

    z = speed * np.exp(1j * direction)
    sm = (gaussian_filter1d(z.real, 0.25 / bin_size, mode="nearest")
          + 1j * gaussian_filter1d(z.imag, 0.25 / bin_size, mode="nearest"))
    offset = _ou(rng, direction.size, 0.3, 2.0, bin_size)
    return np.angle(sm * np.exp(1j * offset))


def _simulate_loop(log_base, hist, g, log_c, uniforms):  # pragma: no cover - jitted
    """The spike-by-spike recursion (compiled with numba): (n_bins, n_units) counts (Poisson
    by inverse CDF of the pre-drawn ``uniforms``), rates and rates without the gain."""
    n_bins, n_units = log_base.shape
    n_lags = hist.shape[1]
    counts = np.zeros((n_bins, n_units), np.int64)
    rates = np.empty((n_bins, n_units))
    rates_no_gain = np.empty((n_bins, n_units))
    for i in range(n_bins):
        for u in range(n_units):
            drive = log_base[i, u]
            for k in range(min(n_lags, i)):
                drive += hist[u, k] * counts[i - 1 - k, u]
            lam = np.exp(drive + g[i])
            rates[i, u] = lam
            rates_no_gain[i, u] = np.exp(drive + log_c)
            y = 0
            p = np.exp(-lam)
            cdf = p
            while uniforms[i, u] > cdf and p > 0:
                y += 1
                p *= lam / y
                cdf += p
            counts[i, u] = y
    return counts, rates, rates_no_gain


def _simulate(log_base: np.ndarray, hist: np.ndarray, g: np.ndarray, log_c: float,
              uniforms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_simulate_loop` compiled by numba (a pynapple dependency), cached on disk."""
    import numba

    global _COMPILED
    if _COMPILED is None:
        _COMPILED = numba.njit(cache=True)(_simulate_loop)
    return _COMPILED(np.ascontiguousarray(log_base), np.ascontiguousarray(hist),
                     np.ascontiguousarray(g), float(log_c), np.ascontiguousarray(uniforms))


_COMPILED = None


def simulate_open_field(n_units: int = 120, duration_s: float = 600.0,
                        trajectory: str = "sargolini", seed: int = 0, bin_size: float = 0.01,
                        gain_sd: float = 0.5, gain_tau_s: float = 10.0,
                        test_fraction: float = 0.2, test_blocks: int = 5,
                        gap_s: float | None = 0.1, start_s: float = 0.0) -> BinnedSession:
    """Simulate the open-field session (see the module docstring for the model).

    Args:
        n_units: number of cells (50 % place, 30 % head direction, 20 % speed).
        duration_s: length of the session, seconds (looped trajectory when longer than it).
        trajectory: ``"sargolini"`` (600 s) or ``"tanni"`` (7,323 s).
        seed: seed of the one ``numpy.random.Generator`` every draw comes from.
        bin_size: the simulation and analysis bin, seconds.
        gain_sd, gain_tau_s: s.d. (of the log gain) and time constant (s) of the shared gain.
        test_fraction, test_blocks, gap_s: the default split
            (:func:`neurorec.data.session_splits.default_split_labels`).
        start_s: where in the recorded trajectory the session starts, seconds (another
            stretch of the same path for a session the project has not seen).

    Returns:
        A :class:`BinnedSession` with covariates ``position`` (n_bins, 2) m,
        ``head_direction`` (n_bins, 1) rad, ``speed`` (n_bins, 1) m/s and
        ``movement_direction`` (n_bins, 1) rad; its ``truth`` and ``metadata`` (``simulated:
        True``, the citation).
    """
    import pynapple as nap

    from neurorec.data.session_splits import default_split_labels
    from neurorec.data.sessions_io import movement_direction, running_speed

    if n_units < 1 or duration_s <= 0 or bin_size <= 0 or gain_sd < 0 or gain_tau_s <= 0:
        raise DataError(f"{NAME}: expected n_units >= 1 and positive duration_s, bin_size, "
                        f"gain_tau_s, gain_sd >= 0; got {n_units}, {duration_s}, {bin_size}, "
                        f"{gain_tau_s}, {gain_sd}")
    rng = np.random.default_rng(seed)
    t_raw, pos_raw = load_trajectory(trajectory)
    box = pos_raw.max(axis=0)
    if not 0 <= start_s < t_raw[-1] - 1.0:
        raise DataError(f"{NAME}: start_s: must be in [0, {t_raw[-1] - 1.0:.0f}) s for "
                        f"{trajectory}, got {start_s}")
    keep = t_raw >= start_s
    t_raw, pos_raw = t_raw[keep] - t_raw[keep][0], pos_raw[keep]
    recorded_s = float(t_raw[-1])
    t_raw, pos_raw = _looped(t_raw, pos_raw, duration_s)
    n_bins = int(np.floor(duration_s / bin_size + 1e-9))
    time = (np.arange(n_bins) + 0.5) * bin_size
    position = np.stack([np.interp(time, t_raw, pos_raw[:, i]) for i in range(2)], axis=1)
    frame = nap.TsdFrame(t=time, d=position)
    speed = np.asarray(running_speed(frame, SMOOTH_S).values, float)
    direction = np.asarray(movement_direction(frame, SMOOTH_S).values, float)
    hd = _head_direction(rng, direction, speed, bin_size)

    params = _tuning(rng, n_units, box)
    base_rate = tuning_rates(params, position, hd, speed)  # (n_bins, n_units) Hz
    n_lags = max(1, int(np.floor(REFRACTORY_LENGTH_S / bin_size + 1e-9)))
    lags = np.arange(1, n_lags + 1) * bin_size
    hist = -params["refractory"][:, None] * np.exp(-lags[None] / REFRACTORY_TAU_S)  # (U, L)
    g = _ou(rng, n_bins, gain_sd, gain_tau_s, bin_size) - gain_sd ** 2 / 2
    gain = np.exp(g)
    gain_constant = float(gain.mean())

    log_base = np.log(base_rate * bin_size)
    uniforms = rng.random((n_bins, n_units))
    counts, rates, rates_no_gain = _simulate(log_base, hist, g, np.log(gain_constant),
                                             uniforms)

    split, segment = default_split_labels(time, np.zeros(n_bins, np.int64), bin_size,
                                          test_fraction, test_blocks, gap_s)
    gx = np.linspace(0, box[0], 50)
    gy = np.linspace(0, box[1], 50)
    grid_xy = np.stack(np.meshgrid(gx, gy, indexing="ij"), -1).reshape(-1, 2)
    grid_hd = np.linspace(-np.pi, np.pi, 72, endpoint=False)
    grid_v = np.linspace(0, 0.5, 51)
    kind = params["cell_type"]
    tp = tuning_rates(params, grid_xy, np.zeros(len(grid_xy)), np.zeros(len(grid_xy)))
    th = tuning_rates(params, np.zeros((72, 2)), grid_hd, np.zeros(72))
    tv = tuning_rates(params, np.zeros((51, 2)), np.zeros(51), grid_v)
    # each curve varies only along its own kind's covariate; others are flat (held at 1 Hz
    # would mislead), so store them only for the cells of that kind and NaN elsewhere
    tuning_position = np.where((kind == "place")[:, None], tp.T, np.nan).reshape(n_units, 50, 50)
    tuning_hd = np.where((kind == "head_direction")[:, None], th.T, np.nan)
    tuning_speed = np.where((kind == "speed")[:, None], tv.T, np.nan)
    truth = {
        "rates": rates, "rates_no_gain": rates_no_gain, "gain": gain,
        "gain_constant": np.array(gain_constant),
        "tuning_position": tuning_position, "grid_x": gx, "grid_y": gy,
        "tuning_head_direction": tuning_hd, "grid_head_direction": grid_hd,
        "tuning_speed": tuning_speed, "grid_speed": grid_v,
        "cell_type": kind, "history_filter": hist, "history_lags_s": lags,
    }
    metadata = {
        "simulated": True, "description": DESCRIPTION, "citation": CITATION,
        "licence": LICENCE, "trajectory": trajectory, "seed": seed, "start_s": start_s,
        "duration_s": float(n_bins * bin_size), "box_m": box.tolist(),
        "looped": bool(n_bins * bin_size > recorded_s),
        "gain_sd": gain_sd, "gain_tau_s": gain_tau_s, "circular": ["head_direction",
                                                                   "movement_direction"],
        "split_from": f"blocked: test_fraction={test_fraction}, test_blocks={test_blocks}, "
                      f"gap_s={gap_s}",
        "covariate_units": {"position": "m", "head_direction": "rad", "speed": "m/s",
                            "movement_direction": "rad"},
    }
    return BinnedSession(
        counts=counts, bin_size=float(bin_size), time=time,
        covariates={"position": position, "head_direction": hd[:, None],
                    "speed": speed[:, None], "movement_direction": direction[:, None]},
        split=split, segment=segment, unit_ids=np.array([f"cell{u:03d}" for u in
                                                         range(n_units)]),
        source=f"{NAME}:{trajectory}", truth=truth, metadata=metadata)
