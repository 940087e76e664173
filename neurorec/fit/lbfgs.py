"""Penalised maximum likelihood with L-BFGS, checked against held-out data as it goes.

One loop for every model fitted by full-batch likelihood: the model supplies a differentiable
objective and a held-out score; this module owns iterations, convergence, early stopping,
divergence checks and the progress bar.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from neurorec.core.errors import DataError, DivergenceError
from neurorec.fit import interrupt
from neurorec.fit.checkpoint import load_checkpoint, save_checkpoint
from neurorec.fit.run import FitLog, Run
from neurorec.spec.fitting import FitSpec

CHECKPOINT_VERSION = 1


def _check_finite(params: dict[str, torch.Tensor], loss: torch.Tensor, n_iter: int,
                  last: tuple[Path, int] | None = None) -> None:
    if torch.isfinite(loss):
        return
    bad = [name for name, p in params.items() if not torch.isfinite(p).all()]
    bad_grad = [name for name, p in params.items()
                if p.grad is not None and not torch.isfinite(p.grad).all()]
    if bad:
        what = f"parameters {', '.join(bad)} became NaN/Inf"
    elif bad_grad:
        what = f"the objective became {float(loss)} (gradient of {', '.join(bad_grad)} NaN/Inf)"
    else:
        what = f"the objective became {float(loss)} with finite parameters"
    kept = ""
    if last is not None:
        kept = f"; the last good state (iteration {last[1]}) is kept in {last[0]}"
    raise DivergenceError(f"fit: iteration {n_iter}: {what} (lower the learning problem's "
                          f"scale: stronger penalty, smaller init, or float64){kept}")


def _restore(path: Path, run: Run, params: dict[str, torch.Tensor]) -> dict:
    """Read a checkpoint and check it belongs to this run (same fingerprint and shapes)."""
    state = load_checkpoint(path)
    if state.get("version") != CHECKPOINT_VERSION:
        raise DataError(f"{path}: checkpoint version {state.get('version')!r}, expected "
                        f"{CHECKPOINT_VERSION} (pass --overwrite to start over)")
    stored = state.get("fingerprint", {})
    differ = sorted(k for k in {*stored, *run.fingerprint}
                    if stored.get(k) != run.fingerprint.get(k))
    if differ:
        raise DataError(f"{path}: checkpoint of another run ({', '.join(differ)} differ); "
                        "resume with the same spec, data, seed and device, or pass "
                        "--overwrite to start over")
    shapes = {k: tuple(v.shape) for k, v in params.items()}
    got = {k: tuple(v.shape) for k, v in state["params"].items()}
    if shapes != got:
        raise DataError(f"{path}: checkpoint parameters {got} do not match this model's "
                        f"{shapes} (pass --overwrite to start over)")
    return state


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


def _max_abs_grad(tensors: list[torch.Tensor]) -> float:
    return max(float(t.grad.abs().max()) for t in tensors if t.grad is not None)


def fit_lbfgs(params: dict[str, torch.Tensor], objective: Callable[[], torch.Tensor],
              spec: FitSpec, validation_nll: Callable[[], float] | None = None,
              progress: bool = True, desc: str = "fit", run: Run | None = None) -> FitLog:
    """Minimise ``objective()`` over ``params`` in place.

    Args:
        params: leaf tensors with ``requires_grad``; left at the best values found (the best
            held-out score when ``validation_nll`` is given and early stopping is on).
        objective: closure returning the scalar penalised objective.
        spec: iteration budget, tolerance, early stopping.
        validation_nll: held-out negative log-likelihood, called every ``spec.check_every``.
        run: the fit's :class:`~neurorec.fit.run.Run`; with a checkpoint folder this call
            keeps its state in the run's next ``lbfgs-<i>.pt`` (every ``run.every``-th block
            of ``spec.check_every`` iterations and when it stops) and, resuming, continues
            from it bitwise.
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
    finished, elapsed_before, n_steps = False, 0.0, 0
    use_val = validation_nll is not None and spec.early_stopping
    path = None if run is None else run.next_file("lbfgs")
    last: tuple[Path, int] | None = None  # the last checkpoint written (or resumed from)
    if path is not None:
        if run.resumes(path):
            state = _restore(path, run, params)
            with torch.no_grad():
                for k, v in state["params"].items():
                    params[k].copy_(v)
            opt.load_state_dict(state["optimizer"])
            n_iter, n_evals, n_steps = state["n_iter"], state["n_evals"], state["n_steps"]
            best_val, best_state, bad_checks = (state["best_val"], state["best_state"],
                                                state["bad_checks"])
            history, reason, converged = state["history"], state["reason"], state["converged"]
            finished, elapsed_before = state["finished"], state["elapsed_s"]
            last = (path, n_iter)

    def save(done: bool) -> None:
        nonlocal last
        if path is None:
            return
        save_checkpoint(path, {
            "version": CHECKPOINT_VERSION, "fingerprint": dict(run.fingerprint),
            "params": {k: v.detach().clone() for k, v in params.items()},
            "optimizer": opt.state_dict(), "n_iter": n_iter, "n_evals": n_evals,
            "n_steps": n_steps, "best_val": best_val, "best_state": best_state,
            "bad_checks": bad_checks, "history": history, "reason": reason,
            "converged": converged, "finished": done,
            "elapsed_s": elapsed_before + time.perf_counter() - start})
        last = (path, n_iter)

    if use_val and best_state is None and n_iter == 0:
        # the start is a candidate too: a warm start (the R-GLM from its fitted GLM) is never
        # left for iterates that are worse on the held-back trials
        loss0 = closure()
        best_val = validation_nll()
        best_state = {k: v.detach().clone() for k, v in params.items()}
        history.append({"iter": 0, "objective": float(loss0.detach()), "validation_nll": best_val,
                        "max_abs_grad": _max_abs_grad(tensors)})
    bar = tqdm(total=spec.max_iter, initial=min(n_iter, spec.max_iter), desc=desc,
               disable=not progress, leave=False, unit="it")
    with interrupt.deferring():
        while not finished and n_iter < spec.max_iter:
            # the last block stops at max_iter: the budget is iterations in all, not blocks
            block = min(spec.check_every, spec.max_iter - n_iter)
            opt.param_groups[0].update(max_iter=block, max_eval=block * 5)
            loss = opt.step(closure)
            state = opt.state[tensors[0]]
            step_iters = state.get("n_iter", 0) - n_iter
            n_iter, n_evals = state.get("n_iter", 0), state.get("func_evals", 0)
            _check_finite(params, loss, n_iter, last)
            with torch.no_grad():
                loss = objective()
            _check_finite(params, loss, n_iter, last)
            grad = _max_abs_grad(tensors)
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
            n_steps += 1
            bar.update(step_iters)
            bar.set_postfix(obj=f"{float(loss):.6g}", grad=f"{grad:.1e}")
            if grad <= spec.tol:
                reason, converged, finished = "gradient below tol", True, True
            elif use_val and bad_checks >= spec.patience:
                reason = f"early stopping (held-out NLL rose for {spec.patience} checks)"
                converged, finished = True, True
            elif step_iters == 0 or (step_iters < block and grad > spec.tol):
                # L-BFGS gave up inside the step: no decrease possible at this precision.
                reason = "no further decrease (line search stalled)"
                converged, finished = grad < 1e3 * spec.tol, True
            done = finished or n_iter >= spec.max_iter
            # a checkpoint sits at a step boundary: resuming from it replays the rest bitwise
            if done or n_steps % (run.every if run else 1) == 0 or interrupt.requested():
                save(done)
            interrupt.raise_if_requested(
                f"at iteration {n_iter}" + (f"; checkpoint saved in {path.parent}; run the "
                                            "same command with --resume to continue"
                                            if path is not None else " (no checkpointing)"))
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
    return FitLog(converged=converged, reason=reason, n_iter=n_iter, n_evals=n_evals,
                  final_objective=final, max_abs_grad=history[-1]["max_abs_grad"],
                  best_validation_nll=None if not use_val else best_val,
                  fit_time_s=elapsed_before + time.perf_counter() - start, history=history)
