"""Write ``RESULTS.md`` of the ct-RNN study from a run's folder (``results.csv``,
``metrics.json``, ``theta_sweep.csv``): what ran, per-task numbers with 95 % bootstrap CIs
over networks, and the table "study claim | study value | ours | same settings? | verdict".

    python analyses/ctrnn_tasks/results_md.py DIR --md analyses/ctrnn_tasks/RESULTS.md

``run.py --results-md PATH`` calls it at the end of a run. The study's own numbers are not
in our sources (issue 5 names its analyses and settings, not its values): a row compares with
a study *value* only where one is known (the flip-flop's 8 stable fixed points); otherwise the
verdict says what our measurement shows, with its uncertainty, against a stated reference
(chance level, untrained network, zero change).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats

from neurorec.analysis.statistics import bootstrap_ci

TASKS = ("perception", "decision")
STUDY_UNITS = {"perception": 128, "decision": 256}
UNLOADED_S = {"perception": 75, "decision": 220}  # 2000 steps on one idle core (README)


def boot_ci(values, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the mean of ``values`` and its 95 % percentile bootstrap CI over
    networks (NaNs dropped; CI NaN with fewer than 2 values)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if not len(x):
        return (float("nan"),) * 3
    return (float(x.mean()), *bootstrap_ci(x, n_boot, np.random.default_rng(seed)))


def fmt(values, digits: int = 2, unit: str = "") -> str:
    """``mean [low, high] (n)`` of per-network values."""
    m, lo, hi = boot_ci(values)
    n = int(np.isfinite(np.asarray(values, dtype=float)).sum())
    if not np.isfinite(m):
        return "—"
    if not np.isfinite(lo):
        return f"{m:.{digits}f}{unit} (n = {n})"
    return f"{m:.{digits}f}{unit} [{lo:.{digits}f}, {hi:.{digits}f}] (n = {n})"


def paired_p(a, b) -> float:
    """Two-sided Wilcoxon signed-rank p of paired per-network values (NaN for n < 5)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 5 or np.allclose(a[ok], b[ok]):
        return float("nan")
    return float(scipy.stats.wilcoxon(a[ok], b[ok]).pvalue)


def one_sample_p(a, ref: float) -> float:
    a = np.asarray(a, dtype=float)
    return paired_p(a, np.full_like(a, ref))


def pstr(p: float) -> str:
    return "p n/a (n < 5)" if not np.isfinite(p) else f"Wilcoxon p = {p:.2g}"


def settings_note(task: str, g: pd.DataFrame, n_steps: int) -> str:
    n = int(g["n_units"].iloc[0]) if len(g) else 0
    ok = n == STUDY_UNITS[task] and n_steps == 2000 and len(g) == 10
    why = [] if ok else [s for s, bad in ((f"N = {n}", n != STUDY_UNITS[task]),
                                          (f"{len(g)} of 10 networks", len(g) != 10),
                                          (f"{n_steps} steps", n_steps != 2000)) if bad]
    return "yes" if ok else "no: " + ", ".join(why)


