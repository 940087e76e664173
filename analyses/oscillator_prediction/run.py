"""Conv-encoder + RNN predicting movies of an oscillating object (issue 7, study A).

    python analyses/oscillator_prediction/run.py --out results/oscillator \
        [--stimulus stimuli/oscillator.yaml] [--model models/conv_rnn.yaml] \
        [--set rnn.epochs=10] [--stimulus-set split=left_right] [--seed 0] [--device cpu]
    python analyses/oscillator_prediction/run.py --out DIR --splits random,left_right,up_down \
        --device cuda --jobs 3 --max-minutes 8

Trains ``models/conv_rnn.yaml`` on the movies of the training angles of the protocol, then on
the held-out angles measures: reconstruction and prediction error (binary cross-entropy per
pixel, and the predicted object's position error in px) beside a copy-the-current-frame
baseline; PCA singular values of RNN vs encoder representations, with controls that place
where their dimensionality is set (the untrained encoder and RNN from the same seed, the code
the RNN predicts vs the true future code: :func:`dimension_controls`); linear-SVM decoding of the
motion direction per frame (5-fold, folds grouped by movie) from RNN vs encoder; per-unit
time courses and tuning to the axis angle; DMD of the RNN population dynamics with the
oscillatory mode's frequency vs the true one. Writes ``metrics.json``, ``RESULTS.md``,
``report.html`` and PNG figures into ``--out`` (atomically); a checkpoint beside ``--out``
lets a killed run resume.

``--splits random,left_right,up_down`` fits one model per test set (the held-out angles of
``stimulus.split``: random 20 %, left/right 160-200 and -20-20 deg, up/down 70-120 and
250-290 deg; the same movies otherwise) and writes each split's report into ``OUT/<split>/``
and a table of all of them into ``OUT`` (``RESULTS.md``, ``metrics.json``, ``report.html``).
``--jobs N`` fits the splits in N processes (``--threads`` torch threads each; ``--device
cuda`` puts every fit on the GPU); ``--max-minutes M`` stops training in time to write the
reports with the epochs that finished (the reports say how many).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from neurorec.analysis.dimensionality import (
    NORMALISATIONS,
    n_for_variance,
    normalised_spectrum,
    participation_ratio,
    pca_singular_values,
)
from neurorec.workflows import study
from neurorec.workflows.study import Budget, current_budget

ROOT = Path(__file__).resolve().parents[2]

STUDY = {"decoding_rnn": 0.95, "decoding_encoder": 0.76}
SPLITS = ("random", "left_right", "up_down")
DMD_MAX_GROWTH = 0.05  # |log|μ|| per frame of a sustained mode


def peak_positions(frames: np.ndarray) -> np.ndarray:
    """(..., 2) (column, row) of the brightest pixel of each frame (..., S, S)."""
    flat = frames.reshape(*frames.shape[:-2], -1).argmax(-1)
    return np.stack([flat % frames.shape[-1], flat // frames.shape[-1]], -1).astype(float)


def pca_spectrum(x: np.ndarray) -> np.ndarray:
    """Singular values of the centred (n_samples, n_features) matrix, normalised to sum 1."""
    return normalised_spectrum(pca_singular_values(x), "sum")


def pca_readings(x: np.ndarray) -> dict:
    """Dimensionality of a representation x (n_samples, n_features) under each reading:
    covariance (``raw``) or correlation (``standardised``) PCA; components for 90 % of the
    variance, participation ratio, and the spectrum under each normalisation."""
    out = {}
    for name, std in (("raw", False), ("standardised", True)):
        sv = pca_singular_values(x, standardise=std)
        out[name] = {"n90": n_for_variance(sv), "participation_ratio": participation_ratio(sv),
                     **{f"spectrum_{how}": normalised_spectrum(sv, how).tolist()
                        for how in NORMALISATIONS}}
    return out


def run_split(stim, spec, args, d: Path, ckpt: Path) -> dict:
    """Fit the model on the training angles of stimulus ``stim``, analyse the held-out ones and
    write figures, ``metrics.json``, ``RESULTS.md`` and ``report.html`` into ``d`` (a job of
    the pool). Returns the metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from neurorec.analysis.decoding import svm_decode_cv
    from neurorec.analysis.dmd import dmd
    from neurorec.families.conv_rnn.model import ConvRNN, frame_bce
    from neurorec.fit.run import Run
    from neurorec.report import html
    from neurorec.spec import dump_spec
    from neurorec.stimuli.oscillator import DIRECTION_NAMES, make_movies, motion_direction

    budget = current_budget()
    d.mkdir(parents=True, exist_ok=True)
    movies = make_movies(stim)
    train, test = movies.subset(~movies.is_test), movies.subset(movies.is_test)
    t0 = time.perf_counter()
    model = ConvRNN(spec, device=args.device, seed=args.seed).fit(
        train.frames, progress=not args.quiet and args.jobs <= 1,
        run=Run(checkpoint_dir=ckpt, resume=True),
        should_stop=budget.out_of_time if budget.stop_at is not None else None)
    fit_s = time.perf_counter() - t0
    epochs_done = {stage: sum(r["stage"] == stage for r in model.history_)
                   for stage in ("autoencoder", "rnn")}
    dt = spec.rnn.delta_t
    out_test = model.transform(test.frames)
    out_all = model.transform(movies.frames)
    warm = dt  # first frames: the RNN has seen too little to know the phase and direction

    # ---- errors on held-out angles (predicting frame t + dt from frames <= t, t >= warm)
    target = test.frames[:, warm + dt:]
    pred = out_test["prediction"][:, warm:-dt]
    copy = test.frames[:, warm:-dt]
    true_pos = test.centre_px[:, warm + dt:]
    m = {
        "n_train_movies": int((~movies.is_test).sum()), "n_test_movies": int(movies.is_test.sum()),
        "test_angles_deg": sorted({float(a) for a in test.angle_deg}),
        "n_parameters": model.n_parameters(), "fit_time_s": fit_s,
        "reconstruction_bce": frame_bce(test.frames, out_test["reconstruction"]),
        "reconstruction_mse": float(np.mean((test.frames - out_test["reconstruction"]) ** 2)),
        "prediction_bce": frame_bce(target, pred),
        "prediction_mse": float(np.mean((target - pred) ** 2)),
        "copy_baseline_bce": frame_bce(target, np.clip(copy, 1e-3, 1 - 1e-3)),
        # what a predictor that knows nothing of the object's position scores (a blurred
        # disc), and the least any predictor can score (the targets' own entropy: they are
        # grey levels, not 0/1)
        "mean_frame_baseline_bce": frame_bce(target, np.broadcast_to(
            train.frames.mean(axis=(0, 1)), target.shape)),
        "lowest_possible_bce": frame_bce(target, target),
        "copy_baseline_mse": float(np.mean((target - copy) ** 2)),
        "prediction_position_error_px": float(np.mean(np.linalg.norm(
            peak_positions(pred) - true_pos, axis=-1))),
        "reconstruction_position_error_px": float(np.mean(np.linalg.norm(
            peak_positions(out_test["reconstruction"]) - test.centre_px, axis=-1))),
        "copy_baseline_position_error_px": float(np.mean(np.linalg.norm(
            test.centre_px[:, warm:-dt] - true_pos, axis=-1))),
        "history": model.history_,
        "split": stim.split, "epochs_completed": epochs_done,
        "rnn_batch_size": spec.rnn.batch_size,
        "stopped_by_time_limit": model.stopped_early_,
    }

    # ---- PCA of representations on held-out frames
    code = out_test["code"][:, warm:].reshape(-1, out_test["code"].shape[-1])
    hidden = out_test["hidden"][:, warm:].reshape(-1, out_test["hidden"].shape[-1])
    sv_code, sv_hidden = pca_spectrum(code), pca_spectrum(hidden)
    m["pca_n90_encoder"] = n_for_variance(pca_singular_values(code))
    m["pca_n90_rnn"] = n_for_variance(pca_singular_values(hidden))
    m["pca"] = {"encoder": pca_readings(code), "rnn": pca_readings(hidden)}
    m["pca_controls"] = dimension_controls(model, test.frames, out_test, warm, args.seed)

    # ---- linear SVM decoding of motion direction per frame (held-out movies)
    labels = motion_direction(test.velocity_px[:, warm:]).reshape(-1)
    groups = np.repeat(np.arange(len(test.frames)), test.frames.shape[1] - warm)
    n_splits = int(min(5, len(test.frames)))
    m["direction_classes"] = [DIRECTION_NAMES[c] for c in np.unique(labels)]
    m["decoding_rnn"] = svm_decode_cv(hidden, labels, groups, n_splits, seed=args.seed)
    m["decoding_encoder"] = svm_decode_cv(code, labels, groups, n_splits, seed=args.seed)
    m["decoding_chance"] = float(np.bincount(labels).max() / len(labels))
    m.update(direction_information(test, out_test, labels, groups, n_splits, warm, args.seed))

    # ---- DMD of the RNN population per held-out movie: oscillatory frequency vs true
    # rank: pydmd's optimal hard threshold (a fixed rank 6 left only decaying modes near the
    # Nyquist frequency: 0.49 cycles/frame for the encoder); modes decaying or growing by
    # more than 5 % a frame are not the sustained oscillation
    true_f = 1.0 / stim.period_frames
    fits_rnn = [dmd(h[warm:], rank=0) for h in out_test["hidden"]]
    fits_code = [dmd(c[warm:], rank=0) for c in out_test["code"]]
    f_rnn = np.array([f.dominant_frequency(0.01, DMD_MAX_GROWTH) for f in fits_rnn])
    f_code = np.array([f.dominant_frequency(0.01, DMD_MAX_GROWTH) for f in fits_code])
    f0_rnn = np.array([f.fundamental_frequency(0.01, DMD_MAX_GROWTH) for f in fits_rnn])
    f0_code = np.array([f.fundamental_frequency(0.01, DMD_MAX_GROWTH) for f in fits_code])
    m.update(true_frequency_per_frame=true_f, true_frequency_hz=true_f * stim.frame_rate,
             dmd_frequency_rnn_mean=_nan(np.nanmean, f_rnn),
             dmd_frequency_rnn_sd=_nan(np.nanstd, f_rnn),
             dmd_frequency_encoder_mean=_nan(np.nanmean, f_code),
             dmd_relative_error_rnn=_nan(np.nanmean, np.abs(f_rnn - true_f)) / true_f,
             dmd_fundamental_rnn_mean=_nan(np.nanmean, f0_rnn),
             dmd_fundamental_rnn_sd=_nan(np.nanstd, f0_rnn),
             dmd_fundamental_encoder_mean=_nan(np.nanmean, f0_code),
             dmd_rank_rnn_median=float(np.median([len(f.frequency) for f in fits_rnn])),
             dmd_movies_without_sustained_mode=int(np.isnan(f_rnn).sum()))

    # ---- tuning of RNN units to the axis angle (oscillation amplitude = s.d. over time)
    amp = out_all["hidden"][:, warm:].std(axis=1)  # (n_movies, N)
    angles = np.unique(movies.angle_deg)
    tuning = np.stack([amp[movies.angle_deg == a].mean(0) for a in angles])  # (angles, N)
    depth = (tuning.max(0) - tuning.min(0)) / (tuning.max(0) + 1e-12)
    m["tuning_depth_median"] = float(np.median(depth))

    fig, ax = plt.subplots(3, 6, figsize=(12, 6.5))
    times = np.linspace(warm, stim.n_frames - dt - 1, 6).astype(int)
    for j, t in enumerate(times):
        for i, (img, lab) in enumerate(((test.frames[0, t + dt], f"true t+{dt}"),
                                        (out_test["prediction"][0, t], "predicted"),
                                        (out_test["reconstruction"][0, t], "reconstructed"))):
            ax[i, j].imshow(img, cmap="gray", vmin=0, vmax=1)
            ax[i, j].set_xticks([])
            ax[i, j].set_yticks([])
            ax[i, j].set_title(f"{lab}, t={t}", fontsize=8)
    fig.suptitle(f"held-out angle {test.angle_deg[0]:g} deg")
    study.save_figure(fig, d / "frames.png", dpi=90)

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.5))
    hist = model.history_
    for stage in ("autoencoder", "rnn"):
        h = [r for r in hist if r["stage"] == stage]
        ax[0].plot([r["loss"] for r in h], label=f"{stage} train")
        ax[0].plot([r["val_loss"] for r in h], "--", label=f"{stage} validation")
    ax[0].set(xlabel="epoch", ylabel="BCE", title="training", yscale="log")
    ax[0].legend(fontsize=7)
    ax[1].semilogy(sv_code, "o-", label="encoder")
    ax[1].semilogy(sv_hidden, "o-", label="RNN")
    ax[1].set(xlabel="component", ylabel="normalised singular value", title="PCA")
    ax[1].legend()
    ax[2].bar(["RNN", "encoder", "chance"],
              [m["decoding_rnn"], m["decoding_encoder"], m["decoding_chance"]])
    ax[2].set(ylim=(0, 1), ylabel="accuracy", title="motion direction (linear SVM)")
    study.save_figure(fig, d / "summary.png", dpi=90)

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.5))
    ax[0].plot(out_test["hidden"][0][:, :8])
    ax[0].set(xlabel="frame", ylabel="activity", title="RNN units, one held-out movie")
    order = np.argsort(tuning.argmax(0))
    im = ax[1].imshow(tuning[:, order].T, aspect="auto", cmap="viridis",
                      extent=(angles[0], angles[-1], len(order), 0))
    ax[1].set(xlabel="axis angle (deg)", ylabel="unit (by preferred angle)",
              title="tuning: s.d. over time")
    fig.colorbar(im, ax=ax[1])
    bins = np.linspace(0, 0.5, 26)
    ax[2].hist(f_rnn[np.isfinite(f_rnn)], bins=bins, alpha=0.7, label="RNN")
    ax[2].hist(f_code[np.isfinite(f_code)], bins=bins, alpha=0.5, label="encoder")
    ax[2].axvline(true_f, color="k", label="true")
    ax[2].set(xlabel="cycles / frame", title="DMD dominant sustained mode")
    ax[2].legend()
    study.save_figure(fig, d / "dynamics.png", dpi=90)

    pca_figure(plt, m, d / "pca.png")
    study.write_json(d / "metrics.json", m)
    (d / "spec.yaml").write_text(dump_spec(spec))
    (d / "stimulus.yaml").write_text(dump_spec(stim))
    rows = [
        ("reconstruction BCE / MSE (held-out angles)",
         f"{m['reconstruction_bce']:.4f} / {m['reconstruction_mse']:.5f}", "-"),
        (f"prediction t+{dt} BCE / MSE", f"{m['prediction_bce']:.4f} / "
         f"{m['prediction_mse']:.5f}", "-"),
        ("copy-current-frame baseline BCE / MSE",
         f"{m['copy_baseline_bce']:.4f} / {m['copy_baseline_mse']:.5f}", "-"),
        ("mean-training-frame baseline BCE / lowest possible BCE (target entropy)",
         f"{m['mean_frame_baseline_bce']:.4f} / {m['lowest_possible_bce']:.4f}", "-"),
        ("object position error: prediction / copy baseline (px)",
         f"{m['prediction_position_error_px']:.2f} / "
         f"{m['copy_baseline_position_error_px']:.2f}", "-"),
        ("components for 90 % variance: encoder / RNN",
         f"{m['pca_n90_encoder']} / {m['pca_n90_rnn']}", "-"),
        ("motion direction decoding, RNN", f"{m['decoding_rnn']:.3f}",
         f"{STUDY['decoding_rnn']:.2f}"),
        ("motion direction decoding, encoder", f"{m['decoding_encoder']:.3f}",
         f"{STUDY['decoding_encoder']:.2f}"),
        ("decoding chance (majority class)", f"{m['decoding_chance']:.3f}", "-"),
        ("DMD frequency, RNN (cycles/frame): dominant sustained mode / fundamental",
         f"{m['dmd_frequency_rnn_mean']:.4f} ± {m['dmd_frequency_rnn_sd']:.4f} / "
         f"{m['dmd_fundamental_rnn_mean']:.4f} ± {m['dmd_fundamental_rnn_sd']:.4f}",
         f"true {true_f:.4f}"),
        ("DMD frequency, encoder: dominant / fundamental",
         f"{m['dmd_frequency_encoder_mean']:.4f} / {m['dmd_fundamental_encoder_mean']:.4f}",
         f"true {true_f:.4f}"),
        ("median tuning depth of RNN units to angle", f"{m['tuning_depth_median']:.2f}", "-"),
    ]
    header = ["quantity", "ours", "study"]
    setup = (f"Stimulus {stim.name}: {stim.n_angles} axis angles × {stim.movies_per_angle} "
             f"movie(s) of {stim.n_frames} frames, {stim.size_px}×{stim.size_px} px, period "
             f"{stim.period_frames:g} frames, axis point {stim.axis_point}, split "
             f"{stim.split}: {m['n_test_movies']} held-out movies. Model: autoencoder "
             f"{m['n_parameters']['autoencoder']} parameters, "
             f"{_epochs(epochs_done['autoencoder'], spec.autoencoder.epochs)}; RNN "
             f"{spec.rnn.n_units} units ({m['n_parameters']['rnn']} parameters), "
             f"{_epochs(epochs_done['rnn'], spec.rnn.epochs)}; seed "
             f"{args.seed}; fit {fit_s:.0f} s. Decoding: classes "
             f"{m['direction_classes']}, {n_splits}-fold CV grouped by movie, frames "
             f"t ≥ {warm}. DMD per held-out movie (frames t ≥ {warm}, rank by pydmd's "
             f"optimal hard threshold, median {m['dmd_rank_rnn_median']:g} for the RNN): "
             f"the largest-amplitude mode with |growth| ≤ {DMD_MAX_GROWTH:g}/frame, and the "
             f"lowest such frequency with ≥ 10 % of its amplitude (fundamental); "
             f"{m['dmd_movies_without_sustained_mode']} movies had no sustained mode.")
    claims = claim_rows({None: m})
    md = ["# Oscillating-object prediction: results", "", setup, "",
          "## The study's claims", "", *study.markdown_table(claims, CLAIM_HEADER), "",
          "## All numbers", "", *study.markdown_table(rows, header), "",
          "Figures: `frames.png`, `summary.png`, `dynamics.png`, `pca.png`.", ""]
    (d / "RESULTS.md").write_text("\n".join(md))
    study.write_report(d, "Oscillating-object prediction (conv encoder + RNN)", [
        ("Setup", f"<p>{setup}</p>"), ("The study's claims", html.table(claims, CLAIM_HEADER)),
        ("Numbers", html.table(rows, header)),
        ("PCA spectra under each normalisation", html.figure("pca.png", "PCA")),
        ("Example frames", html.figure("frames.png", "true vs predicted vs reconstructed")),
        ("Training, PCA, decoding", html.figure("summary.png", "summary")),
        ("Dynamics", html.figure("dynamics.png", "units, tuning, DMD")),
    ])
    if not model.stopped_early_:  # a stopped fit keeps its checkpoint: run again to go on
        shutil.rmtree(ckpt, ignore_errors=True)
    return m


