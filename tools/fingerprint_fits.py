"""Fingerprint of fitted numbers: the 12 GLM / R-GLM configurations refactors are checked on
(glm newton / corr / held-out / bias / l1 / bernoulli / gaussian / softplus, rglm warm / corr /
held-out / cold), plus PLDS, ctrnn_obs and the scikit-learn estimators, on the conformance
data (V1 session 14, 6 units). Writes every fitted parameter, held-out prediction, sample and
score to one NPZ; compare two NPZs (bitwise) with ``--compare A B``.

    PYTHONPATH=CHECKOUT python tools/fingerprint_fits.py --out A.npz
    python tools/fingerprint_fits.py --compare A.npz B.npz
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

COMMON = {"data": {"bin_size": "10 ms"}, "stimulus": {"n_basis": 6},
          "history": {"n_basis": 3, "duration": "50 ms"}, "penalty": {"l2": 1e-4},
          "fit": {"max_iter": 40, "early_stopping": False}}
CONFIGS = {
    "glm_newton": {"kind": "glm"},
    "glm_corr": {"kind": "glm", "correlated": {"enabled": True}},
    "glm_heldout": {"kind": "glm", "_heldout": True},
    "glm_bias": {"kind": "glm", "stimulus": {"enabled": False}},
    "glm_l1": {"kind": "glm", "penalty": {"l1": 1e-3, "l2": 1e-4}},
    "glm_bernoulli": {"kind": "glm", "observation": "bernoulli", "link": "logistic"},
    "glm_gaussian": {"kind": "glm", "observation": "gaussian", "link": "identity"},
    "glm_softplus": {"kind": "glm", "link": "softplus"},
    "rglm_warm": {"kind": "rglm", "recurrent": {"dim": 3}},
    "rglm_corr": {"kind": "rglm", "recurrent": {"dim": 3}, "correlated": {"enabled": True}},
    "rglm_heldout": {"kind": "rglm", "recurrent": {"dim": 3}, "_heldout": True},
    "rglm_cold": {"kind": "rglm", "recurrent": {"dim": 3, "warm_start": False}},
    "plds": {"kind": "plds", "data": {"bin_size": "10 ms"}, "stimulus": {"n_basis": 6},
             "latent": {"dim": 2}, "fit": {"max_iter": 5, "m_step_iter": 20}, "_plain": True},
    "ctrnn_obs": {"kind": "ctrnn_obs", "data": {"bin_size": "10 ms"},
                  "network": {"n_units": 6, "tau": "20 ms", "dt": "10 ms"},
                  "input": {"onset": "200 ms"},
                  "training": {"n_steps": 40, "batch_size": 16, "validate_every": 10,
                               "patience": 3}, "_plain": True},
}


def _merge(base: dict, extra: dict) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for k, v in extra.items():
        out[k] = {**out[k], **v} if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _flat(prefix: str, value, out: dict) -> None:
    import torch

    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}", v, out)
    elif isinstance(value, torch.Tensor):
        out[prefix] = value.detach().cpu().numpy()
    elif isinstance(value, np.ndarray | float | int):
        out[prefix] = np.asarray(value)


def fingerprint() -> dict[str, np.ndarray]:
    import torch

    from neurorec.data.recording import TrialLayout
    from neurorec.families.base import model_for
    from neurorec.families.glm.conformance import v1_small
    from neurorec.spec.load import validate_spec

    torch.set_num_threads(1)
    train, test = v1_small()
    out: dict[str, np.ndarray] = {}
    for name, extra in CONFIGS.items():
        extra = dict(extra)
        heldout, plain = extra.pop("_heldout", False), extra.pop("_plain", False)
        spec = validate_spec(extra if plain else _merge(COMMON, extra), name)
        model = model_for(spec, seed=0)
        if heldout:
            model.heldout = np.arange(train.counts.shape[2]) >= 4
        model.fit(train, progress=False)
        _flat(f"{name}.params", getattr(model, "params_", None) or {}, out)
        _flat(f"{name}.state", {k: v for k, v in model.learned_state().items()
                                if k in ("module_", "params_")}, out)
        out[f"{name}.rates"] = model.predict_rate(test)
        out[f"{name}.score"] = np.asarray(model.score(test))
        out[f"{name}.n_parameters"] = np.asarray(model.n_parameters())
        try:
            out[f"{name}.sample"] = model.sample(4, seed=1, like=TrialLayout(test.condition, 20))
        except Exception as exc:  # a configuration that cannot sample: recorded as such
            out[f"{name}.sample_error"] = np.asarray(type(exc).__name__)
    from neurorec import sklearn as sk

    X = np.random.default_rng(0).standard_normal((400, 5))
    y = np.random.default_rng(1).poisson(np.exp(0.3 * X[:, 0] - 0.2 * X[:, 1]))
    for cls, target in (("PoissonGLM", y), ("BernoulliGLM", (y > 0).astype(int))):
        est = getattr(sk, cls)(alpha=1e-3).fit(X, target)
        out[f"sklearn.{cls}.coef"] = np.asarray(est.coef_)
        out[f"sklearn.{cls}.intercept"] = np.asarray(est.intercept_)
        out[f"sklearn.{cls}.predict"] = np.asarray(est.predict(X))
    Y = np.random.default_rng(2).poisson(0.5, size=(300, 3))
    r = sk.RGLM(dim=2, alpha=1e-3, max_iter=30).fit(X[:300], Y)
    out["sklearn.RGLM.predict"] = np.asarray(r.predict(X[:300]))
    out["sklearn.RGLM.bits"] = np.asarray(r.bits_per_spike(X[:300], Y))
    return out


def compare(a: str, b: str) -> int:
    A, B = np.load(a), np.load(b)
    bad = 0
    for k in sorted(set(A.files) | set(B.files)):
        if k not in A.files or k not in B.files:
            print(f"{k}: only in {'B' if k not in A.files else 'A'}")
            bad += 1
        elif A[k].shape != B[k].shape or not np.array_equal(A[k], B[k], equal_nan=True):
            diff = (np.abs(A[k].astype(float) - B[k].astype(float)).max()
                    if A[k].shape == B[k].shape and A[k].dtype.kind in "fiu" else "shape")
            print(f"{k}: differs (max abs {diff})")
            bad += 1
    print(f"{len(A.files)} arrays, {bad} differ")
    return int(bad > 0)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--compare", nargs=2)
    args = ap.parse_args()
    if args.compare:
        sys.exit(compare(*args.compare))
    np.savez(args.out, **fingerprint())
