"""``neurorec fit`` on a continuous session (``data.mode: session``): load, fit, score, write.

The path every session command takes: spec → :func:`neurorec.datasets.registry.
session_for_spec` (NWB or a bundled session; held-out bins from the epochs' split column or
blocked folds with guard bands of the spec's longest filter) → the kind's session model
(the family's declared ``session_model``) fitted on the ``train`` bins → NLB bits/spike on
the ``test`` bins (and ``val`` when present) → ``metrics.json``, ``predictions.npz`` (bins × units),
``tuning_curves.npz``, figures and ``report.html``.

``--cv K``: the covariate ridges (every entry's ``ridge``, one value for all) are chosen by K
blocked folds over the train bins (:func:`neurorec.data.session_splits.blocked_folds`, guard
bands of the longest filter); ``--heldout-neurons``: co-smoothing (held-out units have no
own-history term; scored on the test bins); ``--resume``: the GLM's finished unit chunks (and
the R-GLM's finished stages: each GLM fit and each latent fit) are kept in OUT.partial/ and
not refitted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurorec.core.errors import DataError
from neurorec.core.metrics import bits_per_spike, log_likelihood, per_neuron_bits_per_spike
from neurorec.data.session import BinnedSession
from neurorec.fit.run import Run

#: covariate ridges tried by --cv on a session (per bin and neuron), strongest first
RIDGE_GRID = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7)


def session_model_class(kind: str) -> type:
    """The class a family declares for fitting a session (its ``session_model`` command,
    :data:`neurorec.families.base.COMMANDS`); DataError naming the kinds that have one."""
    from neurorec.families import registered

    family = registered().get(kind)
    if family is None or "session_model" not in family.commands:
        able = sorted(k for k, f in registered().items() if "session_model" in f.commands)
        raise DataError(f"data.mode: kind '{kind}' cannot fit a session (session models: "
                        f"{able})")
    return family.command("session_model")


def session_model(spec: Any, *, seed: int = 0, **kw) -> Any:
    """The session model of ``spec.kind`` (``neurorec.core.errors.DataError`` if none)."""
    try:
        cls = session_model_class(spec.kind)
    except DataError as err:
        raise DataError(f"{spec.name}: {err.lines[0]}") from None
    return cls(spec, seed=seed, **kw)


def session_glm(model: Any) -> Any:
    """The fitted SessionGLM of a session model (its class's declared ``session_glm``); None
    for a model without one (PLDS, ctrnn_obs)."""
    attr = type(model).session_glm
    if attr is None:
        return None
    return model if attr == "self" else getattr(model, attr)


def load_session_for(spec: Any, source: str, seed: int = 0) -> BinnedSession:
    """The session ``source`` (NWB path or bundled name) as ``spec.data`` bins and splits it."""
    from neurorec.data.session_splits import guard_gap_s
    from neurorec.datasets.registry import session_for_spec

    return session_for_spec(source, spec.data, gap_s=guard_gap_s(spec), seed=seed)


@dataclass
class SessionFitResult:
    """A fitted session model, its rates on every bin and the metrics."""

    spec: Any
    model: Any
    session: BinnedSession
    rates: np.ndarray
    metrics: dict
    tuning: dict = field(default_factory=dict)
    #: the evaluation's rescaled intervals and numbers (:class:`~neurorec.workflows.evaluate.
    #: Evaluation`), drawn in the report
    evaluation: Any = None


def with_ridge(spec: Any, ridge: float) -> Any:
    """``spec`` with every covariate entry's ridge set to ``ridge``."""
    covs = tuple(c.model_copy(update={"ridge": ridge}) for c in spec.covariates)
    return spec.model_copy(update={"covariates": covs})


def cross_validate_ridge(spec: Any, session: BinnedSession, k: int, seed: int = 0) -> dict:
    """K blocked folds over the train bins; the covariate ridge with the best mean held-out
    log-likelihood (nats summed over a fold's bins and units)."""
    from neurorec.data.session_splits import blocked_folds, guard_gap_s

    folds = blocked_folds(session, k, gap_s=guard_gap_s(spec))
    scores = np.zeros((len(RIDGE_GRID), k))
    for f, fold in enumerate(folds):
        rows = fold.mask("test")
        for g, ridge in enumerate(RIDGE_GRID):
            model = session_model(with_ridge(spec, ridge), seed=seed).fit(fold)
            rates = model.predict_rate(fold)
            scores[g, f] = log_likelihood(fold.counts[rows][None], rates[rows][None])
    mean = scores.mean(axis=1)
    best = int(np.argmax(np.where(np.isfinite(mean), mean, -np.inf)))
    return {"grid": [{"ridge": r} for r in RIDGE_GRID], "mean_heldout_ll": mean.tolist(),
            "fold_heldout_ll": scores.tolist(), "chosen": {"ridge": RIDGE_GRID[best]},
            "k": k, "folds": "blocked, guard bands of the longest filter"}


def fit_session(spec: Any, session: BinnedSession, seed: int = 0, progress: bool = True,
                run: Run | None = None,
                heldout_neurons: str | float | list | None = None,
                cv: int | None = None) -> SessionFitResult:
    """Fit ``spec`` on the session's train bins and score its test bins (module docstring).

    ``run``: the fit's checkpoints and resume (:class:`~neurorec.fit.run.Run`; the GLM's
    unit chunks are checkpointed, the R-GLM's latent is not)."""
    test, train = session.mask("test"), session.mask("train")
    if not test.any() or not train.any():
        raise DataError(f"{session.source}: split: need 'train' and 'test' bins, got "
                        f"{int(train.sum())} train and {int(test.sum())} test")
    if session.counts[test].sum() == 0:
        raise DataError(f"{session.source}: units: no spikes in the test bins")
    start, cpu_start = time.perf_counter(), time.process_time()
    cv_result = None
    if cv is not None:
        if heldout_neurons is not None:
            raise DataError("--cv: cross-validation with --heldout-neurons is not supported "
                            "(choose the ridge without co-smoothing, then pass it with --set)")
        if spec.kind != "glm" or not spec.covariates:
            raise DataError(f"--cv: on a session, --cv chooses the covariate ridge of a 'glm' "
                            f"spec with covariates (got kind '{spec.kind}')")
        cv_result = cross_validate_ridge(spec, session, cv, seed)
        spec = with_ridge(spec, cv_result["chosen"]["ridge"])
    heldout = None
    kw = {}
    if heldout_neurons is not None:
        from neurorec.families import registered
        from neurorec.workflows import cosmoothing

        able = sorted(k for k, f in registered().items() if "session_heldout" in f.capabilities)
        if spec.kind not in able:
            raise DataError(f"--heldout-neurons: on a session only kinds {', '.join(able)} "
                            f"support co-smoothing (got '{spec.kind}')")
        heldout = cosmoothing.heldout_mask(session.unit_ids, heldout_neurons, seed)
        kw["heldout"] = heldout
    model = session_model(spec, seed=seed, **kw)
    model.fit(session, progress=progress, run=run)
    fit_time, fit_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    rates = model.predict_rate(session)
    metrics = session_metrics(spec, model, session, rates, seed, fit_time)
    metrics["fit_cpu_s"] = fit_cpu  # process CPU time of the fit (all threads)
    if cv_result is not None:
        metrics["cv"] = cv_result
    if heldout is not None:
        from neurorec.workflows import cosmoothing

        metrics.update(cosmoothing.cosmoothing_metrics(
            session.counts[test][None], rates[test][None], session.counts[train][None],
            heldout, "poisson"))
    # the evaluation `neurorec evaluate` makes (issue 28): time rescaling on the test
    # stretches, behaviour_r2 per covariate; keys already set above are kept
    from neurorec.workflows.evaluate import session_behaviour, session_scores

    evaluation = session_scores(session.counts, rates, np.asarray(session.split).astype(str),
                                np.asarray(session.segment), session_behaviour(session),
                                session.unit_ids, seed)
    for key, value in evaluation.metrics.items():
        metrics.setdefault(key, value)
    if session_glm(model) is model:  # a GLM: its coefficients' standard errors
        se = model.standard_errors(session)
        metrics["standard_errors"] = {k: np.asarray(v).tolist() for k, v in se.items()}
        metrics["standard_errors_note"] = (
            "observed information of the penalised training objective (Z'WZ + 2nΛ)^-1, "
            "Λ the fit's ridges; NaN where not fitted or singular")
    else:
        metrics["standard_errors"] = None
        metrics["standard_errors_note"] = (f"{spec.kind}: standard errors are computed for "
                                           "the session GLM")
    result = SessionFitResult(spec, model, session, rates, metrics, evaluation=evaluation)
    result.tuning = tuning_curves(result)
    return result


def session_metrics(spec: Any, model: Any, session: BinnedSession, rates: np.ndarray,
                    seed: int, fit_time: float) -> dict:
    """``metrics.json`` of a session fit (the trials-mode keys, per evaluated bins)."""
    test, train, val = session.mask("test"), session.mask("train"), session.mask("val")
    y, r = session.counts[test][None], rates[test][None]
    glm = session_glm(model)
    metrics = {
        "model": spec.name, "kind": spec.kind, "observation": "poisson",
        "data": session.source, "data_mode": "session",
        "bits_per_spike": bits_per_spike(y, r),
        "log_likelihood": log_likelihood(y, r),
        "n_spikes": int(y.sum()), "n_neurons": int(session.n_units),
        "n_bins": int(test.sum()), "n_train_bins": int(train.sum()),
        "n_val_bins": int(val.sum()), "bin_size_s": float(session.bin_size),
        "per_neuron_bits_per_spike": per_neuron_bits_per_spike(y, r),
        "unit_ids": [str(u) for u in session.unit_ids],
        "train_log_likelihood": log_likelihood(session.counts[train][None],
                                               rates[train][None]),
        "train_bits_per_spike": bits_per_spike(session.counts[train][None],
                                               rates[train][None]),
        "fit_time_s": fit_time, "seed": seed, "device": "cpu",
    }
    if glm is not None:
        metrics["convergence"] = {"reason": "newton" if glm is model else "see report_",
                                  "optimizer": "batched Newton (row-sparse design)",
                                  "converged_units": int(np.sum(glm.converged_)),
                                  "n_iter": int(np.max(glm.n_iter_))}
    else:  # the family's own engine: its FitLog
        log = model.fit_report_
        metrics["convergence"] = {"reason": log.reason, "optimizer": log.optimizer,
                                  "converged": bool(log.converged), "n_iter": int(log.n_iter)}
    if type(model).counts_parameters:
        metrics["n_parameters"] = int(model.n_parameters())
    if val.any():
        metrics["val_bits_per_spike"] = bits_per_spike(session.counts[val][None],
                                                       rates[val][None])
    for key in ("rates", "rates_no_gain"):  # simulated data: the truth's score, same bins
        if key in session.truth:
            metrics[f"truth_{key}_bits_per_spike"] = bits_per_spike(
                y, np.asarray(session.truth[key])[test][None])
    return metrics


def tuning_curves(result: SessionFitResult, n_bins_1d: int = 24,
                  n_bins_2d: int = 16) -> dict[str, np.ndarray]:
    """Data tuning (pynapple, every non-``none`` bin) and the model's partial dependence on
    the same grid, per covariate term with a 1-D or 2-D spline basis.

    Returns ``{<name>_data, <name>_model: (n_units, *grid) Hz, <name>_centres_<d>,
    <name>_occupancy}`` for each such term (the ``tuning_curves.npz`` arrays).
    """
    from neurorec.analysis.session_tuning import data_tuning_curves

    spec, session = result.spec, result.session
    glm = session_glm(result.model)
    out: dict[str, np.ndarray] = {}
    if glm is None:  # no covariate terms in spline bases: no partial dependence
        return out
    for entry in spec.covariates:
        if entry.basis not in ("bspline", "cyclic_bspline", "tensor_bspline"):
            continue
        x = np.asarray(session.covariates[entry.series or entry.name], float)
        rng = glm.bounds_[entry.name]
        if entry.basis == "tensor_bspline":
            ranges = [tuple(rng[0:2]), tuple(rng[2:4])]
            data, centres, occ = data_tuning_curves(session, x, (n_bins_2d, n_bins_2d), ranges)
            gx, gy = np.meshgrid(centres[0], centres[1], indexing="ij")
            grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
            model = glm.partial_dependence(session, entry.name, grid).reshape(
                session.n_units, len(centres[0]), len(centres[1]))
        else:
            data, centres, occ = data_tuning_curves(
                session, np.ravel(x), n_bins_1d, [tuple(rng)],
                circular=entry.basis == "cyclic_bspline")
            model = glm.partial_dependence(session, entry.name, centres[0][:, None])
        out[f"{entry.name}_data"] = data
        out[f"{entry.name}_model"] = model
        out[f"{entry.name}_occupancy"] = occ
        for d, c in enumerate(centres):
            out[f"{entry.name}_centres_{d}"] = c
    return out


def write_session_outputs(result: SessionFitResult, out: Path, overwrite: bool = False) -> Path:
    """Write the run to ``out`` atomically; the report's path."""
    from neurorec.core.outputs import atomic_dir, write_json
    from neurorec.report import html
    from neurorec.report.session_figures import tuning_figure
    from neurorec.spec.load import dump_spec

    s, m = result.session, result.metrics
    with atomic_dir(Path(out), overwrite=overwrite) as tmp:
        write_json(tmp / "metrics.json", m)
        np.savez(tmp / "predictions.npz", rates=result.rates, counts=s.counts,
                 time_s=s.time, split=s.split.astype(str), segment=s.segment,
                 unit_ids=np.asarray(s.unit_ids).astype(str), bin_size_s=s.bin_size)
        if result.tuning:
            np.savez(tmp / "tuning_curves.npz", **result.tuning)
        result.model.save(tmp)
        (tmp / "spec.yaml").write_text(dump_spec(result.spec))
        figs = []
        per = np.asarray(m["per_neuron_bits_per_spike"], float)
        for entry in result.spec.covariates if result.tuning else ():
            if f"{entry.name}_data" in result.tuning:
                name = f"tuning_{entry.name}.png"
                tuning_figure(result.tuning, entry.name, per, s.unit_ids, tmp / name)
                figs.append((name, f"Tuning to {entry.name} of the units it modulates most: data "
                                   "(pynapple, every scored bin; grey / left) and the model's "
                                   "partial dependence on the same grid (red / right), Hz."))
        rows = [("held-out bits/spike (test bins)", m["bits_per_spike"]),
                ("held-out log-likelihood (nats)", m["log_likelihood"]),
                ("test spikes / bins / units", f"{m['n_spikes']} / {m['n_bins']} / "
                                               f"{m['n_neurons']}"),
                ("training bits/spike", m["train_bits_per_spike"]),
                ("fit time (s)", m["fit_time_s"])]
        for key in ("val_bits_per_spike", "truth_rates_no_gain_bits_per_spike",
                    "truth_rates_bits_per_spike", "co_bps"):
            if key in m:
                rows.append((key.replace("_", " "), m[key]))
        sections = [("Summary", html.table(rows, ("quantity", "value")) +
                     f"<p class='small'>Data: {m['data']} (session, {s.n_bins} bins of "
                     f"{s.bin_size * 1e3:g} ms); bits/spike as in the Neural Latents "
                     "Benchmark, on the test bins.</p>"),
                    *[(n.removesuffix(".png"), html.figure(n, c)) for n, c in figs]]
        if result.evaluation is not None:  # KS plots and the failing units (issue 28)
            from neurorec.report.goodness_of_fit import goodness_of_fit_sections

            sections += goodness_of_fit_sections(
                {**result.evaluation.metrics, "unit_ids": [str(u) for u in s.unit_ids]},
                result.evaluation.rescaled, None, tmp, acf=False)
        sections.append(("Resolved spec", html.pre(dump_spec(result.spec))))
        html.page(f"neurorec fit: {m['model']} ({m['kind']}, session)", sections,
                  tmp / "report.html")
    return Path(out) / "report.html"


__all__ = ["RIDGE_GRID", "SessionFitResult",
           "cross_validate_ridge", "fit_session", "load_session_for", "session_glm",
           "session_metrics", "session_model",
           "tuning_curves", "with_ridge", "write_session_outputs"]


def run_fit_command(spec: Any, data: str, out: Path, seed: int = 0, overwrite: bool = False,
                    resume: bool = False, quiet: bool = False,
                    heldout_neurons: str | None = None, cv: int | None = None) -> list[str]:
    """``neurorec fit`` for ``data.mode: session``: load (errors before anything is
    written), fit with unit-chunk checkpoints in OUT.partial/, write OUT; the lines to print."""
    import shutil

    from neurorec.core.errors import OutputError

    session = load_session_for(spec, data, seed)
    out = Path(out)
    work = out.with_name(f"{out.name}.partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    if work.exists() and not resume:
        if any(work.iterdir()) and not overwrite:
            raise OutputError(f"{work}: checkpoints of an interrupted run; pass --resume "
                              "to continue it or --overwrite to start over")
        shutil.rmtree(work)
    result = fit_session(spec, session, seed=seed, progress=not quiet,
                         run=Run(checkpoint_dir=work, resume=resume),
                         heldout_neurons=heldout_neurons, cv=cv)
    write_session_outputs(result, out, overwrite=overwrite)
    shutil.rmtree(work, ignore_errors=True)
    m = result.metrics
    lines = [f"{spec.name}: held-out {m['bits_per_spike']:.4f} bits/spike on {m['n_bins']} "
             f"test bins × {m['n_neurons']} units ({session.source}), fit {m['fit_time_s']:.1f} s "
             f"(CPU {m['fit_cpu_s']:.1f} s)"]
    if "truth_rates_no_gain_bits_per_spike" in m:
        lines.append(f"simulated truth without the shared gain: "
                     f"{m['truth_rates_no_gain_bits_per_spike']:.4f} bits/spike")
    if "cv" in m:
        lines.append(f"cross-validation ({m['cv']['k']} blocked folds): chose ridge = "
                     f"{m['cv']['chosen']['ridge']:g}")
    if "co_bps" in m:
        lines.append(f"co-smoothing: co-bps {m['co_bps']:.4f} ({m['n_heldout_neurons']} "
                     f"held-out units)")
    return lines


#: the specs `neurorec demo --session open_field` fits, in order
SESSION_DEMO_SPECS = ("session_glm.yaml", "session_rglm.yaml")


def demo_session(source: str, out: Path, specs: Path, seed: int = 0,
                 overrides: tuple[str, ...] = (), overwrite: bool = False,
                 echo=print) -> list[tuple[str, str, float, float, float]]:
    """``neurorec demo --session open_field``: the session GLM and R-GLM on a bundled
    (simulated) session, side by side; rows (name, kind, bits/spike, LL, seconds)."""
    from neurorec.core.errors import SpecError
    from neurorec.core.outputs import atomic_dir
    from neurorec.report import html
    from neurorec.spec.load import load_model_spec

    paths = [Path(specs) / name for name in SESSION_DEMO_SPECS]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise SpecError([f"{p}: demo spec not found (the demo reads models/ of a checkout: "
                         "pass --specs DIR)" for p in missing])
    loaded = [load_model_spec(p, list(overrides)) for p in paths]
    session = load_session_for(loaded[0], source, seed)
    echo(f"data: {session.source}, {session.n_units} units, {session.n_bins} bins of "
         f"{session.bin_size * 1e3:g} ms (SIMULATED cells on a real rat trajectory)")
    rows = []
    with atomic_dir(Path(out), overwrite=overwrite) as tmp:
        for spec in loaded:
            echo(f"fitting {spec.name} ...")
            start = time.perf_counter()
            result = fit_session(spec, session, seed=seed, progress=False)
            seconds = time.perf_counter() - start
            write_session_outputs(result, tmp / spec.name)
            m = result.metrics
            rows.append((spec.name, spec.kind, m["bits_per_spike"], m["log_likelihood"],
                         seconds))
        truth = result.metrics.get("truth_rates_no_gain_bits_per_spike")
        table = [(n, k, f"{b:.4f}", f"{ll:.1f}", f"{t:.1f}") for n, k, b, ll, t in rows]
        if truth is not None:
            table.append(("truth without the shared gain", "—", f"{truth:.4f}", "", ""))
            table.append(("truth (true intensity)", "—",
                          f"{result.metrics['truth_rates_bits_per_spike']:.4f}", "", ""))
        body = html.table(table, ("model", "kind", "held-out bits/spike", "held-out LL (nats)",
                                  "fit time (s)"))
        links = "".join(f"<li><a href='{n}/report.html'>{n}</a></li>" for n, *_ in rows)
        html.page(f"neurorec demo: {session.source}",
                  [("Held-out comparison (test bins)", body),
                   ("Reports", f"<ul>{links}</ul>")], tmp / "report.html")
    return rows
