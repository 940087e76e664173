"""Figures and the page of ``neurorec evaluate``: KS plots with their 95 % band, the rescaled
intervals' autocorrelation, filters with ±2 s.e. bands (matplotlib Figure objects, no pyplot).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from neurorec.analysis.goodness_of_fit import UnitRescaling
from neurorec.report import html


def _grid(n: int, extra: int = 1) -> tuple[int, int]:
    cols = min(6, n + extra)
    return int(np.ceil((n + extra) / cols)), cols


def _adjust(fig: Figure, hspace: float, wspace: float) -> None:
    """Margins fixed in inches (top 0.35, bottom 0.55, left 0.6), so that a tall grid of
    many units has no band of white space above it."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(top=1 - 0.35 / height, bottom=0.55 / height, left=0.6 / width,
                        right=1 - 0.15 / width, hspace=hspace, wspace=wspace)


def ks_figure(results: list[UnitRescaling], unit_ids: list[str], path: Path) -> Path:
    """One KS plot per unit (model quantiles ``(k - ½)/n`` against the sorted rescaled
    intervals, the diagonal and the 95 % band ``± 1.36/√n``; red title: outside the band)
    and a summary panel (each unit's KS statistic over its band half-width; > 1 fails)."""
    n = len(results)
    rows, cols = _grid(n)
    fig = Figure(figsize=(2.0 * cols, 2.0 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, uid, res in zip(axes, unit_ids, results, strict=False):
        m = res.n_intervals
        ax.plot([0, 1], [0, 1], color="0.3", lw=0.8)
        if m:
            q = (np.arange(1, m + 1) - 0.5) / m
            ax.plot(q, np.sort(res.z), color="C0", lw=1.0)
            ax.plot(q, q + res.band, "--", color="C3", lw=0.7)
            ax.plot(q, q - res.band, "--", color="C3", lw=0.7)
        colour = "C3" if res.inside is False else "k"
        ax.set_title(f"{uid}: D={res.statistic:.3f} (n={m})", fontsize=7, color=colour)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=6)
    summary = axes[n]
    ratio = np.array([r.statistic / r.band if r.n_intervals else np.nan for r in results])
    summary.bar(np.arange(n), ratio, color=["C3" if r.inside is False else "C0"
                                            for r in results])
    summary.axhline(1.0, color="C3", lw=0.8, ls="--")
    summary.set_title("D / band (> 1: outside)", fontsize=7)
    summary.tick_params(labelsize=6)
    for ax in axes[n + 1:]:
        ax.set_visible(False)
    fig.supxlabel("model quantile", fontsize=8)
    fig.supylabel("rescaled interval quantile", fontsize=8)
    _adjust(fig, hspace=0.55, wspace=0.35)
    fig.savefig(path, dpi=90)
    return path


def acf_figure(results: list[UnitRescaling], unit_ids: list[str], path: Path) -> Path:
    """Autocorrelation of the Gaussianised rescaled intervals at lags 1..L per unit, with the
    95 % band ``± 1.96/√n``."""
    n = len(results)
    rows, cols = _grid(n, 0)
    fig = Figure(figsize=(2.0 * cols, 1.6 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, uid, res in zip(axes, unit_ids, results, strict=False):
        lags = np.arange(1, len(res.acf) + 1)
        ax.axhline(0, color="0.5", lw=0.5)
        ax.vlines(lags, 0, np.nan_to_num(res.acf), color="C0")
        if np.isfinite(res.acf_band):
            ax.axhline(res.acf_band, color="C3", ls="--", lw=0.7)
            ax.axhline(-res.acf_band, color="C3", ls="--", lw=0.7)
        ax.set_title(str(uid), fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.supxlabel("lag (intervals)", fontsize=8)
    _adjust(fig, hspace=0.55, wspace=0.35)
    fig.savefig(path, dpi=90)
    return path


def filter_band_figure(filters: np.ndarray, se: np.ndarray, bin_size: float,
                       unit_ids: list[str], path: Path, label: str = "history") -> Path:
    """Each unit's filter (log-gain per past spike against lag) with its ±2 s.e. band.

    Args:
        filters, se: (n_units, n_lags) filter and its standard error per lag.
    """
    n = filters.shape[0]
    rows, cols = _grid(n, 0)
    fig = Figure(figsize=(2.0 * cols, 1.6 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    lag_ms = (np.arange(filters.shape[1]) + 1) * bin_size * 1e3
    for u, ax in enumerate(axes[:n]):
        ax.axhline(0, color="0.5", lw=0.5)
        ax.fill_between(lag_ms, filters[u] - 2 * se[u], filters[u] + 2 * se[u],
                        color="C0", alpha=0.25, lw=0)
        ax.plot(lag_ms, filters[u], color="C0", lw=1)
        ax.set_title(str(unit_ids[u]), fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.supxlabel(f"lag (ms): {label} filter ± 2 s.e.", fontsize=8)
    _adjust(fig, hspace=0.55, wspace=0.35)
    fig.savefig(path, dpi=90)
    return path


def coupling_band_figure(filters: np.ndarray, se: np.ndarray, bin_size: float,
                         unit_ids: list[str], path: Path, n_show: int = 12) -> list[tuple]:
    """The ``n_show`` coupling filters farthest from zero in standard errors (largest
    ``max_l |f_l| / s.e._l``), each with its ±2 s.e. band, and a summary panel: that z-score
    for every (post, pre) pair.

    Args:
        filters, se: (n_units post, n_units pre, n_lags).
    Returns:
        the pairs drawn: [(post id, pre id, z)], strongest first.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.abs(filters) / se
    z = np.where(np.isfinite(ratio), ratio, -np.inf).max(axis=2, initial=-np.inf)
    z = np.where(np.isfinite(z), z, np.nan)  # pairs without a fitted filter (the diagonal)
    order = [p for p in np.argsort(-np.nan_to_num(z, nan=-1.0), axis=None)
             if np.isfinite(z.flat[p])][:n_show]
    pairs = [np.unravel_index(p, z.shape) for p in order]
    rows, cols = _grid(len(pairs))
    fig = Figure(figsize=(2.0 * cols, 1.6 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    lag_ms = (np.arange(filters.shape[2]) + 1) * bin_size * 1e3
    for ax, (i, j) in zip(axes, pairs, strict=False):
        ax.axhline(0, color="0.5", lw=0.5)
        ax.fill_between(lag_ms, filters[i, j] - 2 * se[i, j], filters[i, j] + 2 * se[i, j],
                        color="C0", alpha=0.25, lw=0)
        ax.plot(lag_ms, filters[i, j], color="C0", lw=1)
        ax.set_title(f"{unit_ids[j]} → {unit_ids[i]} (z={z[i, j]:.1f})", fontsize=7)
        ax.tick_params(labelsize=6)
    summary = axes[len(pairs)]
    im = summary.imshow(z, cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=summary, fraction=0.046)
    summary.set_title("max |filter| / s.e. (post × pre)", fontsize=7)
    summary.tick_params(labelsize=6)
    for ax in axes[len(pairs) + 1:]:
        ax.set_visible(False)
    fig.supxlabel("lag (ms): coupling filter ± 2 s.e.", fontsize=8)
    _adjust(fig, hspace=0.6, wspace=0.4)
    fig.savefig(path, dpi=90)
    return [(str(unit_ids[i]), str(unit_ids[j]), float(z[i, j])) for i, j in pairs]


def _fmt(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    return "—" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def goodness_of_fit_sections(m: dict, results: list[UnitRescaling], filters: dict | None,
                             out: Path, acf: bool = True) -> list[tuple[str, str]]:
    """The report sections of the evaluation (``neurorec evaluate`` and ``neurorec fit``):
    the units outside the 95 % KS band, the KS plots (one panel per unit and a summary
    panel), the rescaled intervals' autocorrelation, the per-unit KS table, and each fitted
    filter with its ±2 s.e. band; the figures are written into ``out``.

    Args:
        m: the evaluation's metrics (``ks``, ``ks_failing_units``, ``unit_ids``, ...).
        results: per-unit rescaling (:func:`neurorec.analysis.goodness_of_fit.time_rescaling`).
        filters: {``history`` | ``coupling``: (filters, s.e., bin size s)} or None.
        acf: draw the rescaled intervals' autocorrelation (``neurorec fit`` does not: its
            numbers are in ``metrics.json``, the figure in ``neurorec evaluate``'s report).
    """
    unit_ids = m["unit_ids"]
    failing = m.get("ks_failing_units", [])
    sections = []
    if "ks_n_units_tested" in m:
        sections.append(("Units outside the 95 % KS band",
                         f"<p>{len(failing)} of {m.get('ks_n_units_tested', 0)} tested units "
                         f"(fraction inside {_fmt(m.get('ks_fraction_in_band'))}): "
                         f"{', '.join(failing) if failing else 'none'}.</p>"))
    if results:
        ks_figure(results, unit_ids, out / "ks.png")
        sections.append(("KS plots", html.figure("ks.png", "Time rescaling (discrete-time "
                         "correction, Haslinger, Pipa &amp; Brown 2010): rescaled intervals "
                         "against Uniform(0, 1) per unit with the 95 % band (dashed); red: "
                         "outside. Last panel: KS statistic / band half-width per unit.")))
        if acf:
            acf_figure(results, unit_ids, out / "rescaled_acf.png")
            sections.append(("Rescaled-interval autocorrelation", html.figure(
                "rescaled_acf.png", "Autocorrelation of Φ⁻¹(z) at lags 1–10 with the 95 % "
                                    "band.")))
        ks_rows = [(k["unit_id"], _fmt(k["statistic"]), _fmt(k["band"]),
                    {True: "yes", False: "NO", None: "too few"}[k["inside"]], k["n_intervals"])
                   for k in m["ks"]]
        sections.append(("KS per unit", html.table(ks_rows, ("unit", "KS statistic",
                                                             "band half-width", "inside",
                                                             "intervals"))))
    for name, (filt, se, bin_size) in (filters or {}).items():
        if name == "coupling":
            shown = coupling_band_figure(filt, se, bin_size, unit_ids, out / "coupling_se.png")
            sections.append(("coupling filters ± 2 s.e.", html.figure(
                "coupling_se.png", f"The {len(shown)} coupling filters farthest from zero in "
                "standard errors (pre → post) with ±2 s.e. from the observed Fisher "
                "information; last panel: max |filter| / s.e. for every pair.")))
            continue
        filter_band_figure(filt, se, bin_size, unit_ids, out / f"{name}_se.png", name)
        sections.append((f"{name} filters ± 2 s.e.", html.figure(
            f"{name}_se.png", f"Fitted {name} filters with ±2 standard errors from the "
                              "observed Fisher information.")))
    return sections


def evaluation_report(m: dict, results: list[UnitRescaling], filters: dict | None,
                      out: Path) -> Path:
    """``out/report.html`` with the scores, the failing units and the figures."""
    rows = [(k, _fmt(m.get(k))) for k in
            ("bits_per_spike", "co_bps", "fp_bps", "psth_r2", "behaviour_r2",
             "ks_fraction_in_band", "rescaled_autocorrelation_fraction_in_band") if k in m]
    rows += [("evaluated on", m.get("evaluated_on", "")), ("data", m.get("data", "")),
             ("spikes / bins / units", f"{m['n_spikes']} / {m['n_bins']} / {m['n_neurons']}")]
    sections = [("Scores", html.table(rows, ("quantity", "value")) +
                 "<p class='small'>bits/spike, co-bps, fp-bps and PSTH R² as the Neural "
                 "Latents Benchmark defines them; KS: time rescaling with the discrete-time "
                 "correction (Haslinger, Pipa &amp; Brown 2010).</p>"),
                *goodness_of_fit_sections(m, results, filters, out)]
    return html.page(f"neurorec evaluate: {m.get('model', '')} ({m.get('kind', '')})",
                     sections, out / "report.html")