def initial_modules(spec, size_px: int, seed: int):
    """The autoencoder and RNN of ``ConvRNN(spec, seed=seed).fit(...)`` as they were before
    training: fit draws them first from ``torch.Generator().manual_seed(seed)``, the
    autoencoder then the RNN, so the same draws here give the same initial weights."""
    import torch

    from neurorec.families.conv_rnn.model import initial_modules as draw

    ae, rnn = draw(spec, size_px, torch.Generator().manual_seed(seed))
    return ae.eval(), rnn.eval()


SATURATED = 0.95  # |tanh| above this: a unit near its bound


def dimension_controls(model, frames: np.ndarray, out: dict, warm: int, seed: int) -> dict:
    """Where the RNN's dimensionality (vs the encoder's) is set, measured by controls.

    Participation ratio and n90 (raw and standardised PCA, :func:`pca_readings`) over
    frames t ≥ ``warm`` of held-out movies ``frames`` (n, T, S, S), ``out`` =
    ``model.transform(frames)``, of: the encoder with its initial weights (``encoder_untrained``);
    the RNN with its initial weights driven by the trained encoder's codes
    (``rnn_untrained``; the trained RNN's input, so only the RNN's training differs); the
    code the trained RNN predicts for frame t + Δt (its sigmoid readout, ``rnn_prediction``)
    and the true code of frame t + Δt (``future_code``): a predictor confined to few
    dimensions needs only that many in its state. ``saturated_*``: fraction of RNN states
    with |h| > :data:`SATURATED` (trained, untrained).
    """
    import torch

    dt = model.spec.rnn.delta_t
    ae0, rnn0 = initial_modules(model.spec, frames.shape[-1], seed)
    flat = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731  (movies, T, D) -> (., D)
    with torch.no_grad():
        code0 = np.stack([ae0.encoder(torch.as_tensor(f, dtype=torch.float32)[:, None])
                          .flatten(1).numpy() for f in frames])
        codes = torch.as_tensor(out["code"], dtype=torch.float32)
        hidden0 = rnn0(codes)[0].numpy()
        zhat = model.rnn_(codes)[1].numpy()
    return {
        "encoder_untrained": _dims(pca_readings(flat(code0[:, warm:]))),
        "rnn_untrained": _dims(pca_readings(flat(hidden0[:, warm:]))),
        "rnn_prediction": _dims(pca_readings(flat(zhat[:, warm:-dt]))),
        "future_code": _dims(pca_readings(flat(out["code"][:, warm + dt:]))),
        "saturated_trained": float(np.mean(np.abs(out["hidden"][:, warm:]) > SATURATED)),
        "saturated_untrained": float(np.mean(np.abs(hidden0[:, warm:]) > SATURATED)),
    }


