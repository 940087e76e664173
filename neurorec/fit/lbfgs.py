"""Penalised maximum likelihood with L-BFGS, checked against held-out data as it goes.

One loop for every model fitted by full-batch likelihood: the model supplies a differentiable
objective and a held-out score; this module owns iterations, convergence, early stopping,
divergence checks and the progress bar.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from neurorec.errors import DivergenceError
from neurorec.spec.models import FitSpec


@dataclass
class FitReport:
    """What happened during a fit, for ``metrics.json`` and the report."""

    converged: bool
    reason: str
    n_iter: int
    n_evals: int
    final_objective: float
    max_abs_grad: float
    best_validation_nll: float | None
    fit_time_s: float
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _check_finite(params: dict[str, torch.Tensor], loss: torch.Tensor, n_iter: int) -> None:
    if not torch.isfinite(loss):
        bad = [name for name, p in params.items() if not torch.isfinite(p).all()]
        what = f"parameters {', '.join(bad)}" if bad else "the objective"
        raise DivergenceError(f"fit: iteration {n_iter}: {what} became NaN/Inf "
                              "(lower the learning problem's scale: stronger penalty, "
                              "smaller init, or float64)")


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _conjugate_gradient(hvp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor,
                        max_iter: int) -> torch.Tensor:
    """Approximately solve ``H x = b`` for a positive-definite ``H`` given by products."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rs = r @ r
    for _ in range(max_iter):
        hp = hvp(p)
        curvature = p @ hp
        if curvature <= 0:  # not positive definite along p: keep what we have
            break
        alpha = rs / curvature
        x, r = x + alpha * p, r - alpha * hp
        rs_new = r @ r
        if rs_new.sqrt() <= 1e-12 * b.norm():
            break
        p, rs = r + (rs_new / rs) * p, rs_new
    return x


def newton_polish(tensors: list[torch.Tensor], objective: Callable[[], torch.Tensor],
                  tol: float, max_steps: int = 8, cg_iter: int = 200) -> tuple[float, int]:
    """Newton-CG steps (Hessian-vector products by autograd) from near an optimum.

    L-BFGS's line search compares objective values, which rounding makes useless once
    changes fall below ~1e-16 of the objective; Newton steps use gradients only and reach
    the optimum to near machine precision. A step is kept only if it lowers max |gradient|.

    Returns:
        (max |gradient| at the end, number of steps kept).
    """
    kept = 0
    grad_max = float("inf")
    for _ in range(max_steps):
        loss = objective()
        grads = torch.autograd.grad(loss, tensors, create_graph=True)
        g = _flat(list(grads))
        grad_max = float(g.detach().abs().max())
        if grad_max <= tol * 1e-3:
            break

        def hvp(v: torch.Tensor, grads=grads) -> torch.Tensor:
            parts, i = [], 0
            for t in tensors:
                parts.append(v[i: i + t.numel()].view_as(t))
                i += t.numel()
            return _flat(list(torch.autograd.grad(grads, tensors, parts, retain_graph=True)))

        step = _conjugate_gradient(hvp, -g.detach(), cg_iter)
        with torch.no_grad():
            i = 0
            for t in tensors:
                t.add_(step[i: i + t.numel()].view_as(t))
                i += t.numel()
        new_loss = objective()
        new_grad = torch.autograd.grad(new_loss, tensors)
        new_max = float(_flat(list(new_grad)).abs().max())
        if not torch.isfinite(new_loss) or new_max >= grad_max:
            with torch.no_grad():
                i = 0
                for t in tensors:
                    t.sub_(step[i: i + t.numel()].view_as(t))
                    i += t.numel()
            break
        grad_max, kept = new_max, kept + 1
    return grad_max, kept


def fit_lbfgs(params: dict[str, torch.Tensor], objective: Callable[[], torch.Tensor],
              spec: FitSpec, validation_nll: Callable[[], float] | None = None,
              progress: bool = True, desc: str = "fit") -> FitReport:
    """Minimise ``objective()`` over ``params`` in place.

    Args:
        params: leaf tensors with ``requires_grad``; left at the best values found (the best
            held-out score when ``validation_nll`` is given and early stopping is on).
        objective: closure returning the scalar penalised objective.
        spec: iteration budget, tolerance, early stopping.
        validation_nll: held-out negative log-likelihood, called every ``spec.check_every``.
    """
    tensors = list(params.values())
    opt = torch.optim.LBFGS(tensors, lr=1.0, max_iter=spec.check_every, history_size=20,
                            max_eval=spec.check_every * 5,
                            tolerance_grad=spec.tol, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    start = time.perf_counter()
    best_val, best_state, bad_checks = math.inf, None, 0
    history: list[dict] = []
    reason, converged, n_iter, n_evals = "max_iter reached", False, 0, 0
    use_val = validation_nll is not None and spec.early_stopping
    bar = tqdm(total=spec.max_iter, desc=desc, disable=not progress, leave=False, unit="it")
    while n_iter < spec.max_iter:
        loss = opt.step(closure)
        state = opt.state[tensors[0]]
        step_iters = state.get("n_iter", 0) - n_iter
        n_iter, n_evals = state.get("n_iter", 0), state.get("func_evals", 0)
        _check_finite(params, loss, n_iter)
        with torch.no_grad():
            loss = objective()
        _check_finite(params, loss, n_iter)
        grad = max(float(t.grad.abs().max()) for t in tensors if t.grad is not None)
        entry = {"iter": n_iter, "objective": float(loss), "max_abs_grad": grad}
        if validation_nll is not None:
            entry["validation_nll"] = val = validation_nll()
            if use_val:
                if best_state is None or val < best_val - 1e-9 * abs(best_val):
                    best_val, bad_checks = val, 0
                    best_state = {k: v.detach().clone() for k, v in params.items()}
                else:
                    bad_checks += 1
        history.append(entry)
        bar.update(step_iters)
        bar.set_postfix(obj=f"{float(loss):.6g}", grad=f"{grad:.1e}")
        if grad <= spec.tol:
            reason, converged = "gradient below tol", True
            break
        if use_val and bad_checks >= spec.patience:
            reason = f"early stopping (held-out NLL rose for {spec.patience} checks)"
            converged = True
            break
        if step_iters == 0 or (step_iters < spec.check_every and grad > spec.tol):
            # L-BFGS gave up inside the step: no decrease possible at this precision.
            reason, converged = "no further decrease (line search stalled)", grad < 1e3 * spec.tol
            break
    bar.close()
    # polish only a fit that converged or stalled: max_iter is the whole budget, and early
    # stopping keeps the best held-back parameters on purpose
    if spec.newton_polish and reason in ("gradient below tol",
                                         "no further decrease (line search stalled)"):
        grad, steps = newton_polish(tensors, objective, spec.tol)
        if steps:
            history.append({"iter": n_iter, "newton_steps": steps, "max_abs_grad": grad,
                            "objective": float(objective().detach())})
            if grad <= spec.tol:
                reason, converged = f"gradient below tol after {steps} Newton-CG steps", True
    if use_val and best_state is not None:
        with torch.no_grad():
            for k, v in best_state.items():
                params[k].copy_(v)
    with torch.no_grad():
        final = float(objective())
    return FitReport(converged=converged, reason=reason, n_iter=n_iter, n_evals=n_evals,
                     final_objective=final, max_abs_grad=history[-1]["max_abs_grad"],
                     best_validation_nll=None if not use_val else best_val,
                     fit_time_s=time.perf_counter() - start, history=history)