def claim_rows(table: pd.DataFrame, metrics: dict, sweep: pd.DataFrame | None) -> list[list]:
    rows = []
    n_steps = metrics.get("n_steps", 0)
    for task in TASKS:
        g = table[table["task"] == task]
        if not len(g):
            rows.append([f"{task}: every claim", "—", "no network of this task finished",
                         "—", "not measured"])
            continue
        same = settings_note(task, g, n_steps)
        acc = g["test_accuracy"]
        rows.append([f"{task}: learned by training W_rec alone (N = {STUDY_UNITS[task]})",
                     "task performed (no number in our sources)",
                     f"test accuracy {fmt(acc, 3)}; untrained {fmt(g['untrained_accuracy'], 3)}",
                     same, "holds" if acc.mean() >= 0.9 else "differs: accuracy < 0.9"])
        rows.append([f"{task}: ΔW is low-rank (singular values)", "low rank (figure)",
                     f"90 % of ‖ΔW‖² in {fmt(g['delta_w_rank90'], 1)} of N singular values; "
                     f"top one {fmt(g['delta_w_sv1_frac'])}; participation ratio "
                     f"{fmt(g['delta_w_pr'], 1)}", same,
                     "holds" if g["delta_w_rank90"].mean() < 0.1 * g["n_units"].iloc[0]
                     else "differs: rank90 ≥ 10 % of N"])
        p = paired_p(g["radius_after"], g["radius_before"])
        rows.append([f"{task}: eigenvalue spectrum of W_rec changes in training",
                     "spectra before/after (figure)",
                     f"spectral radius {fmt(g['radius_before'])} → {fmt(g['radius_after'])} "
                     f"({pstr(p)})", same, _verdict_change(p, "radius grows"
                                                           if g["radius_after"].mean()
                                                           > g["radius_before"].mean()
                                                           else "radius shrinks", len(g))])
        p = paired_p(g["non_normality_after"], g["non_normality_before"])
        rows.append([f"{task}: non-normality (strict upper Schur norm) before/after",
                     "reported before/after (no number in our sources)",
                     f"{fmt(g['non_normality_before'])} → {fmt(g['non_normality_after'])} "
                     f"({pstr(p)})", same, _verdict_change(p, "more non-normal", len(g))])
        p = one_sample_p(g["mean_weight_drift"], 0.0)
        rows.append([f"{task}: mean weight changes", "mean-weight drift (no number)",
                     f"mean W_rec {fmt(g['mean_w_before'], 4)} → {fmt(g['mean_w_after'], 4)}; "
                     f"drift {fmt(g['mean_weight_drift'], 4)} ({pstr(p)} vs 0)", same,
                     _verdict_change(p, "drift ≠ 0", len(g))])
        p = one_sample_p(g["centrality_spearman"], 1.0)
        rows.append([f"{task}: node centrality changes", "centrality before/after (no number)",
                     f"eigenvector-centrality Spearman ρ before/after "
                     f"{fmt(g['centrality_spearman'])}; top-10 % hubs kept "
                     f"{fmt(g['centrality_top10_kept'])} (chance 0.10)", same,
                     "holds: centrality reshuffled (ρ < 1)" if g["centrality_spearman"].mean()
                     < 0.9 else "differs: centrality barely changes"])
        rows += _fixed_point_rows(task, g, same)
        rows += _angle_rows(task, g, metrics, same)
        p = paired_p(g["pi_trained"], g["pi_untrained"])
        down = int((g["pi_trained"] < g["pi_untrained"]).sum())
        rows.append([f"{task}: predictive information (DCA d = 3, T = 5) untrained vs trained",
                     "compared in the study (no number in our sources)",
                     f"{fmt(g['pi_untrained'])} → {fmt(g['pi_trained'])} nats; {down} of "
                     f"{len(g)} down ({pstr(p)})", same,
                     _verdict_change(p, "PI falls" if down > len(g) / 2 else "PI rises",
                                     len(g))])
        rows.append(_theta_row(task, sweep, n_steps))
    ff = metrics.get("flipflop_stable_fixed_points")
    rows.append(["3-bit flip-flop: 8 stable fixed points, one per output pattern "
                 "(FixedPointFinder's example)", "8 stable, saddles between",
                 "—" if ff is None else
                 f"{ff} stable ({metrics.get('flipflop_distinct_output_patterns')} output "
                 f"patterns), {metrics.get('flipflop_saddles')} saddles, val. accuracy "
                 f"{metrics.get('flipflop_val_accuracy', float('nan')):.4f}",
                 "yes, 1500 steps (FixedPointFinder's example: other size and training)"
                 if metrics.get("flipflop_steps") == 1500 else
                 f"no: {metrics.get('flipflop_steps')} training steps (ours: 1500)",
                 "not measured" if ff is None else ("holds" if ff == 8 else "differs")])
    return rows


