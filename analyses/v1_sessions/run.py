"""GLM vs R-GLM on every bundled V1 drifting-gratings session (Ecker et al. 2010 data).

    python analyses/v1_sessions/run.py --out results/v1_sessions [--sessions 0-26] [--seed 0]

Fits ``models/glm_v1.yaml`` and ``models/rglm_v1.yaml`` to each session's training trials,
scores held-out trials in bits/spike (NLB definition), and writes ``table.csv`` (session ×
model), ``bits_per_spike.png`` and ``report.html``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from tqdm.auto import tqdm

from neurorec.datasets import load
from neurorec.report import html
from neurorec.spec import load_model_spec
from neurorec.workflows import study
from neurorec.workflows.pipeline import fit_and_evaluate

ROOT = Path(__file__).resolve().parents[2]
SPECS = (ROOT / "models" / "glm_v1.yaml", ROOT / "models" / "rglm_v1.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    study.add_common_args(parser, "out")
    parser.add_argument("--sessions", default="0-26")
    study.add_common_args(parser, "seed", "overwrite")
    args = parser.parse_args()
    study.apply_thread_policy(None)  # one process: torch keeps every core
    specs = [load_model_spec(p) for p in SPECS]
    rows = []
    with study.output_dir(args) as tmp:
        for session in tqdm(study.parse_sessions(args.sessions), desc="sessions"):
            rec = load(f"v1_gratings:{session}")
            for spec in specs:
                m = fit_and_evaluate(spec, rec, seed=args.seed, progress=False).metrics
                rows.append({"session": session, "model": spec.name, "n_units": m["n_neurons"],
                             "n_test_spikes": m["n_spikes"],
                             "bits_per_spike": m["bits_per_spike"],
                             "log_likelihood": m["log_likelihood"],
                             "fit_time_s": m["fit_time_s"]})
        study.write_csv(tmp / "table.csv", rows)
        names = [s.name for s in specs]
        bps = {n: np.array([r["bits_per_spike"] for r in rows if r["model"] == n]) for n in names}
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.scatter(bps[names[0]], bps[names[1]], s=14)
        lim = [min(map(np.min, bps.values())), max(map(np.max, bps.values()))]
        ax.plot(lim, lim, color="0.6", lw=0.8)
        ax.set(xlabel=f"{names[0]} bits/spike", ylabel=f"{names[1]} bits/spike",
               title="held-out bits/spike per V1 session")
        study.save_figure(fig, tmp / "bits_per_spike.png")
        diff = bps[names[1]] - bps[names[0]]
        summary = [(n, study.mean_sem(bps[n], with_n=False)) for n in names]
        summary.append((f"{names[1]} − {names[0]}", f"{diff.mean():+.4f} ± "
                        f"{study.sem(diff):.4f} "
                        f"({(diff > 0).sum()}/{len(diff)} sessions better)"))
        study.write_report(tmp, "GLM vs R-GLM on V1 sessions", [
            ("Held-out bits/spike (mean ± s.e.m. over sessions)",
             html.table(summary, ("model", "bits/spike"))),
            ("Per session", html.figure("bits_per_spike.png", "one dot per session")),
            ("Table", study.html_table(rows))])
    for name, value in summary:
        print(f"{name:<16} {value}")
    print(f"report: {args.out / 'report.html'}")


if __name__ == "__main__":
    from neurorec.core.errors import run_script

    run_script(main)