def _dims(readings: dict) -> dict:
    """The dimensionality numbers of :func:`pca_readings` without the spectra."""
    return {r: {k: v[k] for k in ("n90", "participation_ratio")} for r, v in readings.items()}


def direction_information(test, out_test: dict, labels: np.ndarray, groups: np.ndarray,
                          n_splits: int, warm: int, seed: int) -> dict:
    """What one frame, and what two consecutive frames, can say about the motion direction.

    An object in harmonic motion along an axis through the centre passes every position of
    its path once each way per period, with the phase uniform: the position fixes the axis
    but not the sign of the velocity, so no rule on one frame beats 1/2 (the Bayes bound,
    up to the frames at the turning points). Measured here with flexible decoders (k-NN,
    RBF SVM) on the true object position and on the encoder's code of one frame, and with a
    linear SVM on two consecutive frames (position, or the encoder codes of frames t and
    t − 1): the displacement is the velocity.
    """
    from neurorec.analysis.decoding import decode_cv, lagged_features

    def cv(x, clf):
        return decode_cv(x.reshape(len(labels), -1), labels, groups, n_splits, clf, seed=seed)

    pos = test.centre_px - test.centre_px.mean((0, 1))  # (movies, frames, 2)
    code = out_test["code"]
    two_pos = lagged_features(pos[:, warm - 1:], (0, 1))
    two_code = lagged_features(code[:, warm - 1:], (0, 1))
    diff_code = code[:, warm:] - code[:, warm - 1:-1]
    return {
        "decoding_position_one_frame_knn": cv(pos[:, warm:], "knn"),
        "decoding_position_one_frame_rbf": cv(pos[:, warm:], "rbf_svm"),
        "decoding_position_two_frames_linear": cv(two_pos, "linear_svm"),
        "decoding_encoder_one_frame_knn": cv(code[:, warm:], "knn"),
        "decoding_encoder_one_frame_rbf": cv(code[:, warm:], "rbf_svm"),
        "decoding_encoder_two_frames": cv(two_code, "linear_svm"),
        "decoding_encoder_code_difference": cv(diff_code, "linear_svm"),
        "direction_bayes_bound_one_frame": 0.5,
    }