def _verdict_change(p: float, what: str, n: int | None = None) -> str:
    if not np.isfinite(p):
        return f"direction: {what}; too few networks for a test"
    if p < 0.05:
        return f"holds: {what} (p = {p:.2g})"
    if n is not None and p <= 2.0 / 2 ** n + 1e-9:  # every network changed the same way
        return (f"{what} in all {n} networks (p = {p:.2g}, the smallest a Wilcoxon test "
                f"gives at n = {n}: more networks needed for p < 0.05)")
    return f"no significant change (p = {p:.2g})"


def _fixed_point_rows(task: str, g: pd.DataFrame, same: str) -> list[list]:
    conds = sorted({c.split("_")[1] for c in g.columns
                    if c.startswith("fp_") and c.endswith("_stable") and g[c].notna().any()})
    if not conds:
        return [[f"{task}: fixed and slow points per condition (figs. 2–3)", "figure",
                 "not measured in this run", same, "not measured"]]
    parts, one_stable = [], []
    for c in conds:
        st = g[f"fp_{c}_stable"]
        parts.append(f"{c}: stable {fmt(st, 1)}, saddle {fmt(g[f'fp_{c}_saddle'], 1)}, "
                     f"unstable {fmt(g[f'fp_{c}_unstable'], 1)}, slow {fmt(g[f'fp_{c}_slow'], 1)}"
                     f"; stable readout correct {fmt(g[f'fp_{c}_stable_readout_ok'])}; "
                     f"largest stable modulus {fmt(g[f'fp_{c}_stable_max_modulus'], 3)}")
        one_stable.append(int(((st == 1) & (g[f"fp_{c}_stable_readout_ok"] == 1)).sum()))
    n = len(g)
    verdict = ("holds: one stable fixed point per condition, read out as that condition's "
               f"answer, in {min(one_stable)}–{max(one_stable)} of {n} networks"
               if min(one_stable) >= n / 2 else
               "differs: one stable fixed point read out as the answer in only "
               f"{min(one_stable)}–{max(one_stable)} of {n} networks per condition")
    return [[f"{task}: trajectories converge to fixed/slow points per condition, in PCA and "
             "DCA space (figs. 2–3)", "figure (no counts in our sources)",
             "; ".join(parts) + f" (figure latent_{task}.png)", same, verdict]]


def _angle_rows(task: str, g: pd.DataFrame, metrics: dict, same: str) -> list[list]:
    chance_r = metrics.get(f"{task}.angle_chance_readout_deg.median", float("nan"))
    chance_s = metrics.get(f"{task}.angle_chance_subspaces_deg.median", float("nan"))
    chance_s5 = metrics.get(f"{task}.angle_chance_subspaces_deg.p05", float("nan"))
    rows = []
    for space, pre, post in (("PCA", "angle_readout_untrained_deg", "angle_readout_deg"),
                             ("DCA", "angle_readout_dca_untrained_deg",
                              "angle_readout_dca_deg")):
        if post not in g:
            continue
        p = paired_p(g[post], g[pre])
        rows.append([f"{task}: angle latent ({space}, d = 3) to the readout, untrained vs "
                     "trained", "subspace angles (no number in our sources)",
                     f"{fmt(g[pre], 1, '°')} → {fmt(g[post], 1, '°')} ({pstr(p)}); chance "
                     f"(random 3-dim space) median {chance_r:.1f}°", same,
                     _verdict_change(p, "latent turns towards the readout"
                                     if g[post].mean() < g[pre].mean()
                                     else "latent turns away from the readout",
                                     len(g))])
    cols = [("PCA pre vs post", "angle_pre_post_deg"),
            ("DCA pre vs post", "angle_pre_post_dca_deg"),
            ("PCA vs DCA, untrained", "angle_pca_dca_untrained_deg"),
            ("PCA vs DCA, trained", "angle_pca_dca_deg"),
            ("between the two extreme conditions (PCA)", "angle_conditions_deg")]
    have = [(name, c) for name, c in cols if c in g]
    if have:
        rows.append([f"{task}: subspace angles (smallest principal angle, d = 3)",
                     "subspace angles (no number in our sources)",
                     "; ".join(f"{name} {fmt(g[c], 1, '°')}" for name, c in have)
                     + f"; chance (two random 3-dim spaces) median {chance_s:.1f}°, 5th "
                       f"percentile {chance_s5:.1f}°", same,
                     "measured: every angle far below chance — the spaces share directions"
                     if all(g[c].mean() < chance_s5 for _, c in have) else
                     "measured (see values vs chance)"])
    return rows


