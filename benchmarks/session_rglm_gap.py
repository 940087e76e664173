"""Issue 27's R-GLM target: on an open-field session the shipped specs never saw (120
simulated cells, 30 min of Tanni et al. 2022's trajectory from 1000 s on, data seed 11),
how much of the gap between the fitted session GLM and the true conditional intensity
``models/session_rglm.yaml`` closes on the test bins (NLB bits/spike), and its fit time.

    python benchmarks/session_rglm_gap.py [--units 120] [--minutes 30] [--set fit.max_iter=1]

Prints the GLM's, the R-GLM's and the truth's held-out bits/spike, the gap closed
``(rglm - glm) / (truth - glm)``, an oracle (the GLM times the true gain: what a perfect
gain tracker on this GLM reaches), fit times (wall and CPU, one thread) and the load average.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--units", type=int, default=120)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    a = ap.parse_args()
    torch.set_num_threads(1)
    from neurorec.core.metrics import bits_per_spike
    from neurorec.datasets.open_field import simulate_open_field
    from neurorec.families.glm.rglm import SessionRGLM
    from neurorec.families.glm.session import SessionGLM
    from neurorec.spec import load_model_spec

    s = simulate_open_field(a.units, a.minutes * 60, trajectory="tanni", seed=a.seed,
                            start_s=1000.0)
    spec = load_model_spec("models/session_rglm.yaml", a.overrides)
    t0, c0 = time.perf_counter(), time.process_time()
    glm = SessionGLM(spec).fit(s)
    t1, c1 = time.perf_counter(), time.process_time()
    m = SessionRGLM(spec).fit(s, glm=glm)
    t2, c2 = time.perf_counter(), time.process_time()
    test, train = s.mask("test"), s.mask("train")
    y = s.counts[test][None]
    b_glm, b_rglm = glm.score(s), m.score(s)
    b_truth = bits_per_spike(y, s.truth["rates"][test][None])
    drive = glm.drive(s)
    oracle = np.exp(drive) * s.truth["gain"][:, None]
    oracle *= s.counts[train].sum() / oracle[train].sum()
    b_oracle = bits_per_spike(y, oracle[test][None])
    print(f"session: {a.units} units x {a.minutes:g} min (seed {a.seed}); spec overrides "
          f"{a.overrides}")
    print(f"held-out bits/spike: GLM {b_glm:.4f}, R-GLM {b_rglm:.4f}, truth {b_truth:.4f}, "
          f"GLM x true gain {b_oracle:.4f}")
    print(f"gap closed: {(b_rglm - b_glm) / (b_truth - b_glm):.1%} (oracle "
          f"{(b_oracle - b_glm) / (b_truth - b_glm):.1%})")
    print(f"fit: GLM {t1 - t0:.0f} s wall / {c1 - c0:.0f} s CPU; latent {t2 - t1:.0f} s wall / "
          f"{c2 - c1:.0f} s CPU ({m.report_['n_evals']} evaluations); R-GLM total "
          f"{t2 - t0:.0f} s wall / {c2 - c0:.0f} s CPU; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB; load "
          f"average {os.getloadavg()[0]:.1f}; latent time constants (s) "
          f"{np.round(m.time_constants()[1], 2).tolist()}")


if __name__ == "__main__":
    main()