CLAIM_HEADER = ["study claim", "study value", "ours", "same settings?", "verdict"]


def _per_split(results: dict, fmt) -> str:
    return "; ".join(f"{k or 'this split'}: {fmt(m)}" for k, m in results.items())


def _pca_text(m: dict, reading: str) -> str:
    e, r = m["pca"]["encoder"][reading], m["pca"]["rnn"][reading]
    return (f"n90 enc {e['n90']} / RNN {r['n90']}, PR enc {e['participation_ratio']:.1f} / "
            f"RNN {r['participation_ratio']:.1f}")


def _pr(d: dict) -> str:
    return f"{d['raw']['participation_ratio']:.1f} / {d['standardised']['participation_ratio']:.1f}"


def _controls_text(m: dict) -> str:
    c = m["pca_controls"]
    return (f"encoder {_pr(m['pca']['encoder'])} (untrained {_pr(c['encoder_untrained'])}); "
            f"RNN untrained {_pr(c['rnn_untrained'])} -> trained {_pr(m['pca']['rnn'])}; "
            f"RNN's predicted code {_pr(c['rnn_prediction'])} vs true future code "
            f"{_pr(c['future_code'])}; states beyond ±{SATURATED:g} (saturated tanh): "
            f"{c['saturated_untrained']:.1%} untrained, {c['saturated_trained']:.1%} trained")


