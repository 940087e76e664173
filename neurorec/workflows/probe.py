"""Probe a trained or fitted network like a V1 experiment, and test connectomics predictions.

``neurorec train SPEC --stimulus MOVIE.yaml --out DIR`` (:func:`train_on_stimulus`): a
spike-and-slab RNN learns from a natural movie; DIR holds the model (``spec.yaml``,
``model.pt``), its untrained initialisation (``untrained.npz``), the movie's whitening
(``whitener.npz``: ZCA matrix and mean, the whitened energy per pixel of its frames), the
protocol (``stimulus.yaml``), ``metrics.json`` and a report.

``neurorec probe FIT_DIR --protocol GRATINGS.yaml --out DIR`` (:func:`probe_to_dir`): drifting
gratings, whitened like the training movie, over direction × speed × spatial frequency × start
phase; a unit's response is its mean rectified activity ``max(z, 0)`` over the window of
:func:`~neurorec.stimuli.gratings.cycle_window` (after ``probe.settle``, whole cycles of every
grating, so a feed-forward unit sees the same frames drifting either way). The protocol must
not alias (:func:`~neurorec.stimuli.gratings.sampling_problems`). Tuning is read at the
contrast whose whitened energy matches the training movie's (per spatial frequency), beside a
contrast sweep, for the learned network and its controls: ``R = 0``, ``R`` with its entries
shuffled, ``R`` with its off-diagonal entries shuffled (self-connections kept), ``R``'s
diagonal alone, and the untrained network. Also works on a ``neurorec fit`` directory of a
``ctrnn_obs`` model with ``input.encoding: direction`` (cos/sin of the grating direction), so
unseen directions can be probed: the response is the mean rectified network rate after input
onset, started from the mean learned initial state (speed and spatial frequency do not enter).

``neurorec connectomics FIT_DIR --tuning TUNING.csv --out DIR`` (:func:`connectomics_to_dir`):
the predictions of :mod:`neurorec.analysis.connectomics` on the network's recurrent weights,
each beside the same statistic on the weights with shuffled entries.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from neurorec.analysis import connectomics as cx
from neurorec.analysis.tuning import (
    di_summary,
    grating_tuning,
    responsive_units,
)
from neurorec.core.errors import DataError, SpecError
from neurorec.core.outputs import atomic_dir
from neurorec.families.base import SPEC_FILE, STATE_FILE
from neurorec.spec import dump_spec, load_model_spec, load_stimulus_spec
from neurorec.stimuli.gratings import conditions, cycle_window, grating_clips, sampling_problems
from neurorec.workflows import study

WHITENER_FILE = "whitener.npz"
UNTRAINED_FILE = "untrained.npz"
STIMULUS_FILE = "stimulus.yaml"
OSI_TUNED = 0.1  # orientation-tuned units for the co-orientation predictions
DI_SELECTIVE = 0.3  # direction-selective units
K_TOP = 3  # strongest outgoing connections per unit
CONTROLS = ("learned", "r_zero", "r_shuffled", "r_shuffled_offdiag", "r_diagonal",
            "untrained")


# ------------------------------------------------------------------------- train --stimulus
def train_on_stimulus(spec, stim_spec, out: Path, seed: int = 0, device: str = "cpu",
                      overwrite: bool = False, resume: bool = False,
                      progress: bool = True) -> dict:
    """Train an ``ssrnn`` spec on a ``natural_movie`` protocol into ``out`` (see the module
    docstring); checkpoints in ``OUT.partial/``. Returns the metrics."""
    import shutil

    from neurorec.families.ssrnn.model import SpikeSlabRNN
    from neurorec.fit.run import Run
    from neurorec.stimuli import generate

    if spec.kind != "ssrnn" or stim_spec.kind != "natural_movie":
        raise SpecError(f"{spec.name}: kind: `train --stimulus` trains an ssrnn on a "
                        f"natural_movie protocol (got {spec.kind} on {stim_spec.kind}; a ctrnn "
                        "trains on a task with --task)")
    out = Path(out)
    work = out.with_name(f"{out.name}.partial")
    if work.exists() and not resume:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    movie = generate(stim_spec)
    movie_s = time.perf_counter() - t0
    model = SpikeSlabRNN(spec, device=device, seed=seed)
    t0 = time.perf_counter()
    model.fit(movie.clips, progress=progress, run=Run(checkpoint_dir=work, resume=resume))
    train_s = time.perf_counter() - t0
    W0, R0, b0 = model.initial_params(movie.clips)
    h = model.history_
    last = h[-20:]
    metrics = {"kind": spec.kind, "name": spec.name, "stimulus": stim_spec.name, "seed": seed,
               "n_units": spec.n_units, "n_clips": len(movie.clips),
               "n_frames": int(movie.clips.shape[1]), "movie_s": movie_s, "train_s": train_s,
               "n_iterations": len(h),
               **{f"{k}_last20": float(np.mean([getattr(r, k) for r in last])) if last else None
                  for k in ("log_likelihood_per_frame", "mse_per_pixel", "fraction_active")},
               "frame_energy": float(np.mean(movie.clips.astype(np.float64) ** 2)),
               "spectral_radius_R": float(np.abs(np.linalg.eigvals(model.R_)).max())}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        model.save(tmp)
        (tmp / STIMULUS_FILE).write_text(dump_spec(stim_spec))
        w = movie.whitener
        np.savez(tmp / WHITENER_FILE, matrix=w.matrix, mean=w.mean, eps=w.eps,
                 frame_energy=metrics["frame_energy"], patch_px=stim_spec.patch_px,
                 degrees_per_px=stim_spec.degrees_per_px, frame_rate=movie.frame_rate_hz)
        np.savez(tmp / UNTRAINED_FILE, W=W0, R=R0, b=b0)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
        fig_name = _training_figure(h, tmp)
        from neurorec.report import html

        study.write_report(tmp, f"{spec.name} trained on {stim_spec.name}", [
            ("Training", html.figure(fig_name, "training curves")
             + html.pre(json.dumps(metrics, indent=1)))])
    shutil.rmtree(work, ignore_errors=True)
    return metrics


def _training_figure(history, tmp: Path) -> str:
    from matplotlib.figure import Figure  # no pyplot: the caller's backend stays as it is

    fig = Figure(figsize=(11, 3))
    ax = fig.subplots(1, 3)
    it = [r.iteration for r in history]
    for a, key, lab in zip(ax, ("log_likelihood_per_frame", "mse_per_pixel", "fraction_active"),
                           ("log-likelihood / frame (nats)", "MSE / pixel", "fraction on"),
                           strict=True):
        a.plot(it, [getattr(r, key) for r in history], lw=0.6)
        a.set(xlabel="iteration", ylabel=lab)
    return study.save_figure(fig, tmp / "training.png")


# ------------------------------------------------------------------------ probe targets
@dataclass
class ProbeTarget:
    """A network seen through a gratings protocol.

    Attributes:
        kind: the model kind.  n_units: units probed.
        R: (n, n) recurrent weights, ``R[j, k]`` from k to j.
        respond: ``respond(spec, contrast, R, untrained)`` -> (n_conditions, n_units) mean
            rectified responses over the window, conditions in ``conditions(spec)`` order,
            ``contrast`` one scale per condition; ``R`` None = the learned one.
        matched_contrast: ``f(spec)`` -> (n_conditions,) the training-matched contrast.
        centres: (n, 2) receptive-field centres (deg) or None.
        has_untrained: whether the untrained control exists.
        uses_space: whether speed and spatial frequency reach the network.
    """

    kind: str
    n_units: int
    R: np.ndarray
    respond: Callable[..., np.ndarray]
    matched_contrast: Callable[..., np.ndarray]
    centres: np.ndarray | None
    has_untrained: bool
    uses_space: bool


def load_target(fit_dir: Path) -> ProbeTarget:
    """The probe view of ``fit_dir`` (a ``train --stimulus`` ssrnn directory, or a ``fit``
    directory of a ``ctrnn_obs`` with direction input); one-line DataError otherwise."""
    fit_dir = Path(fit_dir)
    if not fit_dir.is_dir():
        raise DataError(f"{fit_dir}: not a directory (expected a `neurorec train --stimulus` "
                        "or `neurorec fit` output directory)")
    if not (fit_dir / SPEC_FILE).is_file() or not (fit_dir / STATE_FILE).is_file():
        raise DataError(f"{fit_dir}: {SPEC_FILE}/{STATE_FILE}: not found (not a `neurorec "
                        "train --stimulus` or `neurorec fit` output directory)")
    from neurorec.families import family_of

    kind = load_model_spec(fit_dir / SPEC_FILE).kind
    family = family_of(kind)
    if "probe" not in family.commands:
        raise DataError(f"{fit_dir}: kind: {kind} cannot be probed with gratings (ssrnn from "
                        "`train --stimulus`, or ctrnn_obs with input.encoding: direction)")
    return family.command("probe")(fit_dir)


def ssrnn_target(fit_dir: Path) -> ProbeTarget:
    from neurorec.families.ssrnn.model import SpikeSlabRNN
    from neurorec.stimuli.movies import Whitener

    for name in (WHITENER_FILE, UNTRAINED_FILE):
        if not (fit_dir / name).is_file():
            raise DataError(f"{fit_dir}: {name}: not found (an ssrnn is probed from a "
                            "`neurorec train --stimulus` directory)")
    model = SpikeSlabRNN.load(fit_dir)
    with np.load(fit_dir / WHITENER_FILE) as f:
        w = Whitener(f["mean"], f["matrix"], np.zeros(len(f["mean"])), float(f["eps"]))
        energy, patch_px = float(f["frame_energy"]), int(f["patch_px"])
        dpp = float(f["degrees_per_px"])
    with np.load(fit_dir / UNTRAINED_FILE) as f:
        untrained = SpikeSlabRNN(model.spec, seed=model.seed)
        untrained.W_, untrained.R_, untrained.b_ = f["W"], f["R"], f["b"]

    def check(spec) -> None:
        if spec.size_px != patch_px or abs(spec.degrees_per_px - dpp) > 1e-12:
            raise SpecError(f"{spec.name}: size_px/degrees_per_px: {spec.size_px} px at "
                            f"{spec.degrees_per_px:g} deg/px, the model sees {patch_px} px at "
                            f"{dpp:g} deg/px")

    def respond(spec, contrast, R=None, untrained_model: bool = False) -> np.ndarray:
        check(spec)
        m = untrained if untrained_model else model
        window = cycle_window(spec)
        frames = w.apply(grating_clips(spec, contrast))
        z, _ = m.infer(frames, batch_size=512, R=R)
        return np.maximum(z[:, -window:], 0.0).mean(axis=1)

    def matched(spec) -> np.ndarray:
        check(spec)
        conds = conditions(spec)
        y = w.apply(grating_clips(spec, 1.0 / np.array([c["contrast"] for c in conds])))
        e = (y.astype(np.float64) ** 2).reshape(len(conds), -1).mean(axis=1)
        sf = np.array([c["spatial_frequency"] for c in conds])
        per_sf = {f: np.sqrt(energy / e[sf == f].mean()) for f in np.unique(sf)}
        return np.array([per_sf[f] for f in sf])

    centres = cx.rf_centres(model.W_, patch_px, dpp)
    return ProbeTarget("ssrnn", model.spec.n_units, np.asarray(model.R_, float), respond,
                       matched, centres, True, True)


def ctrnn_obs_target(fit_dir: Path) -> ProbeTarget:
    import torch

    from neurorec.families.ctrnn.model import CTRNN
    from neurorec.families.ctrnn_obs.model import network_spec
    from neurorec.workflows.simulate import load_fitted

    model = load_fitted(fit_dir)
    spec = model.spec
    if spec.input.encoding != "direction":
        raise DataError(f"{fit_dir}: input.encoding: '{spec.input.encoding}' gives the network "
                        "no grating direction to probe (fit with input.encoding: direction)")
    net = model.module_.net
    with torch.no_grad():
        learned = net.weights()
        r0 = model.module_.r0.double().mean(0).cpu().numpy()
    fresh = CTRNN(network_spec(spec), net.n_inputs, net.n_outputs, seed=model.seed,
                  dtype=torch.float64)
    init = fresh.weights()
    alpha = float(spec.network.dt / spec.network.tau)
    # the stimulus period of a V1 trial: from input onset for the rest of the fitted trial
    n_steps = model.n_bins_ * spec.steps_per_bin
    t = model.first_edge_ + np.arange(n_steps) * spec.network.dt
    on = t >= spec.input.onset - 1e-9
    f = net.f

    def run(theta_deg: np.ndarray, amp: np.ndarray, w: dict, R: np.ndarray) -> np.ndarray:
        u = np.stack([np.cos(np.deg2rad(theta_deg)), np.sin(np.deg2rad(theta_deg))], 1)
        u = u * amp[:, None]
        r = np.broadcast_to(r0, (len(u), len(r0))).copy()
        total = np.zeros_like(r)
        for s in range(n_steps):
            x = r @ R.T + (u @ w["w_in"].T if on[s] else 0.0) + w["b"]
            r = (1 - alpha) * r + alpha * f(torch.as_tensor(x)).numpy()
            if on[s]:
                total += np.maximum(r, 0.0)
        return total / max(on.sum(), 1)

    def respond(pspec, contrast, R=None, untrained_model: bool = False) -> np.ndarray:
        w = init if untrained_model else learned
        Rm = w["w_rec"] if R is None else np.asarray(R, float)
        conds = conditions(pspec)
        theta = np.array([c["direction"] for c in conds], float)
        amp = np.broadcast_to(np.asarray(contrast, float), (len(conds),)) * np.array(
            [c["contrast"] for c in conds])
        key = np.stack([theta, amp], 1)
        uniq, inv = np.unique(key, axis=0, return_inverse=True)  # speed, sf, phase: no effect
        return run(uniq[:, 0], uniq[:, 1], w, Rm)[inv.ravel()]

    def matched(pspec) -> np.ndarray:
        return np.ones(len(conditions(pspec)))  # the fitted input amplitude

    return ProbeTarget("ctrnn_obs", spec.network.n_units, learned["w_rec"], respond, matched,
                       None, True, False)


# -------------------------------------------------------------------------------- probe
def load_protocol(path: Path, overrides: Sequence[str] = ()):
    """A ``drifting_gratings`` protocol that can measure direction selectivity."""
    spec = load_stimulus_spec(path, overrides)
    if spec.kind != "drifting_gratings":
        raise SpecError(f"{path}: kind: '{spec.kind}', expected drifting_gratings")
    problems = sampling_problems(spec, str(path))
    if problems:
        raise SpecError(problems[:1])
    return spec


def _grid(spec, flat: np.ndarray) -> np.ndarray:
    """(n_conditions, n_units) -> (n_units, n_dir, n_speed, n_sf, n_contrast), phases
    averaged."""
    shape = (len(spec.directions), len(spec.speeds), len(spec.spatial_frequencies),
             len(spec.contrasts), len(spec.phases), flat.shape[1])
    return np.moveaxis(flat.reshape(shape).mean(axis=4), -1, 0)


def shuffled(R: np.ndarray, seed: int, keep_diagonal: bool = False) -> np.ndarray:
    """``R`` with its entries permuted: the learned structure destroyed, the weight
    distribution kept. With ``keep_diagonal`` only the off-diagonal entries are permuted and
    each unit keeps its self-connection (which, with the competition of greedy inference,
    already makes units direction selective: see the ``r_diagonal`` control)."""
    R = np.asarray(R, float)
    rng = np.random.default_rng(seed)
    if not keep_diagonal:
        return rng.permutation(R.ravel()).reshape(R.shape)
    off = ~np.eye(len(R), dtype=bool)
    out = R.copy()
    out[off] = rng.permutation(R[off])
    return out


def probe_target(target: ProbeTarget, spec, seed: int = 0, progress: bool = False) -> dict:
    """Responses of the learned network and its controls at the matched contrast, and of the
    learned network over the contrast sweep. Returns a dict of arrays (``responses.npz``);
    ``progress`` shows a bar (stderr) over the networks probed."""
    single = spec.model_copy(update={"contrasts": (1.0,)})
    matched = target.matched_contrast(single)
    variants = {"learned": {}, "r_zero": {"R": np.zeros_like(target.R)},
                "r_shuffled": {"R": shuffled(target.R, seed)},
                "r_shuffled_offdiag": {"R": shuffled(target.R, seed, keep_diagonal=True)},
                "r_diagonal": {"R": np.diag(np.diag(target.R))}}
    if target.has_untrained:
        variants["untrained"] = {"untrained_model": True}
    from tqdm.auto import tqdm

    out = {}
    bar = tqdm(total=len(variants) + 1, desc="probe", unit="network", disable=not progress,
               file=sys.stderr, leave=False)
    for name, kw in variants.items():
        bar.set_postfix_str(name)
        out[name] = _grid(single, target.respond(single, matched, **kw))[..., 0]
        bar.update()
    bar.set_postfix_str("contrast sweep")
    out["sweep"] = _grid(spec, target.respond(spec, 1.0))  # (n, dir, speed, sf, contrast)
    bar.update()
    bar.close()
    n_sf = len(spec.spatial_frequencies)
    out["matched_contrast"] = matched.reshape(len(spec.directions), len(spec.speeds), n_sf,
                                              len(spec.phases))[0, 0, :, 0]
    return out


def tuning_rows(target: ProbeTarget, spec, responses: dict) -> tuple[list[dict], dict]:
    """One row per unit (tuning at the matched contrast, its controls' DI) and the summary
    metrics (over responsive units)."""
    dirs, speeds = np.asarray(spec.directions, float), np.asarray(spec.speeds, float)
    sfs = np.asarray(spec.spatial_frequencies, float)
    frac = spec.probe.responsive_fraction
    tun, resp, summ = {}, {}, {}
    for name in CONTROLS:
        if name not in responses:
            continue
        tun[name] = grating_tuning(responses[name], dirs, speeds, sfs)
        r_pref = responses[name].reshape(target.n_units, -1).max(axis=1)
        resp[name] = responsive_units(r_pref, frac)
        summ[name] = di_summary(tun[name].di, resp[name], DI_SELECTIVE)
    t, ok = tun["learned"], resp["learned"]
    centres = target.centres if target.centres is not None else np.full((target.n_units, 2),
                                                                        np.nan)
    rows = []
    for k in range(target.n_units):
        rows.append({
            "unit": k, "preferred_direction": t.preferred_direction[k], "di": t.di[k],
            "osi": t.osi[k], "dsi": t.dsi[k], "preferred_orientation": t.preferred_orientation[k],
            "preferred_speed": t.preferred_speed[k] if target.uses_space else np.nan,
            "preferred_sf": t.preferred_spatial_frequency[k] if target.uses_space else np.nan,
            "responsive": bool(ok[k]),
            "r_pref": float(responses["learned"][k].max()),
            "rf_x": centres[k, 0], "rf_y": centres[k, 1],
            **{f"di_{name}": tun[name].di[k] for name in tun if name != "learned"}})
    sweep = [di_summary(grating_tuning(responses["sweep"][..., c], dirs, speeds, sfs).di,
                        responsive_units(responses["sweep"][..., c].reshape(
                            target.n_units, -1).max(axis=1), frac), DI_SELECTIVE)
             for c in range(len(spec.contrasts))]
    nan = float("nan")
    metrics = {
        "kind": target.kind, "n_units": target.n_units, "n_responsive": summ["learned"]["n"],
        "di_median": summ["learned"]["median"],
        "di_frac_above_0_5": summ["learned"]["frac_above_0_5"],
        "n_ds_units": summ["learned"]["n_ds"],
        "di_median_r_zero": summ["r_zero"]["median"],
        "di_median_r_shuffled": summ["r_shuffled"]["median"],
        "di_median_r_shuffled_offdiag": summ["r_shuffled_offdiag"]["median"],
        "di_median_r_diagonal": summ["r_diagonal"]["median"],
        "di_median_untrained": summ.get("untrained", {}).get("median", nan),
        "di_frac_above_0_5_r_zero": summ["r_zero"]["frac_above_0_5"],
        "di_frac_above_0_5_r_shuffled": summ["r_shuffled"]["frac_above_0_5"],
        "di_frac_above_0_5_r_shuffled_offdiag": summ["r_shuffled_offdiag"]["frac_above_0_5"],
        "di_frac_above_0_5_r_diagonal": summ["r_diagonal"]["frac_above_0_5"],
        "di_frac_above_0_5_untrained": summ.get("untrained", {}).get("frac_above_0_5", nan),
        "n_ds_units_r_zero": summ["r_zero"]["n_ds"],
        "n_ds_units_r_shuffled": summ["r_shuffled"]["n_ds"],
        "n_ds_units_r_shuffled_offdiag": summ["r_shuffled_offdiag"]["n_ds"],
        "n_ds_units_r_diagonal": summ["r_diagonal"]["n_ds"],
        "n_ds_units_untrained": summ.get("untrained", {}).get("n_ds", nan),
        "osi_median": float(np.nanmedian(t.osi[ok])) if ok.any() else nan,
        "controls": summ,
        "contrast_sweep": [{"contrast": c, **s} for c, s in zip(spec.contrasts, sweep,
                                                                 strict=True)],
        "matched_contrast": {f"{f:g}": float(c) for f, c in
                             zip(sfs, responses["matched_contrast"], strict=True)},
        "window_frames": cycle_window(spec),
        "responsive_criterion": f"response to the preferred grating >= {frac:g} x the 90th "
                                "percentile over units (and > 0)",
        "di_definition": "DI = 1 - r(pref + 180) / r(pref) at the unit's preferred speed and "
                         "spatial frequency; r = mean max(z, 0) over whole cycles after "
                         "settling, averaged over start phases",
    }
    return rows, metrics


def probe_to_dir(fit_dir: Path, protocol: Path, out: Path, seed: int = 0,
                 overwrite: bool = False, overrides: Sequence[str] = (),
                 progress: bool = False) -> dict:
    """``neurorec probe``: check everything, then write ``responses.npz``, ``tuning.csv``,
    ``controls.csv``, ``metrics.json``, figures and ``report.html`` into ``out``
    (``overrides``: ``--set`` on the protocol)."""
    spec = load_protocol(Path(protocol), overrides)
    target = load_target(Path(fit_dir))
    if out.exists() and not overwrite:
        from neurorec.core.errors import OutputError

        raise OutputError(f"{out}: output directory exists (pass --overwrite to replace it)")
    t0 = time.perf_counter()
    responses = probe_target(target, spec, seed, progress=progress)
    rows, metrics = tuning_rows(target, spec, responses)
    metrics["probe_s"] = time.perf_counter() - t0
    with atomic_dir(out, overwrite=overwrite) as tmp:
        np.savez(tmp / "responses.npz", **responses, directions=np.asarray(spec.directions),
                 speeds=np.asarray(spec.speeds), spatial_frequencies=np.asarray(
                     spec.spatial_frequencies), contrasts=np.asarray(spec.contrasts))
        study.write_csv(tmp / "tuning.csv", rows)
        study.write_csv(tmp / "controls.csv", [{"network": k, **v} for k, v in
                                               metrics["controls"].items()]
                        + [{"network": f"learned, contrast {s['contrast']:g}",
                            **{k: v for k, v in s.items() if k != "contrast"}}
                           for s in metrics["contrast_sweep"]])
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
        _probe_report(tmp, target, spec, responses, rows, metrics)
    return metrics


def _probe_report(tmp: Path, target: ProbeTarget, spec, responses: dict, rows: list[dict],
                  metrics: dict) -> None:
    from matplotlib.figure import Figure  # no pyplot: the caller's backend stays as it is

    from neurorec.report import html

    df = pd.DataFrame(rows)
    ok = df["responsive"].to_numpy(bool)
    dirs = np.asarray(spec.directions, float)
    figs = {}
    fig = Figure(figsize=(5, 3))
    ax = fig.subplots(1, 1)
    bins = np.linspace(0, 1, 21)
    for col, lab in (("di", "learned"), ("di_r_zero", "R = 0"),
                     ("di_r_shuffled", "R, entries shuffled"),
                     ("di_r_shuffled_offdiag", "R, off-diagonal shuffled"),
                     ("di_r_diagonal", "R, diagonal only"),
                     ("di_untrained", "untrained")):
        if col in df:
            d = df.loc[ok, col].to_numpy(float)
            ax.hist(d[np.isfinite(d)], bins, histtype="step", label=lab, lw=1.2)
    ax.set(xlabel="DI", ylabel="responsive units")
    ax.legend(fontsize=7)
    figs["di"] = study.save_figure(fig, tmp / "di_controls.png")
    # polar plots of the most direction-selective responsive units
    learned = responses["learned"]
    order = [k for k in np.argsort(-np.nan_to_num(df["di"].to_numpy(float))) if ok[k]][:8]
    fig = Figure(figsize=(10, 5))
    axes = fig.subplots(2, 4, subplot_kw={"projection": "polar"})
    for a, k in zip(axes.ravel(), order, strict=False):
        flat = learned[k].reshape(len(dirs), -1)
        best = flat.mean(axis=0).argmax()
        th = np.deg2rad(np.r_[dirs, dirs[:1]])
        a.plot(th, np.r_[flat[:, best], flat[:1, best]], lw=1.2)
        a.set_title(f"unit {k}, DI {df['di'][k]:.2f}", fontsize=8)
        a.set_yticklabels([])
    figs["polar"] = study.save_figure(fig, tmp / "polar.png")
    fig = Figure(figsize=(8, 3))
    ax = fig.subplots(1, 2)
    speeds = np.asarray(spec.speeds, float)
    for k in order:
        t = grating_tuning(learned[k:k + 1], dirs, speeds,
                           np.asarray(spec.spatial_frequencies, float))
        c = t.speed_curve[0]
        ax[0].plot(speeds, c / max(c.max(), 1e-12), marker="o", lw=0.8)
    ax[0].set(xscale="log", xlabel="speed (deg/s)", ylabel="response / max",
              title="speed tuning, most direction-selective units")
    sw = metrics["contrast_sweep"]
    ax[1].plot([s["contrast"] for s in sw], [s["median"] for s in sw], marker="o")
    ax[1].set(xscale="log", xlabel="contrast", ylabel="median DI (responsive)",
              title="contrast sweep")
    figs["speed"] = study.save_figure(fig, tmp / "speed_tuning.png")
    keys = CONTROLS
    table = html.table([[k, v["n"], v["median"], v["frac_above_0_5"], v["n_ds"]]
                        for k, v in metrics["controls"].items() if k in keys]
                       + [[f"learned, contrast {s['contrast']:g}", s["n"], s["median"],
                           s["frac_above_0_5"], s["n_ds"]] for s in sw],
                       ["network", "responsive units", "median DI", "fraction DI > 0.5",
                        f"DI ≥ {DI_SELECTIVE}"])
    study.write_report(tmp, f"Direction probe ({target.kind})", [
        ("Direction index with controls",
         f"<p>{metrics['di_definition']}. Responsive: {metrics['responsive_criterion']}. "
         f"Window: last {metrics['window_frames']} frames. Matched contrast per spatial "
         f"frequency: {metrics['matched_contrast']}.</p>" + table
         + html.figure(figs["di"], "DI of responsive units, learned network and controls")),
        ("Tuning", html.figure(figs["polar"], "direction tuning at the preferred speed and "
                               "spatial frequency") + html.figure(figs["speed"], "speed tuning; "
                                                                  "median DI vs contrast")),
    ])


# ------------------------------------------------------------------------- connectomics
TUNING_COLUMNS = ("preferred_direction", "di", "osi", "preferred_orientation", "responsive")


def load_tuning(path: Path, n_units: int) -> pd.DataFrame:
    if not Path(path).is_file():
        raise DataError(f"{path}: not found (a tuning.csv written by `neurorec probe`)")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a CSV file ({type(err).__name__})") from None
    missing = [c for c in TUNING_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: {missing[0]}: column missing (a tuning.csv written by "
                        "`neurorec probe`)")
    if len(df) != n_units:
        raise DataError(f"{path}: {len(df)} rows, the network has {n_units} units")
    return df


def connectomics_predictions(R: np.ndarray, df: pd.DataFrame, centres: np.ndarray | None,
                             seed: int = 0, n_perm: int = 2000) -> list[cx.Prediction]:
    """The predictions that the tuning supports (orientation ones need 5 tuned units,
    direction ones 5 direction-selective units; the projection one also RF centres)."""
    ok = df["responsive"].to_numpy(bool)
    tuned = ok & (df["osi"].to_numpy(float) >= OSI_TUNED)
    selective = ok & (df["di"].to_numpy(float) >= DI_SELECTIVE)
    ori = df["preferred_orientation"].to_numpy(float)
    pref = df["preferred_direction"].to_numpy(float)
    kw = {"n_perm": n_perm, "n_boot": n_perm, "seed": seed}
    preds = []
    if tuned.sum() >= 5:
        preds.append(cx.coorientation(R, ori, tuned, K_TOP, **kw))
        preds.append(cx.weight_vs_orientation(R, ori, tuned, **kw)[0])
    if selective.sum() >= 5:
        if centres is not None and np.all(np.isfinite(centres)):
            preds.append(cx.projection_along_direction(R, pref, centres, selective, K_TOP,
                                                       **kw))
        preds.append(cx.weight_vs_direction(R, pref, selective, **kw))
    return preds


def connectomics_to_dir(fit_dir: Path, tuning: Path, out: Path, seed: int = 0,
                        overwrite: bool = False, n_perm: int = 2000) -> list[dict]:
    """``neurorec connectomics``: ``predictions.csv`` (prediction, effect, ci_low, ci_high,
    p, n_units, then the effect name and the same statistic on shuffled weights) and a
    report."""
    target = load_target(Path(fit_dir))
    df = load_tuning(Path(tuning), target.n_units)
    if out.exists() and not overwrite:
        from neurorec.core.errors import OutputError

        raise OutputError(f"{out}: output directory exists (pass --overwrite to replace it)")
    centres = None
    if {"rf_x", "rf_y"} <= set(df.columns):
        centres = df[["rf_x", "rf_y"]].to_numpy(float)
    preds = connectomics_predictions(target.R, df, centres, seed, n_perm)
    control = {p.statement: p for p in connectomics_predictions(
        shuffled(target.R, seed), df, centres, seed, n_perm)}  # diagonal unused by these
    rows = []
    for p in preds:
        c = control.get(p.statement)
        rows.append({"prediction": p.statement, "effect": p.effect, "ci_low": p.ci_low,
                     "ci_high": p.ci_high, "p": p.p_value, "n_units": p.n_units,
                     "effect_name": p.effect_name,
                     "effect_r_shuffled": c.effect if c else np.nan,
                     "p_r_shuffled": c.p_value if c else np.nan})
    ok = df["responsive"].to_numpy(bool)
    n_sel = int((ok & (df["di"].to_numpy(float) >= DI_SELECTIVE)).sum())
    n_tuned = int((ok & (df["osi"].to_numpy(float) >= OSI_TUNED)).sum())
    columns = ["prediction", "effect", "ci_low", "ci_high", "p", "n_units", "effect_name",
               "effect_r_shuffled", "p_r_shuffled"]
    with atomic_dir(out, overwrite=overwrite) as tmp:
        study.write_csv(tmp / "predictions.csv", rows, columns)
        (tmp / "metrics.json").write_text(json.dumps(
            {"n_tuned": n_tuned, "n_selective": n_sel, "k_top": K_TOP, "n_perm": n_perm,
             "osi_tuned": OSI_TUNED, "di_selective": DI_SELECTIVE, "predictions": rows},
            indent=2, default=float))
        _connectomics_report(tmp, target, df, centres, rows, n_tuned, n_sel)
    return rows


def _connectomics_report(tmp: Path, target: ProbeTarget, df: pd.DataFrame,
                         centres: np.ndarray | None, rows: list[dict], n_tuned: int,
                         n_sel: int) -> None:
    from matplotlib.figure import Figure  # no pyplot: the caller's backend stays as it is

    from neurorec.report import html

    ok = df["responsive"].to_numpy(bool)
    selective = ok & (df["di"].to_numpy(float) >= DI_SELECTIVE)
    fig = Figure(figsize=(8, 3.6))
    ax = fig.subplots(1, 2)
    if centres is not None and np.all(np.isfinite(centres)):
        targets = cx.strongest_targets(target.R, K_TOP)
        for k in np.flatnonzero(selective):
            th = np.deg2rad(df["preferred_direction"][k])
            for j in targets[k][targets[k] >= 0]:
                d = centres[j] - centres[k]
                ax[0].plot(d[0] * np.cos(th) + d[1] * np.sin(th),
                           -d[0] * np.sin(th) + d[1] * np.cos(th), ".", color="C2", ms=3)
        ax[0].axhline(0, color="0.7", lw=0.5)
        ax[0].axvline(0, color="0.7", lw=0.5)
    ax[0].set(xlabel="along preferred direction (deg)", ylabel="orthogonal (deg)",
              title="outgoing targets of DS units", aspect="equal")
    eig = np.linalg.eigvals(target.R)
    ax[1].scatter(eig.real, eig.imag, s=6)
    ax[1].set(xlabel="Re λ", ylabel="Im λ", title="spectrum of R", aspect="equal")
    fig_name = study.save_figure(fig, tmp / "outgoing_maps.png")
    table = html.table([[r["prediction"], r["effect_name"], r["effect"],
                         f"[{r['ci_low']:.3g}, {r['ci_high']:.3g}]", r["p"], r["n_units"],
                         r["effect_r_shuffled"]] for r in rows],
                       ["prediction", "effect", "value", "95% CI", "p", "units",
                        "shuffled R"])
    study.write_report(tmp, f"In-silico connectomics ({target.kind})", [
        ("Predictions",
         f"<p>Tuned: responsive and OSI ≥ {OSI_TUNED} (n={n_tuned}); direction-selective: DI "
         f"≥ {DI_SELECTIVE} (n={n_sel}); {K_TOP} strongest outgoing connections per unit; "
         "one-sided (two-sided for correlations) permutation p over shuffled tuning labels; "
         "95 % bootstrap CI over presynaptic units; the last column is the same statistic "
         "on R with shuffled entries.</p>" + table
         + html.figure(fig_name, "targets in each DS unit's preferred-direction frame; "
                       "eigenvalues of R"))])

