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




# ---------------------------------------------------------------- sessions (issue 29)
#: units per chunk of the session GLM's Newton fit (SessionGLM's default ``chunk``)
SESSION_UNIT_CHUNK = 32
#: bins per streamed chunk of the session R-GLM's latent (rglm.SESSION_CHUNK_BINS)
SESSION_LATENT_CHUNK_BINS = 4096
#: non-zeros per design row of a covariate entry: order^2 (tensor), order (B-spline, cyclic)
#: and n_basis × columns for a raised-cosine lag filter (dense)


def _covariate_nnz(spec) -> tuple[int, int]:
    """(non-zeros per row, columns) of the spec's covariate design, bias included."""
    nnz, cols = 1, 1
    sizes: dict[str, tuple[int, int]] = {}
    for c in getattr(spec, "covariates", ()):
        n = c.n_basis if isinstance(c.n_basis, int) else None
        if c.basis == "tensor_bspline":
            nx, ny = (c.n_basis, c.n_basis) if n is not None else c.n_basis
            sizes[c.name] = (c.order ** 2, nx * ny)
        elif c.basis in ("bspline", "cyclic_bspline"):
            sizes[c.name] = (c.order, n)
        elif c.basis == "raised_cosine_lags":
            sizes[c.name] = (n, n)
        else:  # product of two earlier entries
            a, b = sizes.get(c.of[0], (1, 1)), sizes.get(c.of[1], (1, 1))
            sizes[c.name] = (a[0] * b[0], a[1] * b[1])
        nnz += sizes[c.name][0]
        cols += sizes[c.name][1]
    return nnz, cols


def session_fit_memory(spec, n_bins: int, n_units: int,
                       train_fraction: float = 0.8) -> dict[str, int]:
    """Peak memory, by part (bytes), of fitting a GLM-family ``spec`` to a session of
    ``n_bins`` bins × ``n_units`` units (``train_fraction`` of the bins fitted).

    Session GLM (:class:`~neurorec.families.glm.session.SessionGLM`): int64 counts; the
    row-sparse covariate design (values and columns per non-zero, on all bins and the
    training bins, plus the float32 pair products of each row's non-zeros); per chunk of 32
    units the own-history features (all bins, the training rows and a unit-major copy) and
    the Newton arrays (counts, η, μ, residual, the line search's trial η and μ, the step's
    η: 7 per unit and training bin); the bins × units drive and rates after the fit. Dense
    coupling (``coupling.enabled``) adds its bins × (units·k) features and a Gram, Cholesky
    and inverse of (units·k)² per unit. The R-GLM adds its GLM's drive in ``fit.dtype`` (and
    the float64 one it is converted from), one streamed chunk's temporaries and the
    bins × dim states; with ``recurrent.alternations`` the latent's bins × units drive held
    while the GLM's weights are refitted beside it.
    """
    n, u = int(n_bins), int(n_units)
    n_train = round(n * train_fraction)
    nnz, cols = _covariate_nnz(spec)

    def enabled(name: str) -> bool:
        part = getattr(spec, name, None)
        return part is not None and getattr(part, "enabled", True)

    k_hist = spec.history.n_basis if enabled("history") else 0
    k_coup = spec.coupling.n_basis if enabled("coupling") else 0
    chunk = min(u, SESSION_UNIT_CHUNK)
    parts = {
        "counts": 8 * n * u,
        "covariate design": 16 * nnz * (n + n_train) + 4 * (nnz * (nnz + 1) // 2) * n_train,
        "history features": 8 * k_hist * chunk * (n + 2 * n_train),
        "Newton arrays": 8 * chunk * n_train * (7 + k_hist),
        "drive and rates": 2 * 8 * n * u,
    }
    if k_coup:
        q = u * k_coup + cols + k_hist
        parts["dense coupling features"] = 8 * n * u * k_coup
        parts["dense coupling Gram"] = 3 * 8 * u * q * q
    rec = getattr(spec, "recurrent", None)
    if rec is not None:
        # the latent is fitted after the GLM: its arrays replace the GLM fit's (freed), so
        # the peak holds the larger of the two phases
        item = 4 if getattr(spec.fit, "dtype", "float64") == "float32" else 8
        latent = {"latent drive offset": item * n * u + (8 * n * u if item == 4 else 0),
                  "latent chunk": 12 * 8 * SESSION_LATENT_CHUNK_BINS * u,
                  "latent states": 2 * 8 * n * rec.dim}
        glm_phase = ("history features", "Newton arrays")
        if sum(latent.values()) > sum(parts[k] for k in glm_phase):
            for k in glm_phase:
                del parts[k]
            parts.update(latent)
        if getattr(rec, "alternations", 0):
            # the latent's b + B x_t (fit.dtype), held while the GLM's weights are refitted
            parts["latent drive (GLM refit)"] = item * n * u
    return parts
