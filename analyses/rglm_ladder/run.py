"""The R-GLM model ladder on real populations (Pachitariu, Petreska & Sahani 2013, talk table).

    python analyses/rglm_ladder/run.py --out results/ladder [--v1-sessions 0-26] [--jobs 2]

Rungs (``models/ladder/*.yaml``): a Poisson linear dynamical system (PLDS, the baseline to
beat), fully independent Poisson, correlated Poisson, GLM, GLM + correlated Poisson, R-GLM +
correlated Poisson (nested in GLM + correlated Poisson). Datasets: every bundled V1
drifting-gratings session (units with contamination < 0.05, as the papers) and the locust
antennal-lobe population (odour and spontaneous trials; 50 ms bins, first 10 s of each trial).
Everything is scored on held-out trials only.

Writes ``table.csv`` (one row per dataset × rung), ``summary.md`` (rung × dataset group,
bits/spike mean ± s.e.m. over sessions), ``ordering.csv`` (held-out bits/spike of the
correlated rung under random unit orders), ``ladder.png``, ``structure_all.png`` (closed-loop
samples vs held-out data over all V1 sessions: noise correlations, cross-correlograms,
population PSTH; data vs PLDS vs GLM + corr vs R-GLM + corr), ``time_constants.png`` (latent
time constants of the R-GLM and the PLDS over sessions), ``RESULTS.md`` (tables, paired
comparisons with bootstrap CIs and sign-flip permutation p) and ``report.html``.
``--publish DIR`` copies table.csv, RESULTS.md and the figures into DIR (the committed copy:
``--publish analyses/rglm_ladder``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from neurorec.workflows import study
from neurorec.workflows.study import load_clean

sys.path.insert(0, str(Path(__file__).resolve().parent))
from headroom import headroom_markdown, run_headroom

ROOT = Path(__file__).resolve().parents[2]
RUNGS = sorted((ROOT / "models" / "ladder").glob("*.yaml"))
TALK_ORDER = ["plds", "independent", "correlated", "glm", "glm_corr", "rglm_corr", "rglm"]
# shipped R-GLM specs outside the ladder, fitted on every V1 session for the closed-loop
# stability census (issue 20: samples of every shipped R-GLM spec stay bounded); name "rglm"
SHIPPED_RGLM = (ROOT / "models" / "rglm_v1.yaml",)
STRUCTURE_MODELS = ("plds", "glm_corr", "rglm_corr")
MAX_LAG = 10  # bins of the cross-correlograms
LOCUST_OVERRIDES = ("data.bin_size=50 ms", "data.conditions=[odour]", "data.window=[0, 10]",
                    "stimulus.n_basis=20", "history.duration=250 ms", "coupling.duration=250 ms")
# the PLDS has no history or coupling filters: only the data and stimulus overrides apply
LOCUST_PLDS_OVERRIDES = LOCUST_OVERRIDES[:4]
SAMPLE_REPEATS = 5


def run_one(dataset: str, spec_path: str, overrides: tuple[str, ...], seed: int,
            decode: bool) -> dict:
    """Fit one rung to one dataset; held-out scores, decoding and sample statistics."""
    from neurorec.analysis.decoding import logistic_decode, map_decode
    from neurorec.analysis.statistics import structure_agreement
    from neurorec.core.errors import DivergenceError
    from neurorec.data.recording import TrialLayout
    from neurorec.families import family_of
    from neurorec.spec import load_model_spec
    from neurorec.workflows.pipeline import fit_and_evaluate

    spec = load_model_spec(spec_path, overrides)
    start = time.perf_counter()
    result = fit_and_evaluate(spec, load_clean(dataset), seed=seed, progress=False)
    m, test = result.metrics, result.test
    row = {"dataset": dataset, "model": spec.name, "n_units": m["n_neurons"],
           "n_test_trials": m["n_test_trials"], "n_test_spikes": m["n_spikes"],
           "bits_per_spike": m["bits_per_spike"], "log_likelihood": m["log_likelihood"],
           "fit_time_s": m["fit_time_s"], "seconds": 0.0}
    condition = np.tile(test.condition, SAMPLE_REPEATS)
    try:
        samples = result.model.sample(len(condition), seed=seed + 1,
                                       like=TrialLayout(condition, result.model.n_bins_))
    except DivergenceError:
        # an exp-link fit with positive feedback can run away in closed loop: say so
        row["closed_loop_stable"] = False
    else:
        row["closed_loop_stable"] = True
        # bounded is not enough: do the samples sit at a rate ceiling? (rates in Hz)
        row["sample_rate_ratio"] = float(samples.mean() / max(test.counts.mean(), 1e-12))
        row["sample_max_rate_hz"] = float(samples.max() / test.bin_size)
        row["data_max_rate_hz"] = float(test.counts.max() / test.bin_size)
        row.update(structure_agreement(test.counts, test.condition, samples, condition))
        if spec.name in STRUCTURE_MODELS:
            row["_structure"] = structure_summary(test.counts, test.condition, samples,
                                                  condition)
    if family_of(spec.kind).supports("latent_dynamics"):
        eig, _ = result.model.time_constants()
        row["_eigenvalue_modulus"] = np.abs(eig).tolist()
        row["_bin_size_s"] = float(test.bin_size)
    if decode:
        row["decoding_accuracy"] = float((map_decode(result.model, test) == test.condition).mean())
        row["logistic_accuracy"] = float(
            (logistic_decode(result.train, test, seed) == test.condition).mean())
    row["seconds"] = time.perf_counter() - start
    return row


def structure_summary(data: np.ndarray, data_condition: np.ndarray, samples: np.ndarray,
                      sample_condition: np.ndarray) -> dict:
    """What the all-session structure figure needs from one fit: noise correlations of every
    unit pair (data, model), the cross-correlogram averaged over pairs (data, model; PSTH
    removed, lags ±MAX_LAG bins) and the population PSTH (mean count per bin over units and
    conditions; data, model)."""
    from neurorec.analysis.statistics import cross_correlogram, noise_correlations, psth

    n_cond = int(max(data_condition.max(), sample_condition.max())) + 1
    iu = np.triu_indices(data.shape[2], k=1)
    out = {}
    for who, counts, cond in (("data", data, data_condition),
                              ("model", samples, sample_condition)):
        out[f"noise_correlation_{who}"] = noise_correlations(counts, cond)[iu].tolist()
        ccg = [cross_correlogram(counts, cond, i, j, MAX_LAG) for i, j in zip(*iu, strict=True)]
        out[f"ccg_{who}"] = np.mean(ccg, axis=0).tolist()
        out[f"psth_{who}"] = np.nanmean(psth(counts, cond, n_cond), axis=(0, 2)).tolist()
    return out


def run_order(dataset: str, order_seed: int, seed: int) -> dict:
    from neurorec.spec import load_model_spec
    from neurorec.workflows.pipeline import fit_and_evaluate

    spec = load_model_spec(ROOT / "models" / "ladder" / "2_correlated.yaml",
                           ["correlated.order=random", f"correlated.order_seed={order_seed}"])
    m = fit_and_evaluate(spec, load_clean(dataset), seed=seed, progress=False).metrics
    return {"dataset": dataset, "order_seed": order_seed, "bits_per_spike": m["bits_per_spike"]}


def summarise(rows: list[dict]) -> list[dict]:
    """Rung × dataset group (V1 sessions pooled): mean ± s.e.m. of held-out bits/spike."""
    groups = study.dataset_groups(rows, "V1 (sessions)")
    out = []
    for model in TALK_ORDER:
        entry = {"model": model}
        for group, members in groups.items():
            values = np.array([r["bits_per_spike"] for r in members if r["model"] == model])
            if len(values) == 0:
                continue
            entry[group] = study.mean_sem(values)
            nc = [r.get("noise_correlation_r", np.nan) for r in members if r["model"] == model]
            stable = sum(r["closed_loop_stable"] for r in members if r["model"] == model)
            entry[f"{group} noise-corr r"] = (f"{np.nanmean(nc):.2f}" if np.isfinite(nc).any()
                                              else "n/a")
            entry[f"{group} stable samples"] = f"{stable}/{len(values)}"
            acc = [r["decoding_accuracy"] for r in members
                   if r["model"] == model and "decoding_accuracy" in r]
            if acc:
                entry[f"{group} decoding"] = f"{np.mean(acc):.3f}"
        out.append(entry)
    return out


def figure(rows: list[dict], path: Path) -> None:
    study.model_comparison_figure(
        rows, "bits_per_spike", TALK_ORDER, path, v1_title="V1 sessions",
        v1_ylabel="Δ bits/spike vs independent Poisson", locust_ylabel="held-out bits/spike",
        relative_to="independent", tick_rotation=20, bar_color="C0")


def v1_pairs(rows: list[dict], a: str, b: str, key: str = "bits_per_spike") -> tuple:
    """Per-session values of ``key`` for models ``a`` and ``b`` (V1 sessions with both)."""
    by = {(r["dataset"], r["model"]): r.get(key, np.nan) for r in rows
          if r["dataset"].startswith("v1_gratings")}
    sessions = sorted({d for d, m in by if m == a} & {d for d, m in by if m == b})
    return (np.array([by[d, a] for d in sessions], float),
            np.array([by[d, b] for d in sessions], float), sessions)


def structure_figure_all(rows: list[dict], path: Path, bin_size_s: float = 0.01) -> dict:
    """Closed-loop samples vs held-out data over every V1 session: pooled noise correlations
    (scatter, pooled r), the pair-averaged cross-correlogram and the population PSTH, each
    averaged over sessions (a model's diverged sessions are missing from its curves)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    v1 = [r for r in rows if r["dataset"].startswith("v1_gratings") and "_structure" in r]
    data = {r["dataset"]: r["_structure"] for r in v1}
    colors = {"plds": "C2", "glm_corr": "C0", "rglm_corr": "C3"}
    lags = np.arange(-MAX_LAG, MAX_LAG + 1) * bin_size_s * 1e3
    n_bins = max((len(s["psth_data"]) for s in data.values()), default=0)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    out = {}

    def mean_curve(curves: list) -> np.ndarray:
        return np.nanmean(np.array(curves, dtype=float), axis=0)

    axes[1].plot(lags, mean_curve([s["ccg_data"] for s in data.values()]), "k-", lw=2,
                 label=f"data (n={len(data)})")
    same = [s["psth_data"] for s in data.values() if len(s["psth_data"]) == n_bins]
    t = (np.arange(n_bins) + 0.5) * bin_size_s
    axes[2].plot(t, mean_curve(same) / bin_size_s, "k-", lw=2, label="data")
    for model in STRUCTURE_MODELS:
        mine = [r["_structure"] for r in v1 if r["model"] == model]
        if not mine:
            continue
        x = np.concatenate([np.asarray(s["noise_correlation_data"], float) for s in mine])
        y = np.concatenate([np.asarray(s["noise_correlation_model"], float) for s in mine])
        ok = np.isfinite(x) & np.isfinite(y)
        r = float(np.corrcoef(x[ok], y[ok])[0, 1]) if ok.sum() > 2 else np.nan
        out[model] = {"pooled_noise_correlation_r": r, "n_sessions": len(mine)}
        axes[0].scatter(x, y, s=6, alpha=0.5, color=colors[model],
                        label=f"{model}: r={r:.2f} ({len(mine)} sessions)")
        axes[1].plot(lags, mean_curve([s["ccg_model"] for s in mine]), color=colors[model],
                     label=f"{model} (n={len(mine)})")
        curves = [s["psth_model"] for s in mine if len(s["psth_model"]) == n_bins]
        if curves:
            axes[2].plot(t, mean_curve(curves) / bin_size_s, color=colors[model], label=model)
    lim = 0.6
    axes[0].plot([-lim, lim], [-lim, lim], color="0.6", lw=0.8)
    axes[0].set(xlabel="data noise correlation", ylabel="sample noise correlation",
                title="noise correlations, every pair of every session", xlim=(-0.3, lim),
                ylim=(-0.3, lim))
    axes[1].set(xlabel="lag (ms)", ylabel="covariance (PSTH removed)",
                title="cross-correlogram, mean over pairs and sessions")
    axes[2].set(xlabel="time in trial (s)", ylabel="mean rate (Hz)",
                title="population PSTH, mean over sessions")
    for ax in axes:
        ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return out


def time_constant_figure(rows: list[dict], path: Path) -> dict:
    """Histogram over V1 sessions of the latent time constants ``τ = -Δt / ln|λ|`` of the
    R-GLM's ``R`` and the PLDS's ``A`` (|λ| ≥ 1 counted apart)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    bins = np.logspace(0, 4, 33)
    out = {}
    for model, color in (("rglm_corr", "C3"), ("plds", "C2")):
        mods = [(np.asarray(r["_eigenvalue_modulus"], float), r["_bin_size_s"]) for r in rows
                if r["model"] == model and r["dataset"].startswith("v1_gratings")
                and "_eigenvalue_modulus" in r]
        if not mods:
            continue
        with np.errstate(divide="ignore"):
            tau = np.concatenate([np.where((m > 0) & (m < 1), -dt / np.log(m), np.inf) * 1e3
                                  for m, dt in mods])
        finite = tau[np.isfinite(tau) & (tau > 0)]
        slowest = [float(np.max(np.where((m > 0) & (m < 1), -dt / np.log(np.clip(m, 1e-300,
                                                                                  None)),
                                         np.inf))) * 1e3 for m, dt in mods]
        out[model] = {"n_sessions": len(mods), "median_ms": float(np.median(finite)),
                      "median_slowest_ms": float(np.median(slowest)),
                      "n_nondecaying": int((~np.isfinite(tau)).sum()), "n_modes": len(tau)}
        ax.hist(np.clip(finite, 1, 1e4), bins=bins, histtype="step", lw=2, color=color,
                label=f"{model}: median {out[model]['median_ms']:.0f} ms, slowest mode per "
                      f"session median {out[model]['median_slowest_ms']:.0f} ms "
                      f"({len(mods)} sessions)")
    ax.set(xscale="log", xlabel="latent time constant τ (ms)", ylabel="modes",
           title="latent time constants, V1 sessions")
    ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return out


def results_markdown(rows: list[dict], summary: list[dict], structure: dict, taus: dict,
                     command: str, wall_s: float, orders: list[dict]) -> str:
    """RESULTS.md: the summary table, paired comparisons and issue 20's targets."""
    import datetime

    lines = [f"# R-GLM ladder — measured {datetime.date.today().isoformat()}", "",
             f"Command: `{command}` — {wall_s / 60:.1f} min wall. Held-out trials only (20 % "
             "per condition, seed 0); V1: every bundled session, units with contamination "
             "< 0.05; locust: 50 ms bins, first 10 s of each trial. Per-fit numbers: "
             "`table.csv`; figures: `ladder_v1_locust.png`, `structure_all.png`, "
             "`time_constants.png`.", ""]
    lines += [*study.markdown_table(summary), ""]
    comparisons = [("rglm_corr", "glm_corr"), ("rglm_corr", "plds"), ("glm_corr", "plds")]
    lines += ["| comparison (V1, held-out bits/spike) | sessions a ≥ b | mean a − b | "
              "bootstrap 95 % CI | sign-flip p (mean > 0) |", "|---|---|---|---|---|"]
    stats = {}
    for a, b in comparisons:
        x, y, _ = v1_pairs(rows, a, b)
        if len(x) < 2:
            continue
        st = stats[a, b] = study.paired(x, y)
        lines.append(f"| {a} − {b} | {st['wins']}/{st['n']} | {st['mean']:+.4f} | "
                     f"[{st['ci'][0]:+.4f}, {st['ci'][1]:+.4f}] | {st['p']:.4f} |")
    lines.append("")
    stable = {m: [r["closed_loop_stable"] for r in rows
                  if r["model"] == m and r["dataset"].startswith("v1_gratings")]
              for m in TALK_ORDER}
    lines.append("Closed-loop samples (each rung's own link; stable = every expected count "
                 "below 10 kHz through 5 samples of each held-out trial): " + ", ".join(
                     f"{m} {sum(bool(v) for v in s)}/{len(s)}" for m, s in stable.items() if s)
                 + ".")
    ratio = {m: [r["sample_rate_ratio"] for r in rows if r["model"] == m
                 and r["dataset"].startswith("v1_gratings") and "sample_rate_ratio" in r]
             for m in TALK_ORDER}
    peak = {m: max(r["sample_max_rate_hz"] for r in rows if r["model"] == m
                   and "sample_max_rate_hz" in r) for m, v in ratio.items() if v}
    lines.append("Rungs 3-5 and the shipped `rglm` saturate at `rate_ceiling_hz` = 500 (bounded by "
                 "construction); whether samples sit near it: mean sample rate / data rate, median "
                 "over V1 sessions [min, max]: " + ", ".join(
                     f"{m} {np.median(v):.2f} [{min(v):.2f}, {max(v):.2f}]"
                     for m, v in ratio.items() if v) + "; highest single-bin sample rate over "
                 "sessions (data's in brackets): " + ", ".join(
                     f"{m} {peak[m]:.0f} Hz" for m in peak)
                 + f" ({max(r.get('data_max_rate_hz', 0) for r in rows):.0f} Hz).")
    if structure:
        lines.append("Noise correlations of samples vs data, pooled over every pair of every "
                     "session where the model's samples stayed bounded: " + ", ".join(
                         f"{m} r = {v['pooled_noise_correlation_r']:.2f} "
                         f"({v['n_sessions']} sessions)" for m, v in structure.items()) + ".")
    if taus:
        lines.append("Latent time constants (`time_constants.png`): " + "; ".join(
            f"{m}: median {v['median_ms']:.1f} ms over {v['n_modes']} modes, slowest mode "
            f"per session median {v['median_slowest_ms']:.1f} ms, {v['n_nondecaying']} "
            "non-decaying" for m, v in taus.items()) + ".")
    if orders:
        bps = np.array([o["bits_per_spike"] for o in orders])
        lines.append(f"Unit order (correlated rung, {orders[0]['dataset']}): {len(bps)} random "
                     f"orders {bps.mean():.4f} ± {bps.std(ddof=1):.4f} (sd).")
    lines += ["", "## Issue 20 targets", ""]
    st = stats.get(("rglm_corr", "glm_corr"))
    if st:
        lines.append(f"- R-GLM + corr ≥ GLM + corr in ≥ 22 sessions: {st['wins']}/{st['n']} — "
                     f"{'holds' if st['wins'] >= 22 else 'missed'}.")
        lines.append(f"- mean gain ≥ +0.01 bits/spike: {st['mean']:+.4f} — "
                     f"{'holds' if st['mean'] >= 0.01 else 'missed'}.")
    st = stats.get(("rglm_corr", "plds"))
    if st:
        lines.append(f"- R-GLM + corr > PLDS on average: {st['mean']:+.4f} — "
                     f"{'holds' if st['mean'] > 0 else 'missed'}.")
    for name in ("rglm_corr", "rglm"):
        s = stable.get(name, [])
        if s:
            n_ok = sum(bool(v) for v in s)
            lines.append(f"- closed-loop samples stable in 27/27 ({name}): {n_ok}/{len(s)} — "
                         f"{'holds' if n_ok == len(s) == 27 else 'missed'}.")
    if "rglm_corr" in structure and "glm_corr" in structure:
        a = structure["rglm_corr"]["pooled_noise_correlation_r"]
        b = structure["glm_corr"]["pooled_noise_correlation_r"]
        lines.append(f"- noise-correlation r of R-GLM + corr ≥ GLM + corr's: {a:.2f} vs {b:.2f}"
                     f" — {'holds' if a >= b else 'missed'} (pooled over each model's stable "
                     "sessions).")
    return "\n".join(lines) + "\n"


PUBLISHED = {"table.csv": "table.csv", "RESULTS.md": "RESULTS.md", "headroom.csv": "headroom.csv",
             "ladder.png": "ladder_v1_locust.png", "structure_all.png": "structure_all.png",
             "time_constants.png": "time_constants.png"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    study.add_common_args(parser, "out", "v1_sessions", "no_locust")
    parser.add_argument("--orders", type=int, default=10, help="random unit orders to try")
    parser.add_argument("--order-dataset", default="v1_gratings:3")
    study.add_common_args(parser, "jobs", "seed", "overwrite", jobs=2)
    parser.add_argument("--publish", type=Path, default=None,
                        help="copy table.csv, RESULTS.md and the figures into this folder "
                        "(analyses/rglm_ladder for the committed copy)")
    args = parser.parse_args()
    started = time.perf_counter()
    command = "python analyses/rglm_ladder/run.py " + " ".join(sys.argv[1:])

    from neurorec.report import html

    def locust(p: Path) -> tuple[str, ...]:
        return LOCUST_PLDS_OVERRIDES if p.stem.endswith("plds") else LOCUST_OVERRIDES

    datasets = study.real_datasets(args)
    v1 = [d for d in datasets if not d.startswith("locust")]
    tasks = [(d, str(p), locust(p) if d.startswith("locust") else (), args.seed,
              not d.startswith("locust")) for d in datasets for p in RUNGS]
    tasks += [(d, str(p), (), args.seed, False) for d in v1 for p in SHIPPED_RGLM]
    study.apply_thread_policy(1)
    # every finished fit is kept in OUT.partial/ at once: an interrupted run started again
    # fits only what is missing (the cache is removed once OUT is written)
    cache = study.beside(args.out, ".partial", hidden=False)
    jobs = [(f"{t[0]}__{Path(t[1]).stem}.json", run_one, t) for t in tasks]
    jobs += [(f"headroom__{d}.json", run_headroom,
              (d, str(ROOT / "models" / "ladder" / "4_glm_corr.yaml"), args.seed)) for d in v1]
    jobs += [(f"order__{args.order_dataset}__{k}.json", run_order,
              (args.order_dataset, k, args.seed)) for k in range(args.orders)]
    with study.output_dir(args) as tmp:
        results, errors = study.run_cached(jobs, cache, args.jobs)
        failed = [{"dataset": a[0], "spec": Path(str(a[1])).stem, "error": e}
                  for _, a, e in errors]
        results = list(results.values())
        headroom = sorted((r for r in results if "oracle_gain" in r), key=lambda r: r["dataset"])
        rows = [r for r in results if "order_seed" not in r and "oracle_gain" not in r]
        orders = [r for r in results if "order_seed" in r]
        if failed:
            study.write_csv(tmp / "failed.csv", failed)
        rows.sort(key=lambda r: (r["dataset"], TALK_ORDER.index(r["model"])))
        # arrays kept for the figures (keys starting with "_") stay out of the table
        study.write_csv(tmp / "table.csv", [{k: v for k, v in r.items() if not k.startswith("_")}
                                            for r in rows])
        summary = summarise(rows)
        study.write_csv(tmp / "summary.csv", summary)
        (tmp / "summary.md").write_text("\n".join(study.markdown_table(summary)) + "\n")
        sections = [("Held-out bits/spike by rung", study.html_table(summary))]
        if headroom:
            study.write_csv(tmp / "headroom.csv", headroom)
        if orders:
            study.write_csv(tmp / "ordering.csv", orders)
            bps = np.array([o["bits_per_spike"] for o in orders])
            sections.append(("Unit order (correlated rung)", html.table(
                [(args.order_dataset, len(bps), f"{bps.mean():.4f}", f"{bps.std(ddof=1):.4f}",
                  f"{bps.min():.4f}", f"{bps.max():.4f}")],
                ("dataset", "random orders", "mean", "sd", "min", "max"))))
        if failed:
            sections.append(("Failed fits", study.html_table(failed)))
        figure(rows, tmp / "ladder.png")
        sections.append(("Ladder", html.figure("ladder.png", "held-out bits/spike per rung")))
        structure = structure_figure_all(rows, tmp / "structure_all.png")
        sections.append(("Sample structure", html.figure(
            "structure_all.png", "closed-loop samples vs held-out data, all V1 sessions")))
        taus = time_constant_figure(rows, tmp / "time_constants.png")
        sections.append(("Time constants", html.figure(
            "time_constants.png", "latent time constants over V1 sessions")))
        (tmp / "RESULTS.md").write_text(results_markdown(
            rows, summary, structure, taus, command, time.perf_counter() - started, orders)
            + "\n".join(headroom_markdown(headroom)) + "\n")
        table = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
        sections.append(("All fits", study.html_table(table, list(table[0]))))
        study.write_report(tmp, "R-GLM model ladder on real populations", sections)
    shutil.rmtree(cache, ignore_errors=True)
    if args.publish is not None:
        for name, target in PUBLISHED.items():
            shutil.copyfile(args.out / name, args.publish / target)
        print(f"published {', '.join(PUBLISHED.values())} to {args.publish}")
    print((args.out / "RESULTS.md").read_text())
    if orders:
        print(f"unit order, {len(orders)} random orders on {args.order_dataset}: "
              f"{bps.mean():.4f} ± {bps.std(ddof=1):.4f} bits/spike (sd)")
    print(f"report: {args.out / 'report.html'}")


if __name__ == "__main__":
    from neurorec.core.errors import run_script

    run_script(main)