def _theta_row(task: str, sweep: pd.DataFrame | None, n_steps: int) -> list:
    name = f"{task}: PI vs leaky-ReLU angle θ, trained vs untrained (fig. 6)"
    if sweep is None or "task" not in sweep or not (sweep["task"] == task).any():
        return [name, "figure", "not measured in this run", "—", "not measured"]
    s = sweep[sweep["task"] == task]
    g = s.groupby("theta_deg")
    cells = [f"θ = {th:g}°: {v['pi_untrained'].mean():.2f} → {v['pi_trained'].mean():.2f} "
             f"nats, acc. {v['accuracy'].mean():.2f} (n = {len(v)})" for th, v in g]
    rho_t = (scipy.stats.spearmanr(s["theta_deg"], s["pi_trained"])
             if s["theta_deg"].nunique() > 1 else None)
    n_theta = s["theta_deg"].nunique()
    rho_u = scipy.stats.spearmanr(s["theta_deg"], s["pi_untrained"]) if n_theta > 1 else rho_t
    verdict = "not enough angles" if n_theta < 3 else (
        f"trained PI vs θ: Spearman ρ = {rho_t.statistic:.2f} (p = {rho_t.pvalue:.2g}); "
        f"untrained ρ = {rho_u.statistic:.2f} (p = {rho_u.pvalue:.2g})")
    lo, hi = g.size().min(), g.size().max()
    same = (f"N = {int(s['n_units'].iloc[0])}, {n_steps} steps, "
            f"{lo if lo == hi else f'{lo}–{hi}'} networks per θ (study: not stated)")
    return [name, "figure (no number in our sources)", "; ".join(cells), same, verdict]


def write_results(out: Path, md: Path, command: str) -> Path:
    """Write ``md`` from the run folder ``out``; returns ``md``."""
    table = pd.read_csv(out / "results.csv") if (out / "results.csv").stat().st_size > 1 \
        else pd.DataFrame(columns=["task"])
    metrics = json.loads((out / "metrics.json").read_text())
    sweep = pd.read_csv(out / "theta_sweep.csv") if (out / "theta_sweep.csv").exists() else None
    lines = ["# Continuous-time RNN study (perception + decision)", "",
             "Written by `analyses/ctrnn_tasks/results_md.py` from the run folder "
             f"`{out.name}/`. Command:", "", f"    {command}", "",
             f"Settings: perception N = {metrics.get('n_units', {}).get('perception')}, "
             f"decision N = {metrics.get('n_units', {}).get('decision')} (the study's 128 / 256), "
             "τ = 100 ms, Δt = 10 ms, σ = 0.01, ReLU, zero diagonal, only W_rec trained, Adam "
             f"lr {metrics.get('learning_rate')}, {metrics.get('n_steps')} steps of batch 64. "
             f"Networks finished: {metrics.get('networks_completed')} of "
             f"{metrics.get('networks_per_task')} per task; θ sweep: "
             f"{metrics.get('theta_networks_completed')}. Wall time of this pass: "
             f"{metrics.get('wall_time_s', float('nan')) / 60:.1f} min"
             + (f" (trained weights reused from `{metrics['weights_from']}`)"
                if metrics.get("weights_from") else "") + ".", ""]
    not_done = metrics.get("jobs_not_completed")
    if not_done:
        lines += [f"Jobs not completed ({len(not_done)}): "
                  + ", ".join(str(j).split(": ")[0] for j in not_done)
                  + " (stopped by the time budget, or without trained weights under "
                    "--analyse-only)", ""]
    if len(table):
        cost = "; ".join(
            f"{t}: {g['train_s'].mean():.0f} s per network "
            f"({g['train_s'].mean() / UNLOADED_S[t]:.1f}× the {UNLOADED_S[t]} s of an idle core)"
            for t, g in table.groupby("task") if t in UNLOADED_S)
        lines += [f"Training time per network in this run: {cost} (README: ~37 / ~108 ms per "
                  "Adam step unloaded at N = 128 / 256).", ""]
    lines += ["Numbers are means over networks with 95 % bootstrap CIs (2000 resamples) and "
              "n; paired tests are two-sided Wilcoxon signed-rank over networks.", "",
              "## Claim by claim", "",
              "| study claim | study value | ours | same settings? | verdict |",
              "|---|---|---|---|---|"]
    for r in claim_rows(table, metrics, sweep):
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in r) + " |")
    lines += ["", "Figures (in the run folder): `latent_perception.png`, `latent_decision.png` "
              "(figs. 2–3: seed 0's trajectories in PCA and DCA space, fixed points per "
              "condition: o stable, X saddle, P unstable, dots slow points), `training.png` "
              "(curves, spectra), `pi_vs_theta.png` (fig. 6), `flipflop_fixed_points.png`.", ""]
    lines += _per_network(table)
    lines += ["## Earlier runs", "",
              "`cpu_run/` (2026-11-22, the same command before the decision networks used "
              "`ctrnn_study_256.yaml`): all 30 networks with the decision networks at N = 128, "
              "18.7 min with `--jobs 2` on an idle 2-core machine; `h100_run/`: 8 of 10 "
              "networks per task on a lent machine's CPUs (torch 2.11). "
              + _compare_earlier(table, Path(__file__).parent / "cpu_run" / "results.csv"), ""]
    md.write_text("\n".join(lines) + "\n")
    return md


