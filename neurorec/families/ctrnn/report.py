"""Reports of ctrnn simulations and training runs: figures (PNG) and one HTML page each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from neurorec.analysis.dynamics import eigen_spectrum, pca_trajectories
from neurorec.report import html


def activity_figure(time: np.ndarray, rates: np.ndarray, outputs: np.ndarray,
                    targets: np.ndarray | None, mask: np.ndarray | None, path: Path) -> Path:
    """Rates of a few units, outputs against targets, and the top-2 PCA trajectories."""
    # a Figure object, not pyplot: writing a report never touches the global backend
    fig = Figure(figsize=(14, 3.6))
    axes = fig.subplots(1, 3)
    for unit in range(min(8, rates.shape[2])):
        axes[0].plot(time, rates[0, :, unit], lw=1)
    axes[0].set(xlabel="time (s)", ylabel="rate", title="trial 0, first units")
    for trial in range(min(4, outputs.shape[0])):
        line, = axes[1].plot(time, outputs[trial, :, 0], lw=1.2)
        if targets is not None:
            tgt = np.where(mask[trial, :, 0] > 0, targets[trial, :, 0], np.nan)
            axes[1].plot(time, tgt, "--", color=line.get_color(), lw=1)
    axes[1].set(xlabel="time (s)", ylabel="output 0", title="outputs (dashed: targets)")
    pca = pca_trajectories(rates, 2)
    for trial in range(min(16, rates.shape[0])):
        axes[2].plot(*pca.trajectories[trial].T[:2], lw=0.8)
    axes[2].set(xlabel="PC1", ylabel="PC2",
                title=f"PCA ({100 * pca.explained.sum():.0f} % variance)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def simulation_report(out: Path, title: str, summary: list[tuple[str, object]],
                      activity: dict[str, np.ndarray]) -> Path:
    activity_figure(activity["time"], activity["rates"], activity["outputs"],
                    activity.get("targets"), activity.get("mask"), out / "activity.png")
    return html.page(title, [("Run", html.table(summary, ("quantity", "value"))),
                             ("Activity", html.figure("activity.png", "rates, outputs, PCA"))],
                     out / "report.html")


def training_figure(history: dict, w_before: np.ndarray, w_after: np.ndarray,
                    path: Path) -> Path:
    # a Figure object, not pyplot: writing a report never touches the global backend
    fig = Figure(figsize=(14, 3.6))
    axes = fig.subplots(1, 3)
    axes[0].semilogy(history["step"], history["train_loss"], lw=0.8, label="train")
    axes[0].semilogy(history["val_step"], history["val_loss"], "o-", ms=3, label="validation")
    axes[0].set(xlabel="step", ylabel="masked L2 loss", title="learning curves")
    axes[0].legend()
    axes[1].plot(history["val_step"], history["val_accuracy"], "o-", ms=3)
    axes[1].set(xlabel="step", ylabel="accuracy", ylim=(-0.02, 1.02), title="validation accuracy")
    for w, label in ((w_before, "before"), (w_after, "after")):
        lam = eigen_spectrum(w)
        axes[2].plot(lam.real, lam.imag, ".", ms=3, label=label)
    axes[2].set(xlabel="Re λ", ylabel="Im λ", title="eigenvalues of W_rec")
    axes[2].set_aspect("equal")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def training_report(out: Path, title: str, metrics: dict, history: dict,
                    w_before: np.ndarray, w_after: np.ndarray) -> Path:
    training_figure(history, w_before, w_after, out / "training.png")
    rows = [(k, v) for k, v in metrics.items() if not isinstance(v, dict | list)]
    return html.page(title, [("Metrics", html.table(rows, ("metric", "value"))),
                             ("Training", html.figure("training.png",
                                                      "loss, accuracy, W_rec spectrum"))],
                     out / "report.html")
