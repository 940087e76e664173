"""Batched Newton (IRLS) for many per-unit Poisson / Bernoulli regressions sharing one design.

Every unit ``u`` of ``Y`` (n_rows, n_units) gets its own coefficient vector ``w_u`` and its own
penalised objective

    f_u(w_u) = sum_n NLL(y_nu, eta_nu) + sum_j l2_uj w_uj^2,
    eta_nu  = X[n] @ w_u[:P] + unit_X[n, u] @ w_u[P:] + offset[n, u],

minimised by damped Newton: all units' Hessians in one batched pass over the shared design,
one batched Cholesky solve, then a backtracking (Armijo) line search per unit. Units that have
converged are frozen and dropped from later Hessian passes.

Observation models (``observation``: an object of :mod:`neurorec.core.observations`, which owns
the NLL, its derivatives in the drive and the link; or a name with ``link``):

* ``poisson``/``exp``: canonical; curvature weights ``mu``; NLL includes ``log y!`` so that the
  reported objective is the exact negative log-likelihood (statsmodels' ``-llf``) plus penalty.
* ``poisson``/``softplus``: ``mu = log(1 + e^eta)``. The exact Hessian of the NLL with respect to
  ``eta`` is used: its weights ``s(1-s) + y s^2/mu^2 - y s(1-s)/mu`` (``s = sigmoid(eta)``) are
  >= 0 because ``log softplus`` is concave (``softplus(x) <= e^x``), so the exact Hessian is PSD
  and keeps Newton's quadratic convergence; Fisher scoring (``s^2/mu``) would converge only
  linearly. Weights are clamped at 0 against round-off.
* ``bernoulli``/``logistic`` (alias ``logit``): canonical; weights ``p(1-p)``.

Convergence (per unit, tested at the current iterate ``w`` with its Newton step ``d``):
``lambda^2 / 2 <= tol * max(1, |f_u|)`` where ``lambda^2 = -g.d = g' H^-1 g`` is the Newton
decrement (an affine-invariant estimate of ``2 (f_u(w) - min f_u)``, i.e. the predicted relative
objective gap), AND ``max|g| <= sqrt(tol) * max(1, |f_u| / n_rows)`` (gradient of the summed
NLL, scaled by the mean NLL per row). A unit that passes still takes that last Newton step
(so the returned point is one quadratic step beyond the test) and is then frozen. A unit whose
line search finds no decrease in 50 halvings while not passing the test stops as not
converged (round-off floor); so do units still running at ``max_iter``.

Separation (e.g. a condition in which a unit never fires): with ``l2 > 0`` on those columns the
minimum is finite and attained. With ``l2 = 0`` the infimum is approached as the coefficients
go to -inf; every Newton step then moves them by about -1 and the objective gap shrinks
geometrically, so the unit either meets the tests above with large negative (finite)
coefficients or stops at ``max_iter`` as not converged; nothing overflows (the line search
rejects non-finite objectives).

Structure: a stimulus block "one-hot(condition) ⊗ basis" with trial-major rows
(``row = trial * n_bins + bin``) has a block-diagonal Gram, one (K × K) block per condition:
``S' diag(sum_{trials j of c} w[j, :]) S``. Pass it as ``blocks=StimulusBlock(...)``: its part of
each Hessian then costs O(n_rows · n_units) (sum the weights over trials of each condition)
instead of O(n_rows · n_cols^2 · n_units); cross terms with the other (dense or per-unit)
columns are summed over trials per condition and bin first, then multiplied by the basis.
``X`` must still hold the block's columns: they are checked against the block once; the fit
then uses the structure for the linear predictor (``S w_c`` gathered by condition) and the
gradient (``S'`` times the residuals summed over the condition's trials) as well.

Measured (this 2-core CPU, torch 2.13 CPU, float64, ``tol=1e-10``, default start; stimulus
only, one-hot(direction) ⊗ ``raised_cosine_linear(90, K)``, training trials of
``bin_trials(rec, 0.01, test_fraction=0.2, seed=0)``, units with > 5 basis-weighted spikes
in every column; the machine was shared with other jobs, load average 6-11 on 2 cores, so
absolute times are inflated and noisy):

==========================================  ============  =========  ==========  ===========
data                                        blocks (1 th)  dense      statsmodels  coef diff
==========================================  ============  =========  ==========  ===========
session 3, K=6: 48 960 × 96, 14 units         0.36-0.64 s    10.4 s     752 s [*]    1.9e-9
session 3, K=8: 48 960 × 128, 13 units        0.43-0.76 s    16.5 s
session 14, K=6: 11 520 × 96, 2 units          0.063 s       0.49 s     4.6 s        2.5e-9
session 14, K=3: 11 520 × 48, 8 units          0.094 s       0.52 s     4.6 s        1.3e-9
==========================================  ============  =========  ==========  ===========

8 Newton iterations for session 3 (7 for session 14); "coef diff" is the max over units of
``max|w - w_sm| / max|w_sm|`` against ``sm.GLM(y, X, Poisson()).fit()``. [*] 2 threads at
load average ~8 (in the same run this module took 4.2 s with blocks and 13.5 s dense, i.e.
OpenMP threads contending for busy cores); benchmarks/README.md reports statsmodels at
39.7 s for the same 14-unit session-3 fit on a quiet machine. Apart from [*], every time is
with 1 torch / BLAS thread; best of 5 (ranges: separate runs) for blocks, one run for dense
and statsmodels. The dense path spends
nearly all its time in the per-unit Grams (n · P² · units multiply-adds per iteration); the
stimulus block removes that term, leaving O(n · units) work per iteration.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from neurorec.core.observations import Observation, make_observation

__all__ = ["NewtonResult", "StimulusBlock", "fit_batched_glm"]

_CHUNK_BYTES = 256 * 2**20  # bound on the temporaries of one Hessian pass
_ARMIJO = 1e-4  # sufficient-decrease constant of the line search
_MAX_HALVINGS = 50  # step 2^-50 ~ 1e-15: below that no decrease is round-off
_MAX_RIDGE_TRIES = 40  # ridge grows 10x per try from 1e-12 · max diag


@dataclass
class NewtonResult:
    """Result of :func:`fit_batched_glm`.

    Attributes:
        coef: (n_units, n_cols) coefficients; ``n_cols = X.shape[1] + n_extra``; masked
            entries are exactly 0.
        n_iter: Newton iterations (Hessian passes) run.
        converged: (n_units,) bool, the test in the module docstring passed.
        objective: (n_units,) final penalised objective, sum NLL (Poisson incl. ``log y!``)
            plus ``sum_j l2_j w_j^2``.
        grad_norm: (n_units,) max |gradient of the penalised objective| over free columns.
        history: total objective (sum over units) at the start and after each iteration.
    """

    coef: torch.Tensor
    n_iter: int
    converged: torch.Tensor
    objective: torch.Tensor
    grad_norm: torch.Tensor
    history: list[float]


@dataclass
class StimulusBlock:
    """A column group ``one-hot(condition) ⊗ basis`` of a design with trial-major rows.

    Row ``trial * n_bins + t`` has, in columns ``start + c * K + k``, the value ``basis[t, k]``
    if ``condition[trial] == c`` and 0 otherwise (``K = basis.shape[1]``).

    Attributes:
        condition: (n_trials,) int, condition index of each trial, in [0, n_conditions).
        basis: (n_bins, K) temporal basis.
        n_conditions: number of conditions; default ``condition.max() + 1``.
        start: first column of the block in ``X``.
    """

    condition: torch.Tensor
    basis: torch.Tensor
    n_conditions: int | None = None
    start: int = 0

    def __post_init__(self) -> None:
        self.condition = torch.as_tensor(self.condition).to(torch.int64)
        self.basis = torch.as_tensor(self.basis)
        if self.condition.ndim != 1 or self.basis.ndim != 2:
            raise ValueError("StimulusBlock: condition must be 1-D and basis 2-D, got "
                             f"{tuple(self.condition.shape)} and {tuple(self.basis.shape)}")
        if self.n_conditions is None:
            self.n_conditions = int(self.condition.max()) + 1 if len(self.condition) else 0
        if len(self.condition) and (int(self.condition.min()) < 0
                                    or int(self.condition.max()) >= self.n_conditions):
            raise ValueError(f"StimulusBlock: condition values must lie in [0, "
                             f"{self.n_conditions})")

    @property
    def n_cols(self) -> int:
        return int(self.n_conditions) * self.basis.shape[1]

    @property
    def n_rows(self) -> int:
        return len(self.condition) * self.basis.shape[0]

    @property
    def columns(self) -> slice:
        return slice(self.start, self.start + self.n_cols)

    def design(self, dtype: torch.dtype = torch.float64,
               device: torch.device | str | None = None) -> torch.Tensor:
        """The block's dense columns, (n_trials * n_bins, n_conditions * K)."""
        n_trials, (n_bins, k) = len(self.condition), self.basis.shape
        out = torch.zeros(n_trials, n_bins, int(self.n_conditions), k, dtype=dtype, device=device)
        out[torch.arange(n_trials, device=device), :, self.condition.to(device), :] = (
            self.basis.to(device=device, dtype=dtype))
        return out.reshape(n_trials * n_bins, -1)