def _compare_earlier(table: pd.DataFrame, earlier: Path) -> str:
    """How far this run's perception networks (same spec, seeds, torch) are from
    ``cpu_run/``'s: the largest relative difference over the shared numeric columns."""
    if not earlier.exists() or not len(table):
        return ""
    old = pd.read_csv(earlier)
    old, new = (t[t["task"] == "perception"].set_index("seed") for t in (old, table))
    seeds = old.index.intersection(new.index)
    cols = [c for c in old.columns.intersection(new.columns)
            if c not in ("task", "train_s") and pd.api.types.is_numeric_dtype(old[c])]
    if not len(seeds) or not cols:
        return ""
    a, b = old.loc[seeds, cols].to_numpy(float), new.loc[seeds, cols].to_numpy(float)
    rel = np.nanmax(np.abs(a - b) / np.maximum(np.abs(a), 1e-12))
    return (f"This run's perception networks against `cpu_run/`'s (seeds "
            f"{', '.join(map(str, seeds))}, {len(cols)} shared columns): largest relative "
            f"difference {rel:.1e}.")


def _per_network(table: pd.DataFrame) -> list[str]:
    """Per-network fixed-point counts (stable/saddle/unstable/slow per condition)."""
    if not len(table):
        return []
    out = ["## Fixed points per network (trained; per condition: stable/saddle/unstable/slow)",
           "", "| task | seed | N | test accuracy | conditions |", "|---|---:|---:|---:|---|"]
    for _, r in table.iterrows():
        conds = sorted({c.split("_")[1] for c in table.columns if c.startswith("fp_")
                        and c.endswith("_stable") and pd.notna(r[c])})
        cells = "; ".join(
            f"{c}: {int(r[f'fp_{c}_stable'])}/{int(r[f'fp_{c}_saddle'])}/"
            f"{int(r[f'fp_{c}_unstable'])}/{int(r[f'fp_{c}_slow'])}" for c in conds)
        out.append(f"| {r['task']} | {int(r['seed'])} | {int(r['n_units'])} | "
                   f"{r['test_accuracy']:.3f} | {cells or '—'} |")
    return [*out, ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a run.py output folder")
    ap.add_argument("--md", type=Path, required=True)
    ap.add_argument("--command", default="python analyses/ctrnn_tasks/run.py --out DIR "
                                          "--jobs 2")
    args = ap.parse_args()
    print(write_results(args.run, args.md, args.command))


if __name__ == "__main__":
    main()
