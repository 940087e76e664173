"""The R-GLM model ladder on real populations (Pachitariu, Petreska & Sahani 2013, talk table).

    python analyses/rglm_ladder/run.py --out results/ladder [--v1-sessions 0-26] [--jobs 2]

Rungs (``models/ladder/*.yaml``): fully independent Poisson, correlated Poisson, GLM,
GLM + correlated Poisson, R-GLM + correlated Poisson. Datasets: every bundled V1
drifting-gratings session (units with contamination < 0.05, as the papers) and the locust
antennal-lobe population (odour and spontaneous trials; 50 ms bins, first 10 s of each trial).
Everything is scored on held-out trials only.

Writes ``table.csv`` (one row per dataset × rung), ``summary.md`` (rung × dataset group,
bits/spike mean ± s.e.m. over sessions), ``ordering.csv`` (held-out bits/spike of the
correlated rung under random unit orders), ``ladder.png`` and ``report.html``.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from neurorec.workflows.runs import (
    load_clean,
    markdown_table,
    parse_sessions,
    run_cached,
    write_csv,
)

ROOT = Path(__file__).resolve().parents[2]
RUNGS = sorted((ROOT / "models" / "ladder").glob("*.yaml"))
TALK_ORDER = ["independent", "correlated", "glm", "glm_corr", "rglm_corr"]
LOCUST_OVERRIDES = ("data.bin_size=50 ms", "data.conditions=[odour]", "data.window=[0, 10]",
                    "stimulus.n_basis=20", "history.duration=250 ms", "coupling.duration=250 ms")
SAMPLE_REPEATS = 5


def run_one(dataset: str, spec_path: str, overrides: tuple[str, ...], seed: int,
            decode: bool) -> dict:
    """Fit one rung to one dataset; held-out scores, decoding and sample statistics."""
    from neurorec.analysis.decoding import logistic_decode, map_decode
    from neurorec.analysis.statistics import structure_agreement
    from neurorec.core.errors import DivergenceError
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
        samples = result.model.sample(condition, seed=seed + 1)
    except DivergenceError:
        # an exp-link fit with positive feedback can run away in closed loop: say so
        row["closed_loop_stable"] = False
    else:
        row["closed_loop_stable"] = True
        row.update(structure_agreement(test.counts, test.condition, samples, condition))
    if decode:
        row["decoding_accuracy"] = float((map_decode(result.model, test) == test.condition).mean())
        row["logistic_accuracy"] = float(
            (logistic_decode(result.train, test, seed) == test.condition).mean())
    row["seconds"] = time.perf_counter() - start
    return row


def run_order(dataset: str, order_seed: int, seed: int) -> dict:
    from neurorec.spec import load_model_spec
    from neurorec.workflows.pipeline import fit_and_evaluate

    spec = load_model_spec(ROOT / "models" / "ladder" / "2_correlated.yaml",
                           ["correlated.order=random", f"correlated.order_seed={order_seed}"])
    m = fit_and_evaluate(spec, load_clean(dataset), seed=seed, progress=False).metrics
    return {"dataset": dataset, "order_seed": order_seed, "bits_per_spike": m["bits_per_spike"]}


def summarise(rows: list[dict]) -> list[dict]:
    """Rung × dataset group (V1 sessions pooled): mean ± s.e.m. of held-out bits/spike."""
    groups = {"V1 (sessions)": [r for r in rows if r["dataset"].startswith("v1_gratings")],
              "locust AL": [r for r in rows if r["dataset"].startswith("locust")]}
    out = []
    for model in TALK_ORDER:
        entry = {"model": model}
        for group, members in groups.items():
            values = np.array([r["bits_per_spike"] for r in members if r["model"] == model])
            if len(values) == 0:
                continue
            sem = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
            entry[group] = f"{values.mean():.4f} ± {sem:.4f} (n={len(values)})"
            nc = [r.get("noise_correlation_r", np.nan) for r in members if r["model"] == model]
            stable = sum(r["closed_loop_stable"] for r in members if r["model"] == model)
            entry[f"{group} noise-corr r"] = (f"{np.nanmean(nc):.2f}" if np.isfinite(nc).any()
                                              else "n/a")
            entry[f"{group} stable samples"] = f"{stable}/{len(values)}"
            if any("decoding_accuracy" in r for r in members):
                acc = [r["decoding_accuracy"] for r in members if r["model"] == model]
                entry[f"{group} decoding"] = f"{np.mean(acc):.3f}"
        out.append(entry)
    return out


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    from neurorec.report import figures  # noqa: F401  (selects the Agg backend)

    datasets = sorted({r["dataset"] for r in rows})
    value = {(r["dataset"], r["model"]): r["bits_per_spike"] for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    v1 = [d for d in datasets if d.startswith("v1")]
    deltas = np.array([[value.get((d, m), np.nan) - value.get((d, "independent"), np.nan)
                        for m in TALK_ORDER] for d in v1]).reshape(len(v1), len(TALK_ORDER))
    for ys in deltas:
        axes[0].plot(range(len(TALK_ORDER)), ys, color="0.75", lw=0.8)
    if v1:
        axes[0].plot(range(len(TALK_ORDER)), np.nanmean(deltas, axis=0), "o-", color="C3",
                     label="mean over sessions")
        axes[0].legend(frameon=False)
    axes[0].set(title="V1 sessions", ylabel="Δ bits/spike vs independent Poisson")
    for d in (d for d in datasets if d.startswith("locust")):
        axes[1].bar(range(len(TALK_ORDER)), [value.get((d, m), np.nan) for m in TALK_ORDER],
                    color="C0")
    axes[1].set(title="locust antennal lobe", ylabel="held-out bits/spike")
    for ax in axes:
        ax.set_xticks(range(len(TALK_ORDER)), TALK_ORDER, rotation=20, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--v1-sessions", default="0-26")
    parser.add_argument("--no-locust", action="store_true")
    parser.add_argument("--orders", type=int, default=10, help="random unit orders to try")
    parser.add_argument("--order-dataset", default="v1_gratings:3")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()

    from neurorec.core.outputs import atomic_dir
    from neurorec.report import html

    tasks = [(f"v1_gratings:{s}", str(p), (), args.seed, True)
             for s in parse_sessions(args.v1_sessions) for p in RUNGS]
    if not args.no_locust:
        tasks += [("locust_al", str(p), LOCUST_OVERRIDES, args.seed, False) for p in RUNGS]
    # every finished fit is kept in OUT.partial/ at once: an interrupted run started again
    # fits only what is missing (the cache is removed once OUT is written)
    cache = args.out.with_name(f"{args.out.name}.partial")
    jobs = [(f"{t[0]}__{Path(t[1]).stem}.json", run_one, t) for t in tasks]
    jobs += [(f"order__{args.order_dataset}__{k}.json", run_order,
              (args.order_dataset, k, args.seed)) for k in range(args.orders)]
    with atomic_dir(args.out, overwrite=args.overwrite) as tmp:
        results, errors = run_cached(jobs, cache, args.jobs)
        failed = [{"dataset": a[0], "spec": Path(str(a[1])).stem, "error": e}
                  for _, a, e in errors]
        results = list(results.values())
        rows = [r for r in results if "order_seed" not in r]
        orders = [r for r in results if "order_seed" in r]
        if failed:
            write_csv(tmp / "failed.csv", failed)
        rows.sort(key=lambda r: (r["dataset"], TALK_ORDER.index(r["model"])))
        write_csv(tmp / "table.csv", rows)
        summary = summarise(rows)
        write_csv(tmp / "summary.csv", summary)
        header = list(dict.fromkeys(k for r in summary for k in r))
        (tmp / "summary.md").write_text("\n".join(markdown_table(summary)) + "\n")
        sections = [("Held-out bits/spike by rung", html.table(
            [[r.get(k, "") for k in header] for r in summary], header))]
        if orders:
            write_csv(tmp / "ordering.csv", orders)
            bps = np.array([o["bits_per_spike"] for o in orders])
            sections.append(("Unit order (correlated rung)", html.table(
                [(args.order_dataset, len(bps), f"{bps.mean():.4f}", f"{bps.std(ddof=1):.4f}",
                  f"{bps.min():.4f}", f"{bps.max():.4f}")],
                ("dataset", "random orders", "mean", "sd", "min", "max"))))
        if failed:
            sections.append(("Failed fits", html.table(
                [tuple(f.values()) for f in failed], ("dataset", "spec", "error"))))
        figure(rows, tmp / "ladder.png")
        sections.append(("Ladder", html.figure("ladder.png", "held-out bits/spike per rung")))
        sections.append(("All fits", html.table([[r.get(k, "") for k in rows[0]] for r in rows],
                                                list(rows[0]))))
        html.page("R-GLM model ladder on real populations", sections, tmp / "report.html")
    shutil.rmtree(cache, ignore_errors=True)
    print((args.out / "summary.md").read_text())
    if orders:
        print(f"unit order, {len(orders)} random orders on {args.order_dataset}: "
              f"{bps.mean():.4f} ± {bps.std(ddof=1):.4f} bits/spike (sd)")
    print(f"report: {args.out / 'report.html'}")


if __name__ == "__main__":
    from neurorec.core.errors import run_script

    run_script(main)