# ---------------------------------------------------------------------------------------------
# observation models: the objects of neurorec.core.observations own the NLL, its derivatives
# in the drive and the link (``nll_kernel``, ``nll_constant``, ``derivatives``,
# ``drive_of_mean``); this module only sums them over rows


def _observation(observation: str | Observation, link: str) -> Observation:
    """The observation object of ``observation`` (an object, or a name with ``link``)."""
    if isinstance(observation, str):
        key = f"{observation}/{'logistic' if link == 'logit' else link}"
        if key not in ("poisson/exp", "poisson/softplus", "bernoulli/logistic"):
            raise ValueError(f"fit_batched_glm: observation/link {observation}/{link} not "
                             "supported; use poisson/exp, poisson/softplus or bernoulli/logistic")
        observation = make_observation(observation, None if key == "bernoulli/logistic"
                                       else link)
    check = getattr(observation, "check_newton", None)
    if check is None:
        raise ValueError(f"fit_batched_glm: observation {observation.name} has no Newton form; "
                         "use poisson or bernoulli")
    try:
        check()
    except ValueError as err:
        raise ValueError(f"fit_batched_glm: {err}") from None
    return observation


def _nll(obs: Observation, eta: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(k,) summed NLL of eta, y (k, n) without the data-only constant; NaN becomes +inf."""
    out = obs.nll_kernel(y, eta).sum(1)
    return torch.where(torch.isnan(out), torch.full_like(out, math.inf), out)


# ---------------------------------------------------------------------------------------------
# Hessian pass


def _gram(c: torch.Tensor, X_rest: torch.Tensor, UX: torch.Tensor | None,
          block: StimulusBlock | None, order_inv: torch.Tensor) -> torch.Tensor:
    """Per-unit weighted Grams ``[X, UX_u]' diag(c[u]) [X, UX_u]``.

    Args:
        c: (Ua, n) curvature weights.
        X_rest: (n, R) the columns of X not in ``block`` (all of X without a block).
        UX: (n, Ua, E) per-unit extra columns, or None.
        block: the stimulus block (tensors on c's device and dtype), or None.
        order_inv: (Q,) position of each result column in the order [block, rest, extra].

    Returns:
        (Ua, Q, Q), ``Q = P + E``.
    """
    ua = c.shape[0]
    r_cols = X_rest.shape[1]
    e_cols = 0 if UX is None else UX.shape[2]
    d_cols = r_cols + e_cols
    rr = c.new_zeros(ua, r_cols, r_cols)
    re = c.new_zeros(ua, r_cols, e_cols)
    ee = c.new_zeros(ua, e_cols, e_cols)
    if d_cols:
        # dense columns: one GEMM per unit on the weighted copy of the design. Measured on
        # 2 cores (48 960 × 96, 14 units): 1.4 s per pass here vs 1.6 s for
        # einsum("nu,ni,nj->uij"), 2.0 s for one GEMM on the units-folded product and 3.2 s
        # for einsum("un,ni,nj->uij") (the batched forms are memory-bound); the temporary is
        # one (n, R) array whatever the number of units
        if r_cols:
            z = torch.empty_like(X_rest)
            for u in range(ua):
                torch.mul(X_rest, c[u][:, None], out=z)
                torch.mm(z.T, X_rest, out=rr[u])
        if e_cols:
            # per-unit columns: all units in two batched products, (Ua, E, n) @ (Ua, n, E)
            # and one GEMM X_rest' (c ∘ UX) for the cross terms
            wux = UX * c.T[:, :, None]  # (n, Ua, E)
            ee = torch.bmm(wux.permute(1, 2, 0), UX.permute(1, 0, 2))
            if r_cols:
                re = (X_rest.T @ wux.reshape(-1, ua * e_cols)).reshape(r_cols, ua, e_cols)
                re = re.permute(1, 0, 2)
    if block is None:
        full = torch.cat([torch.cat([rr, re], 2), torch.cat([re.transpose(1, 2), ee], 2)], 1)
        return full[:, order_inv][:, :, order_inv]
    S = block.basis  # (T, K)
    t_bins, k = S.shape
    n_cond = int(block.n_conditions)
    cond = block.condition
    c3 = c.reshape(ua, -1, t_bins)  # (Ua, trials, T): rows are trial-major
    # block-diagonal part: S' diag(sum over the condition's trials of c) S for each condition
    wsum = c.new_zeros(ua, n_cond, t_bins).index_add_(1, cond, c3)
    ss = (S[:, :, None] * S[:, None, :]).reshape(t_bins, k * k)
    bb = (wsum @ ss).reshape(ua, n_cond, k, k)
    hbb = c.new_zeros(ua, n_cond, k, n_cond, k)
    ar = torch.arange(n_cond, device=c.device)
    hbb[:, ar, :, ar, :] = bb.transpose(0, 1)  # the advanced indices' dim goes first: (C, Ua, ..)
    hbb = hbb.reshape(ua, n_cond * k, n_cond * k)
    hbd = c.new_zeros(ua, n_cond * k, d_cols)
    if d_cols:
        # cross terms: M[u, c, t, d] = sum over trials j of condition c of c[u, j, t] x[j, t, d],
        # then the basis: sum_t S[t, k] M[u, c, t, d]. Per condition, one batched product
        # over bins, (T, Ua, n_c) @ (T, n_c, R): ~2·Ua·n·R flops in all (measured 0.05 s for
        # 51 840 rows × 79 columns × 25 units, against 16 s for a scatter-add of the
        # elementwise products)
        m = c.new_zeros(ua, n_cond, t_bins, d_cols)
        x3 = X_rest.reshape(-1, t_bins, r_cols) if r_cols else None
        u4 = None if UX is None else UX.reshape(-1, t_bins, ua, e_cols)
        if r_cols:
            for cc in range(n_cond):
                idx = torch.nonzero(cond == cc).flatten()
                if len(idx):
                    m[:, cc, :, :r_cols] = torch.bmm(c3[:, idx, :].permute(2, 0, 1),
                                                     x3[idx].permute(1, 0, 2)).permute(1, 0, 2)
        if e_cols:  # (trials, T, Ua, E) products summed over each condition's trials
            prod = c3.permute(1, 2, 0)[..., None] * u4
            sums = prod.new_zeros(n_cond, t_bins, ua, e_cols).index_add_(0, cond, prod)
            m[:, :, :, r_cols:] = sums.permute(2, 0, 1, 3)
        hbd = torch.einsum("tk,uctd->uckd", S, m).reshape(ua, n_cond * k, d_cols)
    full = torch.cat([
        torch.cat([hbb, hbd], 2),
        torch.cat([hbd[:, :, :r_cols].transpose(1, 2), rr, re], 2),
        torch.cat([hbd[:, :, r_cols:].transpose(1, 2), re.transpose(1, 2), ee], 2),
    ], 1)
    return full[:, order_inv][:, :, order_inv]


def _newton_direction(H: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """-H^-1 g per unit; Cholesky, with a growing ridge for the units where it fails."""
    L, info = torch.linalg.cholesky_ex(H)
    bad = info != 0
    scale = torch.diagonal(H, dim1=-2, dim2=-1).abs().amax(-1).clamp_min(1.0)
    if bool(bad.any()):
        eye = torch.eye(H.shape[-1], dtype=H.dtype, device=H.device)
        tau = 1e-12 * scale
        for _ in range(_MAX_RIDGE_TRIES):
            idx = bad.nonzero().flatten()
            Lb, ib = torch.linalg.cholesky_ex(H[idx] + tau[idx, None, None] * eye)
            ok = ib == 0
            L[idx[ok]] = Lb[ok]
            bad[idx[ok]] = False
            tau = tau * 10.0
            if not bool(bad.any()):
                break
    d = -torch.cholesky_solve(g[:, :, None], L)[:, :, 0]
    if bool(bad.any()):  # nothing factorised (non-finite H): a scaled gradient step
        d[bad] = -g[bad] / scale[bad, None]
    return torch.where(torch.isfinite(d), d, torch.zeros_like(d))


# ---------------------------------------------------------------------------------------------
# input checks


def _per_unit(value, n_units: int, n_cols: int, name: str, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(value).to(dtype=like.dtype, device=like.device)
    if t.ndim == 0 or t.shape == (n_cols,):
        return t.expand(n_units, n_cols).clone()
    if t.shape == (n_units, n_cols):
        return t.clone()
    raise ValueError(f"fit_batched_glm: {name}: expected a scalar, ({n_cols},) or "
                     f"({n_units}, {n_cols}), got {tuple(t.shape)}")


def _single_block(blocks, X: torch.Tensor) -> StimulusBlock | None:
    if blocks is None:
        return None
    items = [blocks] if isinstance(blocks, StimulusBlock) else list(blocks)
    if not items:
        return None
    if len(items) > 1:
        raise NotImplementedError("fit_batched_glm: blocks: only one StimulusBlock is supported")
    b = items[0]
    if not isinstance(b, StimulusBlock):
        raise TypeError(f"fit_batched_glm: blocks: expected StimulusBlock, got {type(b)}")
    n, p = X.shape
    if b.n_rows != n or b.start < 0 or b.start + b.n_cols > p:
        raise ValueError(f"fit_batched_glm: blocks: the block ({b.n_rows} rows, columns "
                         f"{b.start}..{b.start + b.n_cols}) does not fit X of shape {(n, p)}")
    block = StimulusBlock(b.condition.to(X.device), b.basis.to(device=X.device, dtype=X.dtype),
                          b.n_conditions, b.start)
    # the fast Hessian is only right if X really has this structure: check it (O(n · cols))
    if not torch.equal(X[:, block.columns], block.design(X.dtype, X.device)):
        raise ValueError("fit_batched_glm: blocks: X's columns "
                         f"{block.start}..{block.start + block.n_cols} are not one-hot(condition)"
                         " ⊗ basis with trial-major rows (row = trial * n_bins + bin)")
    return block


# ---------------------------------------------------------------------------------------------


def _block_order(blocks, X: torch.Tensor, q: int):
    """The single stimulus block of ``X`` (or None), the columns outside it and the column
    order ``[block | rest | unit columns p..q)`` the Gram is assembled in."""
    p, dev = X.shape[1], X.device
    block = _single_block(blocks, X)
    if block is None:
        return None, torch.arange(p, device=dev), torch.arange(q, device=dev)
    in_block = torch.zeros(p, dtype=torch.bool, device=dev)
    in_block[block.columns] = True
    rest = (~in_block).nonzero().flatten()
    order = torch.cat([torch.arange(block.start, block.start + block.n_cols, device=dev),
                       rest, torch.arange(p, q, device=dev)])
    return block, rest, order


def fit_batched_glm(
    X: torch.Tensor,
    Y: torch.Tensor,
    *,
    observation: str | Observation = "poisson",
    link: str = "exp",
    l2: float | torch.Tensor = 0.0,
    mask: torch.Tensor | None = None,
    offset: torch.Tensor | None = None,
    coef0: torch.Tensor | None = None,
    unit_X: torch.Tensor | None = None,
    tol: float = 1e-10,
    max_iter: int = 100,
    blocks: StimulusBlock | Sequence[StimulusBlock] | None = None,
    progress: bool = False,
) -> NewtonResult:
    """Fit one penalised GLM per column of ``Y`` on the shared design ``X`` by Newton's method.

    Computation runs on ``X``'s device in ``X``'s dtype (integer X becomes float64; use
    float64: float32 cannot reach the default ``tol``); the other tensors are moved there.

    Args:
        X: (n_rows, P) shared design.
        Y: (n_rows, n_units) counts (Bernoulli: values in [0, 1], normally 0/1).
        observation, link: a Poisson (no rate ceiling) or Bernoulli observation object
            (``link`` is then ignored), or the names ``poisson``/``exp``,
            ``poisson``/``softplus``, ``bernoulli``/``logistic`` (module docstring).
        l2: scalar, (n_cols,) or (n_units, n_cols) ridge weights >= 0: the penalty
            ``sum_j l2_j w_j^2`` is added to the unit's summed NLL as is (no rescaling);
            zero entries leave columns unpenalised. ``n_cols = P + n_extra``.
        mask: (n_units, n_cols) bool, True where the unit uses the column; the other
            coefficients are held at exactly 0 (zero gradient, identity Hessian rows/columns).
        offset: (n_rows, n_units) fixed drive added to the linear predictor.
        coef0: (n_units, n_cols) start (masked entries are set to 0); default: per unit, the
            lower-objective of 0 and the least-squares solution of
            ``X w = link(mean(y_u)) - offset_u`` (an intercept-like start).
        unit_X: (n_rows, n_units, n_extra) per-unit columns, appended after X's for unit u.
        tol: convergence tolerance (module docstring).
        max_iter: most Newton iterations.
        blocks: a :class:`StimulusBlock` (or a list holding one) describing a
            one-hot ⊗ basis column group of X, for the fast Hessian; it is checked against X.
        progress: a bar on stderr, one step per Newton iteration (units still active).

    Returns:
        :class:`NewtonResult`.
    """
    X = torch.as_tensor(X)
    if not X.is_floating_point():
        X = X.to(torch.float64)
    dev, dt = X.device, X.dtype
    Y = torch.as_tensor(Y).to(device=dev, dtype=dt)
    if X.ndim != 2 or Y.ndim != 2 or Y.shape[0] != X.shape[0]:
        raise ValueError(f"fit_batched_glm: X (n_rows, P) and Y (n_rows, n_units) expected, got "
                         f"{tuple(X.shape)} and {tuple(Y.shape)}")
    obs = _observation(observation, link)
    n, p = X.shape
    n_units = Y.shape[1]
    obs.check_response(Y, "fit_batched_glm: Y")
    UX = None
    if unit_X is not None:
        UX = torch.as_tensor(unit_X).to(device=dev, dtype=dt)
        if UX.ndim != 3 or UX.shape[:2] != (n, n_units):
            raise ValueError(f"fit_batched_glm: unit_X: expected ({n}, {n_units}, n_extra), got "
                             f"{tuple(UX.shape)}")
    q = p + (0 if UX is None else UX.shape[2])
    lam = _per_unit(l2, n_units, q, "l2", X)
    if bool((lam < 0).any()):
        raise ValueError("fit_batched_glm: l2: must be >= 0")
    if mask is None:
        free = torch.ones(n_units, q, dtype=dt, device=dev)
    else:
        m = torch.as_tensor(mask, device=dev)
        if m.shape != (n_units, q):
            raise ValueError(f"fit_batched_glm: mask: expected ({n_units}, {q}), got "
                             f"{tuple(m.shape)}")
        free = m.to(torch.bool).to(dt)
    off = None
    if offset is not None:
        off = torch.as_tensor(offset).to(device=dev, dtype=dt)
        if off.shape != (n, n_units):
            raise ValueError(f"fit_batched_glm: offset: expected ({n}, {n_units}), got "
                             f"{tuple(off.shape)}")
        off = off.T.contiguous()
    block, rest, order = _block_order(blocks, X, q)
    order_inv = torch.argsort(order)
    X_rest = X[:, rest]
    # unit-major layout (unit, row): selecting the active units is then a contiguous gather
    Yt = Y.T.contiguous()
    const = obs.nll_constant(Yt).sum(1)
    ops = _Ops(obs, X, block, X_rest, rest)

    if coef0 is not None:
        W = torch.as_tensor(coef0).to(device=dev, dtype=dt).clone()
        if W.shape != (n_units, q):
            raise ValueError(f"fit_batched_glm: coef0: expected ({n_units}, {q}), got "
                             f"{tuple(W.shape)}")
        W = W * free
        eta = ops.eta(W, UX, off)
        f = ops.objective(eta, W, Yt, lam)
    else:
        W, eta, f = _start(ops, Yt, UX, off, lam, free, block, X_rest, order_inv[:p], q)
    r, c = obs.derivatives(Yt, eta)
    g = ops.gradient(r, W, UX, lam, free)
    history = [float((f + const).sum())]
    converged = torch.zeros(n_units, dtype=torch.bool, device=dev)
    # the active units' state; frozen units are dropped from it
    idx = torch.arange(n_units, device=dev)
    Wa, ea, fa, ga, ca, ya, uxa, lama, fma = W, eta, f, g, c, Yt, UX, lam, free
    n_iter = 0
    from tqdm.auto import tqdm

    bar = tqdm(total=max_iter, desc="newton", unit="it", disable=not progress,
               file=sys.stderr, leave=False)  # one Hessian pass over all units per iteration
    for _ in range(max_iter):
        if len(idx) == 0:
            break
        n_iter += 1
        bar.update()
        bar.set_postfix_str(f"{len(idx)} of {n_units} units active")
        H = _gram(ca, X_rest, uxa, block, order_inv) + torch.diag_embed(2.0 * lama)
        H = H * fma[:, :, None] * fma[:, None, :] + torch.diag_embed(1.0 - fma)
        d = _newton_direction(H, ga) * fma
        gd = (ga * d).sum(1)  # = -lambda^2 <= 0
        passed = (-0.5 * gd <= tol * fa.abs().clamp_min(1.0)) & (
            ga.abs().amax(1) <= math.sqrt(tol) * (fa.abs() / n).clamp_min(1.0))
        # backtracking per unit: the units still searching halve their steps together
        xd = ops.eta(d, uxa, None)
        step = torch.ones_like(fa)
        accepted = torch.zeros_like(passed)
        e_new, f_new = ea + xd, ops.objective(ea + xd, Wa + d, ya, lama)
        ok = torch.isfinite(f_new) & (f_new <= fa + _ARMIJO * gd)
        accepted |= ok
        for _ in range(_MAX_HALVINGS - 1):
            pend = (~accepted).nonzero().flatten()
            if len(pend) == 0:
                break
            step[pend] *= 0.5
            sp = step[pend, None]
            e_try = ea[pend] + sp * xd[pend]
            f_try = ops.objective(e_try, Wa[pend] + sp * d[pend], ya[pend], lama[pend])
            ok = torch.isfinite(f_try) & (f_try <= fa[pend] + _ARMIJO * sp[:, 0] * gd[pend])
            accepted[pend[ok]] = True
            e_new[pend[ok]], f_new[pend[ok]] = e_try[ok], f_try[ok]
        step = torch.where(accepted, step, torch.zeros_like(step))
        if bool(accepted.all()):
            Wa, ea, fa = Wa + step[:, None] * d, e_new, f_new
            ra, ca = obs.derivatives(ya, ea)
            ga = ops.gradient(ra, Wa, uxa, lama, fma)
        else:
            mv = accepted.nonzero().flatten()
            Wa, ea, fa, ga, ca = Wa.clone(), ea.clone(), fa.clone(), ga.clone(), ca.clone()
            if len(mv):  # no unit accepted a step: nothing moved (the blocked design's
                # gradient cannot take zero units)
                Wa[mv] = Wa[mv] + step[mv, None] * d[mv]
                ea[mv], fa[mv] = e_new[mv], f_new[mv]
                rm, ca[mv] = obs.derivatives(ya[mv], ea[mv])
                ga[mv] = ops.gradient(rm, Wa[mv], None if uxa is None else uxa[:, mv],
                                      lama[mv], fma[mv])
        W[idx], f[idx], g[idx] = Wa, fa, ga
        history.append(float((f + const).sum()))
        converged[idx[passed]] = True
        stop = passed | ~accepted  # a unit with no decrease in 50 halvings is stalled
        if bool(stop.any()):
            keep = ~stop
            idx = idx[keep]
            Wa, ea, fa, ga, ca, ya, lama, fma = (
                t[keep] for t in (Wa, ea, fa, ga, ca, ya, lama, fma))
            uxa = None if uxa is None else uxa[:, keep]
    bar.close()
    return NewtonResult(coef=W, n_iter=n_iter, converged=converged, objective=f + const,
                        grad_norm=g.abs().amax(1) if q else f.new_zeros(n_units),
                        history=history)


class _Ops:
    """Linear predictor, objective and gradient for a subset of units (unit-major tensors).

    With a stimulus block, ``X w`` and ``X' r`` over the block's columns use its structure:
    ``(S w_c)[t]`` gathered by each trial's condition, and ``S' (sum over the condition's
    trials of r)``: O(n · units) instead of O(n · cols · units).
    """

    def __init__(self, obs: Observation, X: torch.Tensor, block: StimulusBlock | None,
                 X_rest: torch.Tensor, rest: torch.Tensor) -> None:
        self.obs, self.X, self.p = obs, X, X.shape[1]
        self.block, self.X_rest, self.rest = block, X_rest, rest

    def x_times(self, W: torch.Tensor) -> torch.Tensor:
        """(k, n) = W[:, :P] @ X'."""
        b = self.block
        if b is None:
            return W[:, :self.p] @ self.X.T
        k = W.shape[0]
        wb = W[:, b.columns].reshape(k, int(b.n_conditions), -1)
        per_cond = torch.einsum("tk,uck->uct", b.basis, wb)  # (k, C, T)
        out = per_cond[:, b.condition, :].reshape(k, -1)
        if len(self.rest):
            out = torch.addmm(out, W[:, self.rest], self.X_rest.T)
        return out

    def xt_times(self, r: torch.Tensor) -> torch.Tensor:
        """(k, P) = r @ X for r (k, n)."""
        b = self.block
        if b is None:
            return r @ self.X
        k, t_bins = r.shape[0], b.basis.shape[0]
        g = r.new_empty(k, self.p)
        rs = r.new_zeros(k, int(b.n_conditions), t_bins).index_add_(
            1, b.condition, r.reshape(k, -1, t_bins))
        g[:, b.columns] = torch.einsum("uct,tk->uck", rs, b.basis).reshape(k, -1)
        if len(self.rest):
            g[:, self.rest] = r @ self.X_rest
        return g

    def eta(self, W: torch.Tensor, UX: torch.Tensor | None,
            off: torch.Tensor | None) -> torch.Tensor:
        """(k, n) from W (k, q), UX (n, k, E) and off (k, n)."""
        eta = self.x_times(W)
        if UX is not None:
            eta = eta + torch.einsum("nue,ue->un", UX, W[:, self.p:])
        if off is not None:
            eta = eta + off
        return eta

    def objective(self, eta: torch.Tensor, W: torch.Tensor, y: torch.Tensor,
                  lam: torch.Tensor) -> torch.Tensor:
        """(k,) summed NLL (without constants) plus the ridge penalty."""
        return _nll(self.obs, eta, y) + (lam * W * W).sum(1)

    def gradient(self, r: torch.Tensor, W: torch.Tensor, UX: torch.Tensor | None,
                 lam: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
        """(k, q) gradient of the objective from r = dNLL/deta (k, n); 0 on masked columns."""
        g = torch.empty_like(W)
        g[:, :self.p] = self.xt_times(r)
        if UX is not None:
            g[:, self.p:] = torch.einsum("nue,un->ue", UX, r)
        return (g + 2.0 * lam * W) * free


def _start(ops: _Ops, Yt: torch.Tensor, UX: torch.Tensor | None, off: torch.Tensor | None,
           lam: torch.Tensor, free: torch.Tensor, block: StimulusBlock | None,
           X_rest: torch.Tensor, order_x: torch.Tensor,
           q: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per unit the lower-objective of 0 and the least-squares intercept-like start.

    Returns W (units, q), eta (units, n), objective (units,).
    """
    X, p = ops.X, ops.p
    n_units, n = Yt.shape
    dev, dt = X.device, X.dtype
    W0 = torch.zeros(n_units, q, dtype=dt, device=dev)
    eta0 = ops.eta(W0, UX, off)
    f0 = ops.objective(eta0, W0, Yt, lam)
    if p == 0:
        return W0, eta0, f0
    lo = 0.5 / n  # keeps link(mean) finite for an all-zero (Bernoulli: all-one) unit
    mean = Yt.mean(1)
    target = ops.obs.drive_of_mean(ops.obs.clamp_mean(mean, lo))  # (units,)
    # X'X through the same (structured) Gram pass, as one "unit" of weight 1
    G = _gram(torch.ones(1, n, dtype=dt, device=dev), X_rest, None, block, order_x)[0]
    rhs = target[:, None] * X.sum(0) if off is None else (target[:, None] - off) @ X
    fx = free[:, :p]
    ridge = 1e-10 * torch.diagonal(G).abs().max().clamp_min(1.0)  # for all-zero columns
    Gu = G * fx[:, :, None] * fx[:, None, :] + torch.diag_embed(1.0 - fx)
    Gu = Gu + ridge * torch.eye(p, dtype=dt, device=dev)
    W1 = W0.clone()
    # Gu is symmetric positive definite (Gram + ridge): Cholesky, not LU (MKL's batched LU
    # printed DLASWP parameter errors on some of these systems); a unit whose factorisation
    # fails keeps the zero start
    L, info = torch.linalg.cholesky_ex(Gu)
    sol = torch.cholesky_solve((rhs * fx)[:, :, None], L)[:, :, 0] * fx
    W1[:, :p] = torch.where((info == 0)[:, None], sol, torch.zeros_like(sol))
    eta1 = ops.eta(W1, UX, off)
    f1 = ops.objective(eta1, W1, Yt, lam)
    better = torch.isfinite(f1) & (f1 < f0)
    return (torch.where(better[:, None], W1, W0), torch.where(better[:, None], eta1, eta0),
            torch.where(better, f1, f0))


def weighted_grams(X: torch.Tensor, curvature: torch.Tensor, unit_X: torch.Tensor | None = None,
                   blocks: StimulusBlock | Sequence[StimulusBlock] | None = None) -> torch.Tensor:
    """Per-unit weighted Grams ``[X, unit_X_u]' diag(curvature[u]) [X, unit_X_u]``: with the
    NLL's second derivative in the drive as ``curvature``, the observed information of each
    unit's regression (what :func:`fit_batched_glm` builds each Newton step, the stimulus
    block's one-hot ⊗ basis structure exploited).

    Args:
        X: (n, P) shared design; ``blocks`` its stimulus block (checked against X), or None.
        curvature: (n_units, n) weights.
        unit_X: (n, n_units, E) per-unit columns, or None.
    Returns:
        (n_units, P + E, P + E), columns in the order ``[X, unit_X]``.
    """
    p = X.shape[1]
    q = p + (0 if unit_X is None else unit_X.shape[2])
    block, rest, order = _block_order(blocks, X, q)
    return _gram(curvature, X[:, rest], unit_X, block, torch.argsort(order))
