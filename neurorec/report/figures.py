"""Figures of a fitted model against held-out data (matplotlib, no screen needed).

Figures are :class:`matplotlib.figure.Figure` objects written with ``fig.savefig`` (Agg for
PNG): no pyplot, so importing or calling this module leaves matplotlib's global backend and
pyplot's figure list alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def _subplots(*grid: int, figsize: tuple[float, float], **kwargs):
    """``(fig, axes)`` like ``pyplot.subplots``, on a figure no pyplot state knows about."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, **kwargs)


def _condition_label(table: pd.DataFrame, c: int) -> str:
    row = table.iloc[c]
    return ", ".join(f"{v:g}" if isinstance(v, float | int | np.number) else str(v)
                     for v in row.to_numpy())


def psth_figure(counts: np.ndarray, rates: np.ndarray, condition: np.ndarray,
                table: pd.DataFrame, time_s: np.ndarray, bin_size: float, unit_ids: np.ndarray,
                units: np.ndarray, path: Path, max_conditions: int = 16,
                smooth_s: float = 0.05) -> Path:
    """Trial-averaged firing rate (Hz) of data vs model per condition, for ``units``.

    Args:
        counts, rates: (n_trials, n_bins, n_units) observed and predicted counts per bin.
        condition: (n_trials,) condition index; ``table`` names the conditions.
    """
    conds = [c for c in range(len(table)) if (condition == c).any()][:max_conditions]
    # data are smoothed for display only (boxcar of ~smooth_s); the model is drawn as predicted
    width = max(1, round(smooth_s / bin_size))
    kernel = np.ones(width) / width
    fig, axes = _subplots(len(units), len(conds), figsize=(1.6 * len(conds) + 1,
                             1.4 * len(units) + 0.8), sharex=True, squeeze=False)
    for r, u in enumerate(units):
        top = max(max(np.convolve(counts[condition == c, :, u].mean(0), kernel, "same").max(),
                      rates[condition == c, :, u].mean(0).max()) for c in conds) / bin_size
        for col, c in enumerate(conds):
            ax = axes[r, col]
            sel = condition == c
            data_hz = np.convolve(counts[sel, :, u].mean(0) / bin_size, kernel, mode="same")
            ax.plot(time_s, data_hz, color="0.6", lw=1, label="data")
            ax.plot(time_s, rates[sel, :, u].mean(0) / bin_size, color="C3", lw=1.2, label="model")
            ax.set_ylim(0, 1.1 * top + 1e-9)
            ax.tick_params(labelsize=6)
            if r == 0:
                ax.set_title(_condition_label(table, c), fontsize=7)
            if col == 0:
                ax.set_ylabel(f"{unit_ids[u]}\nHz", fontsize=7)
            else:
                ax.set_yticklabels([])
    axes[0, 0].legend(fontsize=6, frameon=False)
    fig.supxlabel("time from trial start (s)", fontsize=8)
    fig.suptitle(f"Held-out PSTH per condition ({', '.join(table.columns)}): data "
                 f"({smooth_s * 1e3:g} ms boxcar) vs model",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def filters_figure(stimulus_drive: np.ndarray | None, history: np.ndarray | None,
                   coupling: np.ndarray | None, bin_size: float, path: Path) -> Path:
    """Stimulus drive (unit × condition), history gains and coupling strengths."""
    panels = [p for p in (stimulus_drive, history, coupling) if p is not None]
    fig, axes = _subplots(1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 3.6),
                             squeeze=False)
    axes = list(axes[0])
    if stimulus_drive is not None:
        ax = axes.pop(0)
        im = ax.imshow(stimulus_drive.mean(axis=2), aspect="auto", cmap="viridis")
        ax.set(xlabel="condition", ylabel="unit", title="mean stimulus drive (log rate)")
        fig.colorbar(im, ax=ax, fraction=0.046)
    if history is not None:
        ax = axes.pop(0)
        lags = np.arange(1, history.shape[1] + 1) * bin_size * 1e3
        ax.plot(lags, np.exp(history).T, lw=0.8)
        ax.axhline(1, color="k", lw=0.5, ls=":")
        ax.set(xlabel="lag (ms)", ylabel="gain per past spike", title="spike-history filters")
    if coupling is not None:
        ax = axes.pop(0)
        strength = coupling.sum(axis=2)
        lim = np.abs(strength).max() or 1.0
        im = ax.imshow(strength, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set(xlabel="presynaptic unit", ylabel="postsynaptic unit",
               title="coupling (summed over lags)")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def eigenvalue_figure(eigenvalues: np.ndarray, tau_s: np.ndarray, path: Path) -> Path:
    """Eigenvalues of ``R`` in the complex plane and their time constants (ms)."""
    fig, (ax, bx) = _subplots(1, 2, figsize=(8, 3.6))
    theta = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(theta), np.sin(theta), color="0.7", lw=0.8)
    ax.scatter(eigenvalues.real, eigenvalues.imag, s=18, color="C0")
    ax.set(aspect="equal", xlabel="Re λ", ylabel="Im λ", title="eigenvalues of R")
    finite = np.where(np.isfinite(tau_s), tau_s * 1e3, np.nan)
    bx.bar(np.arange(len(tau_s)), finite, color="C0")
    bx.set(xlabel="mode (by |λ|)", ylabel="time constant (ms)", title="latent time constants")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def bits_per_spike_figure(per_neuron: np.ndarray, unit_ids: np.ndarray, path: Path) -> Path:
    """Held-out bits/spike of every unit."""
    fig, ax = _subplots(figsize=(max(4, 0.22 * len(per_neuron) + 1), 3))
    ax.bar(np.arange(len(per_neuron)), np.nan_to_num(per_neuron), color="C2")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xticks(np.arange(len(per_neuron)), [str(u) for u in unit_ids], rotation=90, fontsize=6)
    ax.set(ylabel="bits/spike (held out)", title="per-unit held-out bits/spike")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def training_curve_figure(history: list[dict], path: Path, optimizer: str = "L-BFGS") -> Path:
    """Objective and held-out NLL over the optimiser's iterations."""
    fig, ax = _subplots(figsize=(4.5, 3))
    it = [h["iter"] for h in history]
    ax.plot(it, [h["objective"] for h in history], label="training objective")
    ax.set(xlabel=f"{optimizer} iteration", ylabel="objective", title="convergence")
    # a Newton-CG polish entry has no held-back NLL: plot the checks that have one
    checks = [(h["iter"], h["validation_nll"]) for h in history if "validation_nll" in h]
    if checks:
        bx = ax.twinx()
        bx.plot(*zip(*checks, strict=True), color="C1", label="held-back NLL")
        bx.set_ylabel("held-back NLL (nats)")
        bx.legend(loc="upper center", fontsize=7, frameon=False)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def structure_figure(data: np.ndarray, data_condition: np.ndarray,
                     samples: dict[str, tuple[np.ndarray, np.ndarray]], path: Path,
                     max_lag: int = 10, bin_size_s: float = 0.01) -> Path:
    """Samples vs held-out data: noise correlations, a cross-correlogram, population PSTH.

    Args:
        data: (n_trials, n_bins, n_units) held-out counts; ``data_condition`` (n_trials,).
        samples: model name → (counts (n, n_bins, n_units), condition (n,)) sampled from it.
        path: PNG to write.
    """
    from neurorec.analysis.statistics import cross_correlogram, noise_correlations, offdiag, psth

    nc_data = noise_correlations(data, data_condition)
    iu = np.triu_indices(data.shape[2], k=1)
    pair = np.nanargmax(np.abs(np.where(np.isfinite(nc_data[iu]), nc_data[iu], 0)))
    i, j = int(iu[0][pair]), int(iu[1][pair])
    lags = np.arange(-max_lag, max_lag + 1) * bin_size_s * 1e3
    n_cond = int(max([data_condition.max(), *[c.max() for _, c in samples.values()]])) + 1
    t = (np.arange(data.shape[1]) + 0.5) * bin_size_s
    fig, axes = _subplots(1, 3, figsize=(13, 3.8))
    axes[1].plot(lags, cross_correlogram(data, data_condition, i, j, max_lag), "k-", lw=2,
                 label="data")
    axes[2].plot(t, np.nanmean(psth(data, data_condition, n_cond), axis=(0, 2)) / bin_size_s,
                 "k-", lw=2, label="data")
    for k, (name, (counts, cond)) in enumerate(samples.items()):
        nc_model = noise_correlations(counts, cond)
        ok = np.isfinite(nc_data[iu]) & np.isfinite(nc_model[iu])
        r = np.corrcoef(nc_data[iu][ok], nc_model[iu][ok])[0, 1] if ok.sum() > 2 else np.nan
        axes[0].scatter(nc_data[iu], nc_model[iu], s=10, color=f"C{k}", label=f"{name} r={r:.2f}")
        axes[1].plot(lags, cross_correlogram(counts, cond, i, j, max_lag), color=f"C{k}",
                     label=name)
        axes[2].plot(t, np.nanmean(psth(counts, cond, n_cond), axis=(0, 2)) / bin_size_s,
                     color=f"C{k}", label=name)
    lim = np.nanmax(np.abs(offdiag(nc_data))) * 1.1
    axes[0].plot([-lim, lim], [-lim, lim], color="0.6", lw=0.8)
    axes[0].set(xlabel="data noise correlation", ylabel="model noise correlation",
                title="pairwise count correlations")
    axes[1].set(xlabel="lag (ms)", ylabel="covariance (PSTH removed)",
                title=f"cross-correlogram, units {i} & {j}")
    axes[2].set(xlabel="time in trial (s)", ylabel="mean rate (Hz)",
                title="population PSTH (all conditions)")
    for ax in axes:
        ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def cv_curve_figure(cv: dict, path: Path) -> Path:
    """Mean held-out log-likelihood (± SEM over folds) against the penalty strength, one
    line per L1 strength; the chosen point circled."""
    grid = cv["grid"]
    folds = np.asarray(cv["fold_heldout_ll"], dtype=float)
    mean = folds.mean(axis=1)
    sem = folds.std(axis=1, ddof=1) / np.sqrt(folds.shape[1]) if folds.shape[1] > 1 else 0 * mean
    fig, ax = _subplots(figsize=(4.5, 3))
    l2 = np.array([g["l2"] for g in grid])
    floor = l2[l2 > 0].min() / 10 if (l2 > 0).any() else 1e-8
    x = np.where(l2 > 0, l2, floor)  # l2 = 0 drawn one decade below the smallest strength
    for l1 in sorted({g.get("l1", 0.0) for g in grid}):
        sel = np.array([g.get("l1", 0.0) == l1 for g in grid])
        ax.errorbar(x[sel], mean[sel], yerr=sem[sel] if np.ndim(sem) else None, marker="o",
                    ms=3, capsize=2, label=f"l1 = {l1:g}")
    best = next(i for i, g in enumerate(grid) if g == cv["chosen"])
    ax.plot(x[best], mean[best], "o", mfc="none", mec="k", ms=10)
    ax.set(xscale="log", xlabel="penalty.l2 (0 at the left end)",
           ylabel="held-out LL (nats, mean over folds)", title="cross-validation")
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