def _controls_verdict(m: dict) -> str:
    """What the controls say about the RNN sitting below the encoder (raw PCA, participation
    ratio): whether the code the RNN predicts spans fewer dimensions than the true future
    code (a predictor that blurs needs fewer), and whether the RNN's training lowered it."""
    enc, rnn = (m["pca"][k]["raw"]["participation_ratio"] for k in ("encoder", "rnn"))
    c = {k: v["raw"]["participation_ratio"] for k, v in m["pca_controls"].items()
         if isinstance(v, dict)}
    if rnn >= enc:
        return "not reversed here"
    training = (f"training lowered the RNN from {c['rnn_untrained']:.1f} (untrained, same "
                f"codes) to {rnn:.1f}" if rnn < c["rnn_untrained"] else
                f"not made by training (untrained RNN {c['rnn_untrained']:.1f}, trained "
                f"{rnn:.1f})")
    if c["rnn_prediction"] < c["future_code"]:
        return (f"follows the RNN's predictions: the code it predicts spans "
                f"{c['rnn_prediction']:.1f} of the true future code's {c['future_code']:.1f} "
                f"(= the encoder's distribution), and the RNN state ({rnn:.1f}) stays below "
                f"the encoder's {enc:.1f}; {training} (measured)")
    return f"not localised: its predictions are as high-dimensional as the frames; {training}"


def load_trained_further(dirs: list[Path]) -> list[dict]:
    """``{split: metrics}`` of earlier runs of this command (``--splits``) with more RNN
    training (``--set rnn.epochs=...``, ``rnn.batch_size``), one per folder."""
    import json

    from neurorec.core.errors import DataError

    out = []
    for d in dirs:
        f = Path(d) / "metrics.json"
        if not f.is_file():
            raise DataError(f"--trained-further: {f}: no metrics.json (a --splits run's folder)")
        splits = json.loads(f.read_text()).get("splits")
        if not isinstance(splits, dict) or not all(
                "pca" in m and "rnn_batch_size" in m for m in splits.values()):
            raise DataError(f"--trained-further: {f}: field 'splits' lacks the PCA numbers "
                            "(a run of an older run.py)")
        out.append(splits)
    return out


