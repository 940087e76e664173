"""What ``neurorec simulate`` and ``neurorec train`` do for ctrnn specs, callable from Python.

``simulate_to_dir`` writes ``activity.npz`` (``rates`` trial × time × unit, ``time`` seconds,
``outputs`` trial × time × output, plus the task's ``inputs``, ``targets``, ``mask``),
``summary.json`` and ``report.html`` with ``activity.png``.

``train_to_dir`` writes ``weights_before.npz``, ``weights_after.npz`` (effective ``w_rec``,
``w_in``, ``w_out``, ``b``), ``history.json`` (learning curves), ``metrics.json``,
``spec.yaml`` (resolved), ``model.pt`` (the trained ``TaskRNN``: ``TaskRNN.load(OUT)``),
``report.html`` with ``training.png``. While it runs, checkpoints go to the sibling
``OUT.partial/`` (kept when the run is interrupted or diverges, so ``resume`` continues from
it); the output directory appears atomically at the end and the work directory is removed.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from neurorec.core.errors import DataError, OutputError, SpecError
from neurorec.core.outputs import atomic_dir, write_json
from neurorec.families.ctrnn.spec import CTRNNSpec
from neurorec.spec import dump_spec
from neurorec.spec.base import Spec

WEIGHT_KEYS = ("w_rec", "w_in", "w_out", "b")


def check_inputs(spec: Spec, task_spec: Spec, spec_where: str | Path = "SPEC",
                 task_where: str | Path = "STIM") -> None:
    """``simulate`` / ``train`` take a ctrnn spec and a task protocol on the network's clock;
    anything else is one SpecError line naming the file and the field."""
    from neurorec.tasks.base import TASKS

    if not isinstance(spec, CTRNNSpec):
        raise SpecError(f"{spec_where}: kind: '{spec.kind}' is not a ctrnn spec (simulate and "
                        "train take kind: ctrnn)")
    if task_spec.kind not in TASKS:
        raise SpecError(f"{task_where}: kind: '{task_spec.kind}' is not a task protocol "
                        f"(simulate and train take stimuli/task_*.yaml: "
                        f"{', '.join(sorted(TASKS))})")
    if abs(task_spec.timing.dt - spec.dt) > 1e-12 * spec.dt:
        raise SpecError(f"{task_where}: timing.dt: {task_spec.timing.dt} s differs from the "
                        f"network's dt {spec.dt} s (use --set dt=... or edit the protocol)")


def load_weights_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        data = np.load(path)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read weights ({err})") from None
    missing = [k for k in WEIGHT_KEYS if k not in data.files]
    if missing:
        raise DataError(f"{path}: weights file lacks {', '.join(missing)}")
    return {k: np.asarray(data[k], dtype=float) for k in WEIGHT_KEYS}


def simulate_to_dir(spec: CTRNNSpec, task_spec: Spec, out: Path, backend: str = "torch",
                    n_trials: int = 16, weights_path: Path | None = None,
                    brian2_device: str = "runtime", dtype: str = "float64", seed: int = 0,
                    device: str = "cpu", overwrite: bool = False) -> dict:
    """Simulate ``n_trials`` trials of the task; see the module docstring for the files."""
    from neurorec.families.ctrnn.estimator import TaskRNN, activity, run_network
    from neurorec.families.ctrnn.model import load_weights
    from neurorec.families.ctrnn.report import simulation_report
    from neurorec.tasks import make_task

    check_inputs(spec, task_spec, spec.name, task_spec.name)
    task = make_task(task_spec)
    model = TaskRNN(spec, device=device, seed=seed, dtype=dtype).build(task)
    if weights_path is not None:
        weights = load_weights_npz(weights_path)
        expected = {k: np.shape(v) for k, v in model.weights().items()}
        for key in WEIGHT_KEYS:  # w_in / w_out follow the task's inputs and outputs
            if weights[key].shape != expected[key]:
                raise DataError(f"{weights_path}: {key} is {weights[key].shape}, this spec on "
                                f"{task_spec.name} needs {expected[key]} (weights of another "
                                "spec or task?)")
        load_weights(model, weights)
    trials = task.generate(n_trials, np.random.default_rng([seed, 3]))
    start = time.perf_counter()
    if backend == "torch":
        rates, outputs = run_network(model, trials, seed)
    else:
        from neurorec.families.ctrnn.brian2 import simulate_brian2

        rates, outputs = simulate_brian2(spec, model.weights(), trials.inputs, seed=seed,
                                         device=brian2_device)
    seconds = time.perf_counter() - start
    arrays = activity(rates, outputs, trials)
    summary = {"spec": spec.name, "task": task_spec.name, "backend": backend,
               "brian2_device": brian2_device if backend == "brian2" else None,
               "dtype": dtype if backend == "torch" else "float64", "seed": seed,
               "n_trials": n_trials, "n_steps": trials.n_steps, "n_units": spec.n_units,
               "dt_s": spec.dt, "seconds": seconds,
               "accuracy": task.accuracy(outputs, trials),
               "weights": str(weights_path) if weights_path else "initialisation"}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        np.savez_compressed(tmp / "activity.npz", **arrays)
        write_json(tmp / "summary.json", summary)
        (tmp / "spec.yaml").write_text(dump_spec(spec))
        simulation_report(tmp, f"{spec.name} on {task_spec.name} ({backend})",
                          list(summary.items()), arrays)
    return summary


def work_dir_for(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def train_to_dir(spec: CTRNNSpec, task_spec: Spec, out: Path, seed: int = 0,
                 device: str = "cpu", overwrite: bool = False, resume: bool = False,
                 progress: bool = True) -> dict:
    """Train and write the outputs; returns metrics.json's content."""
    from neurorec.analysis.dynamics import weight_change
    from neurorec.families.ctrnn.estimator import TaskRNN
    from neurorec.families.ctrnn.report import training_report
    from neurorec.families.ctrnn.train import evaluate
    from neurorec.fit.checkpoint import CHECKPOINT_NAME
    from neurorec.fit.run import Run
    from neurorec.tasks import make_task

    check_inputs(spec, task_spec, spec.name, task_spec.name)
    task = make_task(task_spec)
    work = work_dir_for(out)
    if resume and not (work / CHECKPOINT_NAME).is_file():
        raise DataError(f"{work / CHECKPOINT_NAME}: no checkpoint to resume from")
    if not resume and work.exists():
        if not overwrite:
            raise OutputError(f"{work}: an interrupted run left its checkpoint here; pass "
                              "--resume to continue it or --overwrite to start again")
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    model = TaskRNN(spec, device=device, seed=seed)
    before_path = work / "weights_before.npz"
    if not resume:
        np.savez(before_path, **model.build(task).weights())
        (work / "spec.yaml").write_text(dump_spec(spec))
    elif (work / "spec.yaml").read_text() != dump_spec(spec):
        raise SpecError(f"{work}: the checkpoint was trained with another spec "
                        "(resume with the same SPEC and --set)")
    model.fit(task, progress=progress, run=Run(checkpoint_dir=work, resume=resume))
    before = dict(np.load(before_path))
    after = model.weights()
    test = task.generate(spec.training.validation_trials, np.random.default_rng([seed, 4]))
    test_loss, test_acc = evaluate(model.network_, task, test, seed + 5)
    h = model.fit_report_
    change = weight_change(before["w_rec"], after["w_rec"])
    metrics = {"spec": spec.name, "task": task_spec.name, "seed": seed, "device": device,
               "n_steps": model.n_steps_, "train_time_s": model.train_seconds_,
               "resumed_from_step": model.resumed_from_,
               "final_train_loss": h.train_loss[-1] if h.train_loss else None,
               "val_loss": h.val_loss[-1], "val_accuracy": h.val_accuracy[-1],
               "test_loss": test_loss, "test_accuracy": test_acc,
               "spectral_radius_before": change.radius_before,
               "spectral_radius_after": change.radius_after,
               "delta_w_relative": change.relative_change,
               "delta_w_rank90": change.rank90,
               "delta_w_participation_ratio": change.effective_rank,
               "mean_weight_drift": change.mean_drift,
               "non_normality_before": change.non_normality_before,
               "non_normality_after": change.non_normality_after}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        shutil.copy(before_path, tmp / "weights_before.npz")
        np.savez(tmp / "weights_after.npz", **after)
        model.save(tmp)  # model.pt (TaskRNN.load reads it) and spec.yaml
        write_json(tmp / "history.json", model.history_)
        write_json(tmp / "metrics.json", metrics)
        training_report(tmp, f"{spec.name} trained on {task_spec.name}", metrics,
                        model.history_, before["w_rec"], after["w_rec"])
    shutil.rmtree(work, ignore_errors=True)
    return metrics
