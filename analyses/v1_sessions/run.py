"""GLM vs R-GLM on every bundled V1 drifting-gratings session (Ecker et al. 2010 data).

    python analyses/v1_sessions/run.py --out results/v1_sessions [--sessions 0-26] [--seed 0]

Fits ``models/glm_v1.yaml`` and ``models/rglm_v1.yaml`` to each session's training trials,
scores held-out trials in bits/spike (NLB definition), and writes ``table.csv`` (session ×
model), ``bits_per_spike.png`` and ``report.html``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm.auto import tqdm

from neurorec.core.outputs import atomic_dir
from neurorec.datasets import load
from neurorec.report import html
from neurorec.spec import load_model_spec
from neurorec.workflows.pipeline import fit_and_evaluate
from neurorec.workflows.runs import parse_sessions

ROOT = Path(__file__).resolve().parents[2]
SPECS = (ROOT / "models" / "glm_v1.yaml", ROOT / "models" / "rglm_v1.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sessions", default="0-26")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    specs = [load_model_spec(p) for p in SPECS]
    rows = []
    with atomic_dir(args.out, overwrite=args.overwrite) as tmp:
        for session in tqdm(parse_sessions(args.sessions), desc="sessions"):
            rec = load(f"v1_gratings:{session}")
            for spec in specs:
                m = fit_and_evaluate(spec, rec, seed=args.seed, progress=False).metrics
                rows.append({"session": session, "model": spec.name, "n_units": m["n_neurons"],
                             "n_test_spikes": m["n_spikes"],
                             "bits_per_spike": m["bits_per_spike"],
                             "log_likelihood": m["log_likelihood"],
                             "fit_time_s": m["fit_time_s"]})
        with open(tmp / "table.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        names = [s.name for s in specs]
        bps = {n: np.array([r["bits_per_spike"] for r in rows if r["model"] == n]) for n in names}
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.scatter(bps[names[0]], bps[names[1]], s=14)
        lim = [min(map(np.min, bps.values())), max(map(np.max, bps.values()))]
        ax.plot(lim, lim, color="0.6", lw=0.8)
        ax.set(xlabel=f"{names[0]} bits/spike", ylabel=f"{names[1]} bits/spike",
               title="held-out bits/spike per V1 session")
        fig.tight_layout()
        fig.savefig(tmp / "bits_per_spike.png", dpi=110)
        plt.close(fig)
        diff = bps[names[1]] - bps[names[0]]
        summary = [(n, f"{bps[n].mean():.4f} ± {bps[n].std(ddof=1) / np.sqrt(len(bps[n])):.4f}")
                   for n in names]
        summary.append((f"{names[1]} − {names[0]}", f"{diff.mean():+.4f} ± "
                        f"{diff.std(ddof=1) / np.sqrt(len(diff)):.4f} "
                        f"({(diff > 0).sum()}/{len(diff)} sessions better)"))
        html.page("GLM vs R-GLM on V1 sessions",
                  [("Held-out bits/spike (mean ± s.e.m. over sessions)",
                    html.table(summary, ("model", "bits/spike"))),
                   ("Per session", html.figure("bits_per_spike.png", "one dot per session")),
                   ("Table", html.table([tuple(r.values()) for r in rows], list(rows[0])))],
                  tmp / "report.html")
    for name, value in summary:
        print(f"{name:<16} {value}")
    print(f"report: {args.out / 'report.html'}")


if __name__ == "__main__":
    from neurorec.core.errors import run_script

    run_script(main)
