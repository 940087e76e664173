"""Issue 28's self-consistency check on a session: fit a session spec, sample counts from the
fitted model in closed loop on the session's own covariates (Brian 2,
:func:`neurorec.families.glm.brian2_session.simulate_brian2_session`: each bin's count drawn
given the covariates and the counts drawn so far), and score the sample with the same model as
``neurorec evaluate`` scores a session (:func:`neurorec.workflows.evaluate.session_scores`:
time rescaling with the discrete-time correction on the test stretches). A model that
generated the data should leave >= 90 % of units inside the 95 % KS band.

(``export-nwb`` of a session fit writes spikes drawn from the fitted rates given the
*recorded* past, not a closed-loop sample, and no behaviour: hence this in-process check.)

    OMP_NUM_THREADS=1 python tools/session_self_consistency.py models/session_glm.yaml \\
        --data open_field --seed 3
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec", help="a session spec (models/session_glm.yaml, session_rglm.yaml)")
    ap.add_argument("--data", default="open_field", help="NWB session or bundled dataset")
    ap.add_argument("--seed", type=int, default=3, help="seed of the closed-loop sample")
    args = ap.parse_args()

    from neurorec.families.glm.brian2_session import simulate_brian2_session, with_counts
    from neurorec.spec import load_model_spec
    from neurorec.workflows.evaluate import session_scores
    from neurorec.workflows.session_fit import load_session_for, session_model

    spec = load_model_spec(args.spec)
    session = load_session_for(spec, args.data, 0)
    start = time.perf_counter()
    model = session_model(spec, seed=0).fit(session)
    fit_s = time.perf_counter() - start
    sample = with_counts(session, simulate_brian2_session(model, session, seed=args.seed))
    m = session_scores(sample.counts, model.predict_rate(sample),
                       np.asarray(sample.split).astype(str), np.asarray(sample.segment), {},
                       sample.unit_ids, seed=0).metrics
    print(json.dumps({"spec": args.spec, "data": args.data, "sample_seed": args.seed,
                      "fit_time_s": round(fit_s, 1),
                      "ks_fraction_in_band": m["ks_fraction_in_band"],
                      "ks_n_units_tested": m["ks_n_units_tested"],
                      "ks_failing_units": m["ks_failing_units"],
                      "bits_per_spike": m["bits_per_spike"]}))


if __name__ == "__main__":
    main()