def training_rows(results: dict, further: list[dict]) -> list[tuple]:
    """The claim row comparing the RNN's dimensionality at the study's settings with the same
    network trained further (runs of :func:`load_trained_further`), per split found in both:
    raw participation ratio of the RNN vs the encoder, and the prediction's position error."""
    def point(m: dict) -> str:
        return (f"{m['epochs_completed']['rnn']} epochs (batch {m.get('rnn_batch_size', '?')}):"
                f" RNN {_pr(m['pca']['rnn'])}, position error "
                f"{m['prediction_position_error_px']:.1f} px")

    cells, verdicts = [], []
    for k, m in results.items():
        runs = sorted([f[k] for f in further if k in f],
                      key=lambda r: r["epochs_completed"]["rnn"])
        if not runs:
            continue
        enc = m["pca"]["encoder"]["raw"]["participation_ratio"]
        cells.append(f"{k}: encoder {_pr(m['pca']['encoder'])}; "
                     + "; ".join(point(r) for r in [m, *runs]))
        prs = [r["pca"]["rnn"]["raw"]["participation_ratio"] for r in [m, *runs]]
        last = runs[-1]
        verdicts.append(
            f"{k}: RNN PR {' -> '.join(f'{x:.1f}' for x in prs)} as the prediction sharpens; "
            + (f"at {last['epochs_completed']['rnn']} epochs it reaches the encoder's "
               f"({prs[-1]:.1f} vs {enc:.1f}): the reversal at the study's settings is "
               "under-training (measured)" if prs[-1] >= enc else
               f"still below the encoder's {enc:.1f} at {last['epochs_completed']['rnn']} "
               "epochs"))
    if not cells:
        return []
    return [("(why ours is reversed) the same network trained further (participation ratio "
             "raw / standardised, verdict on raw; RNN epochs beyond the study's 50 continue "
             "from its checkpoint with the batch size given)", "-",
             "; ".join(cells), "ours: more RNN updates than the study's settings give here",
             "; ".join(verdicts))]


def claim_rows(results: dict, further: list[dict] | None = None) -> list[tuple]:
    """The claim table over the fitted splits: study claim | study value | ours | same
    settings? | verdict (measured); ``further``: :func:`load_trained_further` runs."""
    settings = ("architecture, losses, optimiser and epochs as described; movies as in the "
                "setup (the study's data-set size and batch size are not stated)")
    rows = []
    ms = list(results.values())
    rows.append(("the autoencoder reconstructs frames of held-out angles (figure)",
                 "figure", _per_split(results, lambda m: f"BCE {m['reconstruction_bce']:.4f} "
                                      f"(floor {m['lowest_possible_bce']:.4f})"), settings,
                 "reproduced" if all(m["reconstruction_bce"] < 1.1 * m["lowest_possible_bce"]
                                     for m in ms) else "not reproduced"))
    rows.append(("the RNN predicts the frame 5 steps ahead (figure)", "figure",
                 _per_split(results, lambda m: "position error "
                            f"{m['prediction_position_error_px']:.1f} px vs copy-frame "
                            f"{m['copy_baseline_position_error_px']:.1f} px"),
                 settings, "reproduced" if all(
                     m["prediction_position_error_px"] < m["copy_baseline_position_error_px"]
                     for m in ms) else "not reproduced"))
    rows.append(("motion direction decodes from the RNN (linear SVM)",
                 f"{STUDY['decoding_rnn']:.2f}",
                 _per_split(results, lambda m: f"{m['decoding_rnn']:.3f} (chance "
                            f"{m['decoding_chance']:.2f})"), settings,
                 "reproduced (within 0.1)" if all(abs(m["decoding_rnn"] - STUDY["decoding_rnn"])
                                                  <= 0.1 for m in ms) else
                 "differs by more than 0.1 in some split"))
    rows.append(("motion direction decodes less well from the encoder (linear SVM, one frame)",
                 f"{STUDY['decoding_encoder']:.2f}",
                 _per_split(results, lambda m: f"{m['decoding_encoder']:.3f}; one-frame bound "
                            f"{m['direction_bayes_bound_one_frame']:.2f}: true position k-NN "
                            f"{m['decoding_position_one_frame_knn']:.3f} / RBF "
                            f"{m['decoding_position_one_frame_rbf']:.3f}, encoder k-NN "
                            f"{m['decoding_encoder_one_frame_knn']:.3f} / RBF "
                            f"{m['decoding_encoder_one_frame_rbf']:.3f}"), settings,
                 "ordering RNN > encoder reproduced; 0.76 not reachable from one frame "
                 "(bound 0.5, measured)" if all(m["decoding_encoder"] < m["decoding_rnn"]
                                                for m in ms) else "not reproduced"))
    rows.append(("(what gives 0.76) direction from two consecutive encoder codes",
                 f"{STUDY['decoding_encoder']:.2f}",
                 _per_split(results, lambda m: "codes t, t-1: "
                            f"{m['decoding_encoder_two_frames']:.3f}"
                            f"; code difference {m['decoding_encoder_code_difference']:.3f}; "
                            f"true positions t, t-1: "
                            f"{m['decoding_position_two_frames_linear']:.3f}"),
                 "ours, not the study's decoder", "two frames carry the direction (measured)"))
    for reading in ("raw", "standardised"):
        ordering = ["RNN > encoder" if m["pca"]["rnn"][reading]["participation_ratio"] >
                    m["pca"]["encoder"][reading]["participation_ratio"] else "encoder > RNN"
                    for m in ms]
        rows.append((f"PCA singular values, RNN vs encoder ({reading} features; spectra "
                     "normalised by sum, max and variance in pca.png)",
                     "RNN spectrum flatter than the encoder's (issue 18: ours reversed)",
                     _per_split(results, lambda m, r=reading: _pca_text(m, r)),
                     "normalisation of the study not stated; all shown",
                     "by participation ratio: " + ", ".join(ordering) +
                     ("" if all(o == "RNN > encoder" for o in ordering) else
                      " (reversed; the controls row below measures where that is set)")))
    rows.append(("(why ours is reversed) PCA dimensionality of controls: untrained encoder, "
                 "untrained RNN on the trained codes, the RNN's predicted code vs the true "
                 "future code (participation ratio raw / standardised)", "-",
                 _per_split(results, _controls_text), "the fitted model and its initial "
                 "weights (same seed); ours, not the study's", "; ".join(
                     f"{k or 'this split'}: {_controls_verdict(m)}" for k, m in
                     results.items())))
    rows += training_rows(results, further or [])
    rows.append(("units oscillate and are tuned to the axis angle (figure)", "figure",
                 _per_split(results,
                            lambda m: f"median tuning depth {m['tuning_depth_median']:.2f}"),
                 settings, "figure made"))
    rows.append(("DMD of the RNN recovers the oscillation frequency", "the true frequency",
                 _per_split(results, lambda m: f"fundamental {m['dmd_fundamental_rnn_mean']:.4f}"
                            f" vs true {m['true_frequency_per_frame']:.4f} cycles/frame"),
                 "DMD rank by pydmd's optimal hard threshold",
                 "reproduced (within 2 %)" if all(abs(m["dmd_fundamental_rnn_mean"] /
                                                      m["true_frequency_per_frame"] - 1) < 0.02
                                                  for m in ms) else "not reproduced"))
    return rows


