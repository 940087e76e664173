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

from neurorec.workflows import study
from neurorec.workflows.study import load_clean

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
            if any("decoding_accuracy" in r for r in members):
                acc = [r["decoding_accuracy"] for r in members if r["model"] == model]
                entry[f"{group} decoding"] = f"{np.mean(acc):.3f}"
        out.append(entry)
    return out


def figure(rows: list[dict], path: Path) -> None:
    study.model_comparison_figure(
        rows, "bits_per_spike", TALK_ORDER, path, v1_title="V1 sessions",
        v1_ylabel="Δ bits/spike vs independent Poisson", locust_ylabel="held-out bits/spike",
        relative_to="independent", tick_rotation=20, bar_color="C0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    study.add_common_args(parser, "out", "v1_sessions", "no_locust")
    parser.add_argument("--orders", type=int, default=10, help="random unit orders to try")
    parser.add_argument("--order-dataset", default="v1_gratings:3")
    study.add_common_args(parser, "jobs", "seed", "overwrite", jobs=2)
    args = parser.parse_args()

    from neurorec.report import html

    tasks = [(d, str(p), LOCUST_OVERRIDES if d.startswith("locust") else (), args.seed,
              not d.startswith("locust")) for d in study.real_datasets(args) for p in RUNGS]
    study.apply_thread_policy(1)
    # every finished fit is kept in OUT.partial/ at once: an interrupted run started again
    # fits only what is missing (the cache is removed once OUT is written)
    cache = study.beside(args.out, ".partial", hidden=False)
    jobs = [(f"{t[0]}__{Path(t[1]).stem}.json", run_one, t) for t in tasks]
    jobs += [(f"order__{args.order_dataset}__{k}.json", run_order,
              (args.order_dataset, k, args.seed)) for k in range(args.orders)]
    with study.output_dir(args) as tmp:
        results, errors = study.run_cached(jobs, cache, args.jobs)
        failed = [{"dataset": a[0], "spec": Path(str(a[1])).stem, "error": e}
                  for _, a, e in errors]
        results = list(results.values())
        rows = [r for r in results if "order_seed" not in r]
        orders = [r for r in results if "order_seed" in r]
        if failed:
            study.write_csv(tmp / "failed.csv", failed)
        rows.sort(key=lambda r: (r["dataset"], TALK_ORDER.index(r["model"])))
        study.write_csv(tmp / "table.csv", rows)
        summary = summarise(rows)
        study.write_csv(tmp / "summary.csv", summary)
        (tmp / "summary.md").write_text("\n".join(study.markdown_table(summary)) + "\n")
        sections = [("Held-out bits/spike by rung", study.html_table(summary))]
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
        sections.append(("All fits", study.html_table(rows, list(rows[0]))))
        study.write_report(tmp, "R-GLM model ladder on real populations", sections)
    shutil.rmtree(cache, ignore_errors=True)
    print((args.out / "summary.md").read_text())
    if orders:
        print(f"unit order, {len(orders)} random orders on {args.order_dataset}: "
              f"{bps.mean():.4f} ± {bps.std(ddof=1):.4f} bits/spike (sd)")
    print(f"report: {args.out / 'report.html'}")


if __name__ == "__main__":
    from neurorec.core.errors import run_script

    run_script(main)
