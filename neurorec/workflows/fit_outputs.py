"""Everything ``neurorec fit`` leaves in its output directory.

``metrics.json``, ``predictions.npz``, ``params.npz``, ``spec.yaml`` and ``model.pt`` (the
fitted model, ``Estimator.save``: ``family.model.load(out)`` restores it whole), figures and
``report.html``; written into a temporary directory that becomes ``out`` only when complete.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neurorec.core.outputs import atomic_dir, write_json
from neurorec.families import family_of
from neurorec.report import figures, html
from neurorec.spec.load import dump_spec
from neurorec.workflows.pipeline import FitResult

# Keys in metrics.json that scripts rely on (issue #2); extend, never rename.
REQUIRED_METRICS = ("bits_per_spike", "log_likelihood", "n_spikes", "n_neurons", "n_bins",
                    "per_neuron_bits_per_spike")
FITTED_ATTRIBUTES = ("n_bins_", "n_units_", "n_conditions_", "bin_size_", "unit_order_")


def save_params(result: FitResult, path: Path) -> None:
    model = result.model
    arrays = {f"param_{k}": v for k, v in model.params_.items()}
    arrays.update({f"fitted_{k}": np.asarray(getattr(model, k)) for k in FITTED_ATTRIBUTES})
    for name, value in _filters(model).items():
        if value is not None:
            arrays[name] = value
    if family_of(result.spec.kind).supports("latent_dynamics"):
        arrays["eigenvalues_R"], arrays["time_constants_s"] = model.time_constants()
    np.savez(path, **arrays)


def write_fit_outputs(result: FitResult, out: str | Path, overwrite: bool = False) -> Path:
    """Write the run to ``out`` atomically and return the report's path."""
    out = Path(out)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        test, m = result.test, result.metrics
        write_json(tmp / "metrics.json", m)
        extra = {} if test.stimulus is None else {"stimulus": test.stimulus}
        np.savez(tmp / "predictions.npz", rates=result.test_rates, counts=test.counts,
                 time_s=test.time, condition=test.condition, unit_ids=test.unit_ids.astype(str),
                 trial_index=np.flatnonzero(result.data.is_test), **extra)
        save_params(result, tmp / "params.npz")
        result.model.save(tmp)  # model.pt and spec.yaml
        (tmp / "spec.yaml").write_text(dump_spec(result.spec))
        write_json(tmp / "fit_history.json", {"history": result.model.fit_report_.history})
        _report(result, tmp)
    return out / "report.html"


def _filters(model) -> dict[str, np.ndarray | None]:
    return {"stimulus_drive": model.stimulus_drive(), "history_filters": model.history_filters(),
            "coupling_filters": model.coupling_filters()}


_FILTER_CAPTIONS = {"stimulus_drive": "stimulus drive per unit and condition",
                    "history_filters": "spike-history gains",
                    "coupling_filters": "coupling strengths"}


def _report(result: FitResult, tmp: Path) -> None:
    model, test, m = result.model, result.test, result.metrics
    per_neuron = np.asarray(m["per_neuron_bits_per_spike"], dtype=float)
    order = np.argsort(-np.nan_to_num(per_neuron, nan=-np.inf))
    rates_hz = test.counts.mean(axis=(0, 1)) / test.bin_size
    top = np.array([u for u in order if rates_hz[u] > 1.0][:4] or order[:4])
    # what was fitted decides the figures and their captions: filters only where the model has
    # them, the optimiser as the fit report names it (L-BFGS unless it says otherwise)
    filters = _filters(model)
    fitted = [caption for name, caption in _FILTER_CAPTIONS.items() if filters[name] is not None]
    optimizer = m["convergence"].get("optimizer", "L-BFGS")
    figs = [("psth.png", "Held-out trial-averaged rate per condition for the best-predicted "
                         "units: data (grey) vs model (red).")]
    if fitted:
        figs.append(("filters.png", f"Fitted filters: {', '.join(fitted)}."))
    figs += [("bits_per_spike.png", "Held-out bits/spike per unit."),
             ("convergence.png", f"Training objective and held-back NLL during {optimizer}.")]
    figures.psth_figure(test.counts, result.test_rates, test.condition, test.condition_table,
                        test.time, test.bin_size, test.unit_ids, top, tmp / "psth.png")
    if fitted:
        figures.filters_figure(*filters.values(), test.bin_size, tmp / "filters.png")
    figures.bits_per_spike_figure(per_neuron, test.unit_ids, tmp / "bits_per_spike.png")
    figures.training_curve_figure(model.fit_report_.history, tmp / "convergence.png",
                                  optimizer)
    if family_of(result.spec.kind).supports("latent_dynamics"):
        eig, tau = model.time_constants()
        figures.eigenvalue_figure(eig, tau, tmp / "eigenvalues.png")
        figs.append(("eigenvalues.png", "Eigenvalues of the recurrence R (unit circle in grey) "
                                        "and their time constants τ = -Δt / ln|λ|."))
    if "cv" in m:
        figures.cv_curve_figure(m["cv"], tmp / "cv.png")
        chosen = ", ".join(f"{k} = {v:g}" for k, v in m["cv"]["chosen"].items())
        figs.append(("cv.png", f"{m['cv']['k']}-fold cross-validation over the training "
                               f"trials: mean held-out log-likelihood per penalty strength "
                               f"(± SEM over folds); chosen {chosen}."))
    conv = m["convergence"]
    rows = [("held-out bits/spike", m["bits_per_spike"]),
            ("held-out log-likelihood (nats)", m["log_likelihood"]),
            ("held-out spikes / bins / units", f"{m['n_spikes']} / {m['n_bins']} / "
                                               f"{m['n_neurons']}"),
            ("training bits/spike", m["train_bits_per_spike"]),
            ("AIC (training)", m["aic"]), ("parameters", m["n_parameters"]),
            ("fit time (s)", m["fit_time_s"]),
            ("convergence", f"{conv['reason']} after {conv['n_iter']} iterations, "
                            f"max |grad| {conv['max_abs_grad']:.2e}")]
    sections = [
        ("Summary", html.table(rows, ("quantity", "value")) +
         f"<p class='small'>Data: {m['data']}; trials: {m['n_train_trials']} training, "
         f"{m['n_test_trials']} held out; bits/spike as in the Neural Latents Benchmark.</p>"),
        *[(name.removesuffix(".png"), html.figure(name, caption)) for name, caption in figs],
        *_goodness_of_fit(result, tmp),
        ("Resolved spec", html.pre(dump_spec(result.spec))),
    ]
    html.page(f"neurorec fit: {m['model']} ({m['kind']})", sections, tmp / "report.html")


def _goodness_of_fit(result: FitResult, tmp: Path) -> list[tuple[str, str]]:
    """The evaluation's sections (as ``neurorec evaluate`` draws them): the units outside
    the KS band, KS plots, the per-unit KS table, filters ± 2 s.e. (the autocorrelation
    figure only in ``neurorec evaluate``'s report)."""
    from neurorec.report.goodness_of_fit import goodness_of_fit_sections
    from neurorec.workflows.evaluate import filter_bands

    ev = result.evaluation
    if ev is None:  # masked (unequal) trials: no evaluation (metrics.json says why)
        return []
    m = {**ev.metrics, "unit_ids": [str(u) for u in result.test.unit_ids]}
    return goodness_of_fit_sections(m, ev.rescaled, filter_bands(result.model,
                                                                 ev.standard_errors), tmp,
                                    acf=False)
