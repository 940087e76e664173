"""Memory estimate of a GLM / R-GLM fit (what ``neurorec fit`` checks before it starts)."""

from __future__ import annotations

# copies of the (trials × bins × units × features) design alive during one objective +
# gradient evaluation (drive terms, rate, NLL, einsum intermediates and their gradients).
# Calibrated on glm_v1.yaml, V1 session 0 (208 × 90 × 38, 8 feature planes): peak RSS grew
# by 428 MiB over the imported interpreter; 12 copies estimate 547 MiB (an upper bound).
ACTIVATION_COPIES = 12
# int64 counts, float64 copy for initialisation, train/validation subsets
COUNT_COPIES_BYTES = 32
LBFGS_HISTORY = 20


def glm_fit_memory(spec, shape: tuple[int, int, int, int]) -> dict[str, int]:
    """Peak memory, by part (bytes), of fitting a GLM-family ``spec`` to data of ``shape``
    (n_trials, n_bins, n_units, n_conditions)."""
    n_trials, n_bins, n_units, n_cond = shape
    fit = getattr(spec, "fit", None)
    item = 4 if getattr(fit, "dtype", "float64") == "float32" else 8
    cells = n_trials * n_bins * n_units

    def enabled(name: str) -> bool:
        part = getattr(spec, name, None)
        return part is not None and getattr(part, "enabled", True)

    k_hist = spec.history.n_basis if enabled("history") else 0
    k_coup = spec.coupling.n_basis if enabled("coupling") else 0
    k_stim = spec.stimulus.n_basis if enabled("stimulus") else 1
    rec = getattr(spec, "recurrent", None)
    dim = rec.dim if rec is not None else 0
    correlated = enabled("correlated") and getattr(spec.correlated, "enabled", False)
    n_params = (n_units * n_cond * k_stim + n_units * k_hist + n_units * n_units * k_coup
                + (n_units * n_units if correlated else 0) + 2 * dim * n_units + dim * dim)
    parts = {
        "counts": COUNT_COPIES_BYTES * cells,
        "design": item * cells * (1 + k_hist + k_coup),
        "autograd": item * ACTIVATION_COPIES * (cells * (1 + k_hist + k_coup)
                                                + 2 * n_trials * n_bins * dim),
        # each block's Gauss-Newton matrix, its Cholesky factor and inverse (preconditioner)
        "gram matrices": 3 * item * (n_units * (n_units * k_coup) ** 2
                                     + n_units * n_cond * k_stim ** 2 + n_units * k_hist ** 2
                                     + (n_units ** 3 if correlated else 0)),
        "L-BFGS": item * n_params * (2 * LBFGS_HISTORY + 8),
    }
    return parts


