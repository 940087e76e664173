"""Do samples from fitted ladder models reproduce the data's spatiotemporal structure?

    python analyses/rglm_ladder/structure.py --out results/structure [--data v1_gratings:14]

Fits the correlated rungs (GLM + correlated Poisson, R-GLM + correlated Poisson, and the
correlated-only rung) to one dataset, draws ``--repeats`` closed-loop samples for every
held-out trial's condition, and compares them with the held-out trials: pairwise noise
correlations, in-bin correlations and PSTHs (``structure_agreement``: Pearson r between data
and model) plus a figure (noise-correlation scatter, the most correlated pair's
cross-correlogram, population PSTH). The softplus link is used (``--set link=softplus``):
exp-link fits with positive feedback often run away in closed loop (see RESULTS.md).
Writes ``structure.json`` and ``structure.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from neurorec.workflows import study

ROOT = Path(__file__).resolve().parents[2]
RUNGS = ("2_correlated", "4_glm_corr", "5_rglm_corr")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    study.add_common_args(parser, "out")
    parser.add_argument("--data", default="v1_gratings:14")
    parser.add_argument("--repeats", type=int, default=5)
    study.add_common_args(parser, "seed")
    parser.add_argument("--link", default="softplus")
    args = parser.parse_args()
    study.apply_thread_policy(1)

    from neurorec.analysis.statistics import structure_agreement
    from neurorec.core.outputs import atomic_dir
    from neurorec.data.recording import TrialLayout
    from neurorec.report.figures import structure_figure
    from neurorec.spec import load_model_spec
    from neurorec.workflows.pipeline import fit_and_evaluate

    recording = study.load_clean(args.data)
    numbers, samples, test = {}, {}, None
    for rung in RUNGS:
        spec = load_model_spec(ROOT / "models" / "ladder" / f"{rung}.yaml",
                               [f"link={args.link}"])
        result = fit_and_evaluate(spec, recording, seed=args.seed, progress=False)
        test = result.test
        condition = np.tile(test.condition, args.repeats)
        counts = result.model.sample(len(condition), seed=args.seed + 1,
                                     like=TrialLayout(condition, result.model.n_bins_))
        samples[spec.name] = (counts, condition)
        numbers[spec.name] = {"bits_per_spike": result.metrics["bits_per_spike"],
                              **structure_agreement(test.counts, test.condition, counts,
                                                    condition)}
        print(spec.name, json.dumps(numbers[spec.name]))
    with atomic_dir(args.out, overwrite=True) as tmp:
        study.write_json(tmp / "structure.json", {"data": args.data, "link": args.link,
                                                  "repeats": args.repeats, "models": numbers})
        structure_figure(test.counts, test.condition, samples, tmp / "structure.png",
                         bin_size_s=test.bin_size)
    print(f"wrote {args.out}/structure.json and structure.png")


if __name__ == "__main__":
    from neurorec.core.errors import run_script

    run_script(main)