def pca_figure(plt, m: dict, path: Path) -> None:
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.5))
    for a, how in zip(ax, NORMALISATIONS, strict=True):
        for who, c in (("encoder", "C0"), ("rnn", "C1")):
            for reading, ls in (("raw", "-"), ("standardised", "--")):
                y = m["pca"][who][reading][f"spectrum_{how}"]
                a.semilogy(np.arange(1, len(y) + 1), y, ls, color=c, label=f"{who} {reading}")
        a.set(xlabel="component", title={"sum": "s / Σs", "max": "s / s₁",
                                         "variance": "s² / Σs²"}[how], xlim=(0, 40))
    ax[0].legend(fontsize=7)
    study.save_figure(fig, path, dpi=90)


def _nan(stat, x: np.ndarray) -> float:
    """``stat`` (np.nanmean, np.nanstd) of x; NaN without a warning when x is all NaN."""
    x = np.asarray(x, float)
    return float(stat(x)) if np.isfinite(x).any() else float("nan")


def _epochs(done: int, wanted: int) -> str:
    return f"{wanted} epochs" if done == wanted else f"{done} of {wanted} epochs (time limit)"


SUMMARY_ROWS = [  # (label, metric key(s), format, study value)
    ("reconstruction BCE (held-out angles)", ("reconstruction_bce",), "{:.4f}", "-"),
    ("prediction t+5 BCE", ("prediction_bce",), "{:.4f}", "-"),
    ("copy-current-frame baseline BCE", ("copy_baseline_bce",), "{:.4f}", "-"),
    ("mean-training-frame baseline BCE / lowest possible BCE",
     ("mean_frame_baseline_bce", "lowest_possible_bce"), "{:.4f}", "-"),
    ("object position error: prediction / copy baseline (px)",
     ("prediction_position_error_px", "copy_baseline_position_error_px"), "{:.2f}", "-"),
    ("motion direction decoding, RNN", ("decoding_rnn",), "{:.3f}",
     f"{STUDY['decoding_rnn']:.2f}"),
    ("motion direction decoding, encoder", ("decoding_encoder",), "{:.3f}",
     f"{STUDY['decoding_encoder']:.2f}"),
    ("decoding chance (majority class)", ("decoding_chance",), "{:.3f}", "-"),
    ("direction from one frame: true position k-NN / RBF SVM (bound 0.5)",
     ("decoding_position_one_frame_knn", "decoding_position_one_frame_rbf"), "{:.3f}", "-"),
    ("direction from one encoder code: k-NN / RBF SVM",
     ("decoding_encoder_one_frame_knn", "decoding_encoder_one_frame_rbf"), "{:.3f}", "-"),
    ("direction from two consecutive encoder codes / their difference (linear SVM)",
     ("decoding_encoder_two_frames", "decoding_encoder_code_difference"), "{:.3f}", "0.76"),
    ("direction from two consecutive true positions (linear SVM)",
     ("decoding_position_two_frames_linear",), "{:.3f}", "-"),
    ("DMD frequency, RNN (cycles/frame): dominant / fundamental",
     ("dmd_frequency_rnn_mean", "dmd_fundamental_rnn_mean"), "{:.4f}", "-"),
    ("true frequency (cycles/frame)", ("true_frequency_per_frame",), "{:.4f}", "-"),
    ("components for 90 % variance: encoder / RNN", ("pca_n90_encoder", "pca_n90_rnn"),
     "{}", "-"),
    ("epochs: autoencoder / RNN", ("epochs_completed",), "{}", "30 / 50"),
    ("fit time (s)", ("fit_time_s",), "{:.0f}", "-"),
]


def _summary_value(m: dict, keys: tuple[str, ...], fmt: str) -> str:
    if keys == ("epochs_completed",):
        e = m["epochs_completed"]
        return f"{e['autoencoder']} / {e['rnn']}"
    return " / ".join(fmt.format(m[k]) for k in keys)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    study.add_common_args(ap, "out")
    ap.add_argument("--stimulus", type=Path, default=ROOT / "stimuli" / "oscillator.yaml")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "conv_rnn.yaml")
    study.add_common_args(ap, "set", helps={
        "set": "model spec override, e.g. rnn.epochs=10 (repeatable)"})
    ap.add_argument("--stimulus-set", dest="stim_overrides", action="append", default=[],
                    metavar="FIELD=VALUE", help="stimulus spec override (repeatable)")
    ap.add_argument("--splits", default=None,
                    help="comma list of test sets (random, left_right, up_down): one fit each, "
                         "reports in OUT/<split>/ and a summary table in OUT")
    ap.add_argument("--trained-further", type=Path, nargs="+", default=[], metavar="DIR",
                    help="folders of earlier --splits runs of this command with more RNN "
                         "training: their PCA numbers join the claim table")
    study.add_common_args(ap, "seed", "device", "jobs", "threads", "max_minutes", "overwrite",
                          "quiet", helps={"jobs": "splits fitted in parallel processes"})
    args = ap.parse_args(argv)
    study.require({"pydmd": "pydmd", "sklearn": "scikit-learn"})

    from neurorec.core.errors import SpecError
    from neurorec.report import html
    from neurorec.spec import load_model_spec, load_stimulus_spec

    further = load_trained_further(args.trained_further)  # a bad folder fails before any fit
    budget = Budget.from_minutes(args.max_minutes, reserve_s=45.0)
    study.apply_thread_policy(args.threads)
    spec = load_model_spec(args.model, args.set)
    if args.splits is None:
        stims = {None: load_stimulus_spec(args.stimulus, args.stim_overrides)}
    else:
        splits = [x for x in args.splits.split(",") if x]
        bad = [x for x in splits if x not in SPLITS]
        if bad or not splits:
            raise SpecError(f"--splits: {bad or args.splits!r}: choose from {', '.join(SPLITS)}")
        stims = {x: load_stimulus_spec(args.stimulus, [*args.stim_overrides, f"split={x}"])
                 for x in splits}
    with study.output_dir(args) as d:
        jobs = []
        for split, stim in stims.items():
            tag = "" if split is None else f".{split}"
            ckpt = study.beside(args.out, f"{tag}.checkpoint")
            jobs.append((split, run_split, (stim, spec, args, d if split is None else d / split,
                                            ckpt)))
        outcomes = study.run_jobs(jobs, args.jobs, budget, n_threads=args.threads,
                                  on_done=None if args.quiet else _progress_line)
        failed = {k: o for k, o in outcomes.items() if o.status != "done"}
        results = {k: o.result for k, o in outcomes.items() if o.status == "done"}
        if args.splits is not None:
            header = ["quantity", *results, "study"]
            rows = [(label, *(_summary_value(m, keys, fmt) for m in results.values()), study)
                    for label, keys, fmt, study in SUMMARY_ROWS]
            not_done = study.not_completed(failed)
            study.write_json(d / "metrics.json", {"splits": {k: {kk: v for kk, v in m.items()
                                                           if kk != "history"}
                                                       for k, m in results.items()},
                                            "splits_not_completed": not_done,
                                            "device": args.device, "jobs": args.jobs,
                                            "max_minutes": args.max_minutes})
            intro = ("One model fitted per test set (held-out axis angles: random 20 %; "
                     "left_right 160-200 and -20-20 deg; up_down 70-120 and 250-290 deg); each "
                     "split's full report is in its folder.")
            if not_done:
                intro += " Not completed: " + "; ".join(not_done) + "."
            md = ["# Oscillating-object prediction: test sets", "", intro, "",
                  "## The study's claims", "",
                  *study.markdown_table(claim_rows(results, further), CLAIM_HEADER), "",
                  "## All numbers", "",
                  *study.markdown_table(rows, header), "",
                  *[f"- `{k}/RESULTS.md`, `{k}/report.html`" for k in results], ""]
            (d / "RESULTS.md").write_text("\n".join(md))
            links = "".join(f'<li><a href="{k}/report.html">{k}</a></li>' for k in results)
            study.write_report(d, "Oscillating-object prediction: test sets", [
                ("Setup", f"<p>{intro}</p>"), ("Numbers", html.table(rows, header)),
                ("Per-split reports", f"<ul>{links}</ul>")])
        elif failed:
            o = next(iter(failed.values()))
            raise SystemExit(f"the fit did not finish: {o.status}\n{o.error}")
    study.exit_if_failed(outcomes, lambda k: f"split {k}")
    return results[None] if args.splits is None else results


def _progress_line(o) -> None:
    name = o.key or "fit"
    if o.status != "done":
        print(f"{name}: {o.status} {o.detail}", flush=True)
        return
    m = o.result
    print(f"{name}: prediction BCE {m['prediction_bce']:.4f} (mean-frame baseline "
          f"{m['mean_frame_baseline_bce']:.4f}, floor {m['lowest_possible_bce']:.4f}), "
          f"decoding RNN {m['decoding_rnn']:.3f} / encoder "
          f"{m['decoding_encoder']:.3f}, epochs {m['epochs_completed']}, {o.seconds:.0f} s",
          flush=True)


if __name__ == "__main__":
    from neurorec.core.errors import run_script

    run_script(main)
