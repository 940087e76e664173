"""The ctrnn study: 10 networks per task (perception, decision) trained from different seeds,
weights saved before/after, and the dynamical-systems analyses; plus the leaky-ReLU angle sweep
of predictive information and the 3-bit flip-flop fixed-point check.

    python analyses/ctrnn_tasks/run.py --out results/ctrnn_tasks            # the whole study
    python analyses/ctrnn_tasks/run.py --out results/ctrnn_tasks --jobs 16 --max-minutes 8
    python analyses/ctrnn_tasks/run.py --out /tmp/ct --networks 3 --steps 300 --quick

``--jobs N`` trains the networks (main study, θ sweep, flip-flop: one job each) in N worker
processes of one thread each, with the same numbers as ``--jobs 1``. ``--max-minutes M`` stops
training in time to write the report with the networks that finished (``metrics.json`` says
how many; a network stopped part-way is left out, not analysed half-trained).

Writes ``results.csv`` (one row per network), ``metrics.json`` (the headline numbers),
``weights/<task>_seed<k>_{before,after}.npz``, figures and ``report.html``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.stats
import torch

from neurorec.analysis.dynamics import (
    centrality,
    dca_trajectories,
    eigen_spectrum,
    pca_trajectories,
    random_subspace_angles,
    smallest_angle_deg,
    subspace_angles,
    top_fraction_kept,
    weight_change,
)
from neurorec.analysis.fixed_points import ctrnn_step_map, find_fixed_points, summarize
from neurorec.core.errors import DataError, SpecError
from neurorec.families.ctrnn.model import build_ctrnn, load_weights
from neurorec.families.ctrnn.train import evaluate, task_log, train
from neurorec.fit.run import FitLog
from neurorec.report import html
from neurorec.spec import load_model_spec, load_stimulus_spec
from neurorec.tasks import make_task
from neurorec.workflows import study
from neurorec.workflows.study import Budget, current_budget

REPO = Path(__file__).resolve().parents[2]


def rollout(model, task, seed: int, n_trials: int = 64):
    trials = task.generate(n_trials, np.random.default_rng([seed, 9]))
    device = model.w_out.device
    with torch.no_grad():
        r, z = model(torch.as_tensor(trials.inputs, dtype=model.w_out.dtype, device=device),
                     generator=torch.Generator(device=device).manual_seed(seed))
    return trials, r.double().cpu().numpy(), z.double().cpu().numpy()


@dataclass
class Trained:
    """A trained network's curves and training time (trained here, or read back from
    ``--weights-from``)."""

    history: FitLog
    seconds: float
    reused: bool


def _train(model, task, spec, seed: int, args, what: str, tag: str, out: Path) -> Trained:
    """Train ``model`` in place (stopping with OutOfTime once the run's ``--max-minutes``
    budget is spent), or, when ``--weights-from DIR`` holds this network (``tag``) with the
    same initial weights, load its trained weights and curves from there instead. Either
    way ``out/weights/<tag>_{before,after}.npz`` and ``<tag>_history.json`` are written."""
    before = model.weights()
    weights = out / "weights"
    src = args.weights_from / "weights" if args.weights_from is not None else None
    if src is not None and (src / f"{tag}_after.npz").exists() \
            and (src / f"{tag}_history.json").exists():
        with np.load(src / f"{tag}_before.npz") as f:
            same_init = all(np.array_equal(f[k], v) for k, v in before.items())
        if not same_init:  # a different spec or seed: retrain rather than mix networks
            raise DataError(f"{src / (tag + '_before.npz')}: initial weights differ from "
                            f"this run's {what} (other spec or seed?)")
        with np.load(src / f"{tag}_after.npz") as f:
            load_weights(model, {k: f[k] for k in f.files})
        saved = json.loads((src / f"{tag}_history.json").read_text())
        result = Trained(task_log(saved["history"]), saved["train_s"], True)
    elif args.analyse_only:
        raise study.OutOfTime(f"{what}: no trained weights in {src} (--analyse-only)")
    else:
        budget = current_budget()

        def stop_when_out_of_time(step, _model, _loss):
            budget.check(f"{what}: stopped at step {step} of {spec.training.n_steps}")

        r = train(model, task, spec.training, seed=seed, progress=args.progress,
                  callback=stop_when_out_of_time if budget.stop_at is not None else None)
        result = Trained(r.history, r.seconds, False)
    np.savez(weights / f"{tag}_before.npz", **before)
    np.savez(weights / f"{tag}_after.npz", **model.weights())
    (weights / f"{tag}_history.json").write_text(json.dumps(
        {"history": result.history.extras, "train_s": result.seconds}))
    return result


def latent_summary(model, task, seed: int, d: int, window: int) -> dict:
    trials, rates, outputs = rollout(model, task, seed)
    pca = pca_trajectories(rates, d)
    dca = dca_trajectories(rates, d=d, window=window, seed=seed)
    return {"trials": trials, "rates": rates, "pca": pca, "dca": dca, "pi": dca.pi,
            "accuracy": task.accuracy(outputs, trials)}


# Constant inputs whose fixed points are sought, one per condition of the task (the trials'
# first condition label): the perception levels, and for the decision task one clear input
# pair per choice (choice k: input k is the larger).
DECISION_FP_INPUTS = {0: (0.75, 0.45), 1: (0.45, 0.75)}


def fp_conditions(task_name: str, task) -> dict[str, tuple[float, np.ndarray]]:
    """``{name: (label value, constant input (I,))}`` for :func:`condition_fixed_points`."""
    if task_name == "perception":
        return {f"level{v:g}": (v, np.array([v])) for v in task.spec.levels}
    if task_name == "decision":
        return {f"choice{k}": (k, np.array(u)) for k, u in DECISION_FP_INPUTS.items()}
    return {}


def condition_fixed_points(model, rates: np.ndarray, labels: np.ndarray, conditions: dict,
                           args, seed: int) -> dict[str, object]:
    """Fixed and slow points of the noise-free map under each condition's constant input,
    searched from ``--fp-study-starts`` states of that condition's trajectories."""
    rng = np.random.default_rng([seed, 11])
    found = {}
    for name, (value, u) in conditions.items():
        states = rates[labels == value][:, ::5].reshape(-1, rates.shape[-1])
        if not len(states):
            continue
        pick = rng.choice(len(states), min(args.fp_study_starts, len(states)), replace=False)
        found[name] = find_fixed_points(ctrnn_step_map(model, u), states[pick],
                                        n_iter=args.fp_study_iter, lr=1e-2, noise=0.01,
                                        q_tol=1e-10, dedupe_tol=1e-3, seed=seed)
    return found


def fp_readout_ok(task_name: str, task, value, z: np.ndarray) -> np.ndarray:
    """(K,) whether readouts ``z`` (K, O) at fixed points would be scored correct for the
    condition ``value`` (perception: |z - target| < tolerance; decision: argmax = choice)."""
    if task_name == "perception":
        target = dict(zip(task.spec.levels, task.spec.targets, strict=True))[value]
        return np.abs(z[:, 0] - target) < task.spec.tolerance
    return np.argmax(z, axis=1) == value


def condition_angle(rates: np.ndarray, labels: np.ndarray, d: int) -> float:
    """Smallest principal angle (deg) between the top-d PCA spaces of two conditions."""
    values = np.unique(labels)
    if len(values) < 2:
        return float("nan")
    a = pca_trajectories(rates[labels == values[0]], d).components
    b = pca_trajectories(rates[labels == values[-1]], d).components
    return float(np.degrees(subspace_angles(a, b).min()))


def _require_weights(args, tag: str, what: str) -> None:
    """Under ``--analyse-only``, stop a network without trained weights before any work."""
    if args.analyse_only and not (args.weights_from / "weights" / f"{tag}_after.npz").exists():
        raise study.OutOfTime(f"{what}: no trained weights in {args.weights_from / 'weights'}"
                              " (--analyse-only)")


def one_network(spec, task, task_name: str, seed: int, out: Path, args) -> dict:
    _require_weights(args, f"{task_name}_seed{seed}", f"{task_name} seed {seed}")
    model = build_ctrnn(spec, task.n_inputs, task.n_outputs, seed=seed, device=args.device)
    before = model.weights()
    if args.train_only:
        result = _train(model, task, spec, seed, args, f"{task_name} seed {seed}",
                        f"{task_name}_seed{seed}", out)
        return {"task": task_name, "seed": seed, "n_units": spec.n_units,
                "train_s": result.seconds, "final_val_loss": result.history.val_loss[-1]}
    pre = latent_summary(model, task, seed, args.d, args.window)
    result = _train(model, task, spec, seed, args, f"{task_name} seed {seed}",
                    f"{task_name}_seed{seed}", out)
    after = model.weights()
    test = task.generate(512, np.random.default_rng([seed, 4]))
    test_loss, test_acc = evaluate(model, task, test, seed + 5)
    post = latent_summary(model, task, seed, args.d, args.window)
    change = weight_change(before["w_rec"], after["w_rec"])
    label = next(iter(post["trials"].conditions.values()))
    readout = after["w_out"]
    c_before, c_after = centrality(before["w_rec"]), centrality(after["w_rec"])
    conditions = fp_conditions(task_name, task)
    fps = condition_fixed_points(model, post["rates"], label, conditions, args, seed)
    fp_cols = {}
    for name, f in fps.items():
        counts = summarize(f, slow_tol=args.slow_tol)
        fp_cols.update({f"fp_{name}_{k}": v for k, v in counts.items()})
        stable = f.points[[s == "stable" and x for s, x in zip(f.stability, f.fixed,
                                                               strict=True)]]
        ok = fp_readout_ok(task_name, task, conditions[name][0], stable @ readout.T)
        fp_cols[f"fp_{name}_stable_readout_ok"] = float(ok.mean()) if len(ok) else float("nan")
    pca0, pca1 = pre["pca"].components, post["pca"].components
    dca0, dca1 = pre["dca"].basis, post["dca"].basis
    angles = {"angle_pre_post_deg": smallest_angle_deg(pca0, pca1),
              "angle_pre_post_dca_deg": smallest_angle_deg(dca0, dca1),
              "angle_readout_untrained_deg": smallest_angle_deg(pca0, readout),
              "angle_readout_deg": smallest_angle_deg(pca1, readout),
              "angle_readout_dca_untrained_deg": smallest_angle_deg(dca0, readout),
              "angle_readout_dca_deg": smallest_angle_deg(dca1, readout),
              "angle_pca_dca_untrained_deg": smallest_angle_deg(pca0, dca0),
              "angle_pca_dca_deg": smallest_angle_deg(pca1, dca1),
              "angle_conditions_deg": condition_angle(post["rates"], label, args.d)}
    latent = None
    if seed == 0:  # the study's figures 2-3: one network per task
        latent = {"pca": post["pca"], "dca": post["dca"], "labels": label,
                  "conditions": conditions, "fps": fps}
    return {"task": task_name, "seed": seed, "n_units": spec.n_units,
            "train_s": result.seconds, "reused_weights": result.reused,
            "test_loss": test_loss, "test_accuracy": test_acc,
            "untrained_accuracy": pre["accuracy"],
            "final_val_loss": result.history.val_loss[-1],
            "radius_before": change.radius_before, "radius_after": change.radius_after,
            "delta_w_relative": change.relative_change, "delta_w_rank90": change.rank90,
            "delta_w_pr": change.effective_rank,
            "delta_w_sv1_frac": float(change.singular_values[0] ** 2
                                      / (change.singular_values ** 2).sum()),
            "mean_weight_drift": change.mean_drift,
            "non_normality_before": change.non_normality_before,
            "non_normality_after": change.non_normality_after,
            "centrality_spearman": float(scipy.stats.spearmanr(c_before, c_after)[0]),
            "pi_untrained": pre["pi"], "pi_trained": post["pi"],
            **angles,
            "pca3_variance": float(post["pca"].explained.sum()),
            "mean_w_before": float(before["w_rec"].mean()),
            "mean_w_after": float(after["w_rec"].mean()),
            "centrality_top10_kept": top_fraction_kept(c_before, c_after, 0.1),
            **fp_cols, "_latent": latent,
            "_history": result.history, "_spectra": (eigen_spectrum(before["w_rec"]),
                                                     eigen_spectrum(after["w_rec"])),
            "_rollout_accuracy": post["accuracy"]}


def main_network_job(spec, task_name: str, seed: int, out: Path, args) -> dict:
    """One network of the main study (a job of the pool)."""
    task = make_task(load_stimulus_spec(REPO / f"stimuli/task_{task_name}.yaml"))
    return one_network(spec, task, task_name, seed, out, args)


def task_specs(args, tasks: list[str]) -> dict[str, Path]:
    """The spec file of each task: ``--spec`` unless ``--task-spec TASK=PATH`` names one
    (default: the study's N = 256 decision networks)."""
    paths = {t: args.spec for t in tasks}
    for item in args.task_spec:
        name, sep, path = item.partition("=")
        if not sep or name not in tasks:
            raise SpecError(f"--task-spec {item}: want TASK=PATH with TASK one of {tasks}")
        paths[name] = Path(path) if Path(path).is_absolute() else REPO / path
    return paths


def theta_spec(spec_path: Path, theta: float, args):
    return load_model_spec(spec_path, [*args.set, "nonlinearity=leaky_relu",
                                       f"leak_angle={theta}", f"training.n_steps={args.steps}"])


def theta_network(spec_path: Path, task_name: str, theta: float, seed: int, out: Path,
                  args) -> dict:
    """One network of the leaky-ReLU angle sweep on ``task_name`` (study fig. 6)."""
    _require_weights(args, f"theta{theta:g}_{task_name}_seed{seed}",
                     f"{task_name} theta {theta:g} seed {seed}")
    task = make_task(load_stimulus_spec(REPO / f"stimuli/task_{task_name}.yaml"))
    spec = theta_spec(spec_path, theta, args)
    model = build_ctrnn(spec, task.n_inputs, task.n_outputs, seed=seed, device=args.device)
    if args.train_only:
        result = _train(model, task, spec, seed, args, f"{task_name} theta {theta:g} seed "
                        f"{seed}", f"theta{theta:g}_{task_name}_seed{seed}", out)
        return {"task": task_name, "theta_deg": theta, "seed": seed,
                "train_s": result.seconds, "final_val_loss": result.history.val_loss[-1]}
    pre = latent_summary(model, task, seed, args.d, args.window)
    _train(model, task, spec, seed, args, f"{task_name} theta {theta:g} seed {seed}",
           f"theta{theta:g}_{task_name}_seed{seed}", out)
    post = latent_summary(model, task, seed, args.d, args.window)
    return {"task": task_name, "n_units": spec.n_units, "theta_deg": theta, "seed": seed,
            "pi_untrained": pre["pi"], "pi_trained": post["pi"],
            "accuracy": post["accuracy"]}


def theta_is_main(spec, theta: float) -> bool:
    """θ = 0 leaky ReLU is ReLU: the same network, trained on the same trials and noise, as the
    main perception network of that seed when the main spec is ReLU (reused, not retrained)."""
    return theta == 0.0 and spec.nonlinearity in ("relu", "leaky_relu") and (
        spec.nonlinearity == "relu" or spec.leak_angle == 0.0)


def flip_flop(args, out: Path) -> dict:
    """Train the 3-bit flip-flop network and count its stable fixed points (expect 8)."""
    task = make_task(load_stimulus_spec(REPO / "stimuli/task_flip_flop.yaml"))
    spec = load_model_spec(REPO / "models/ctrnn_flipflop.yaml",
                           [f"training.n_steps={args.flipflop_steps}"])
    model = build_ctrnn(spec, task.n_inputs, task.n_outputs, seed=0, device=args.device)
    result = _train(model, task, spec, 0, args, "flip-flop", "flipflop_seed0", out)
    if args.train_only:
        return {"flipflop_train_s": result.seconds}
    model = model.double().cpu()
    _, rates, _ = rollout(model, task, 0, 64)
    starts = rates[:, ::5].reshape(-1, spec.n_units)
    starts = starts[np.random.default_rng(0).choice(len(starts), args.fp_starts, replace=False)]
    fps = find_fixed_points(ctrnn_step_map(model), starts, n_iter=args.fp_iter, lr=1e-2,
                            noise=0.01, q_tol=1e-10, dedupe_tol=1e-3)
    stable = fps.points[[s == "stable" and f for s, f in zip(fps.stability, fps.fixed,
                                                            strict=True)]]
    readout = np.sign(stable @ model.weights()["w_out"].T)
    patterns = {tuple(int(x) for x in p) for p in readout}
    pca = pca_trajectories(rates, 3)
    fig = plt.figure(figsize=(5, 5))
    ax = fig.add_subplot(projection="3d")
    for trial in pca.trajectories[:8]:
        ax.plot(*trial.T, lw=0.5, color="0.6")
    for p, s, f in zip(fps.points, fps.stability, fps.fixed, strict=True):
        xyz = (p - pca.mean) @ pca.components.T
        ax.scatter(*xyz, color={"stable": "k", "saddle": "r", "unstable": "b"}[s],
                   marker="o" if f else "x", s=25)
    ax.set_title("flip-flop: stable (black), saddle (red) points")
    study.save_figure(fig, out / "flipflop_fixed_points.png", dpi=90, tight=False)
    return {"flipflop_steps": args.flipflop_steps,
            "flipflop_val_accuracy": result.history.val_accuracy[-1],
            "flipflop_stable_fixed_points": len(stable),
            "flipflop_distinct_output_patterns": len(patterns),
            "flipflop_saddles": fps.count("saddle"),
            "flipflop_slow_points": int((~fps.fixed).sum()),
            "flipflop_train_s": result.seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    study.add_common_args(ap, "out")
    ap.add_argument("--spec", type=Path, default=REPO / "models/ctrnn_study.yaml",
                    help="model spec of every task without a --task-spec")
    ap.add_argument("--task-spec", action="append", default=None, metavar="TASK=PATH",
                    help="model spec of one task (repeatable; default: "
                         "decision=models/ctrnn_study_256.yaml, the study's N = 256)")
    ap.add_argument("--theta-tasks", default="perception,decision",
                    help="tasks of the leaky-ReLU angle sweep")
    ap.add_argument("--weights-from", type=Path, default=None, metavar="DIR",
                    help="an earlier run's folder: networks whose trained weights are there "
                         "(same initial weights) are loaded instead of retrained")
    ap.add_argument("--tasks", default="perception,decision")
    ap.add_argument("--networks", type=int, default=10, help="seeds per task")
    ap.add_argument("--steps", type=int, default=None, help="override training.n_steps")
    study.add_common_args(ap, "set")
    ap.add_argument("--thetas", type=float, nargs="*", default=[0.0, 15.0, 30.0, 45.0])
    ap.add_argument("--theta-networks", type=int, default=3)
    ap.add_argument("--flipflop-steps", type=int, default=1500)
    ap.add_argument("--fp-starts", type=int, default=256)
    ap.add_argument("--fp-iter", type=int, default=1500)
    ap.add_argument("--fp-study-starts", type=int, default=64,
                    help="fixed-point search starts per condition (study networks)")
    ap.add_argument("--fp-study-iter", type=int, default=1000,
                    help="Adam iterations of the study networks' fixed-point search")
    ap.add_argument("--slow-tol", type=float, default=1e-6,
                    help="q below which a non-fixed minimum counts as a slow point")
    ap.add_argument("--d", type=int, default=3, help="latent dimension (PCA, DCA)")
    ap.add_argument("--window", type=int, default=5, help="DCA past/future window T, steps")
    ap.add_argument("--skip", default="", help="comma list of: theta, flipflop")
    ap.add_argument("--results-md", type=Path, default=None, metavar="PATH",
                    help="also write the claim-by-claim RESULTS.md (results_md.py) there")
    ap.add_argument("--analyse-only", action="store_true",
                    help="with --weights-from: analyse the networks found there, train none")
    ap.add_argument("--train-only", action="store_true",
                    help="train and save weights and curves (trained.csv), no analyses: "
                         "analyse later with --weights-from")
    study.add_common_args(ap, "jobs", "max_minutes", "device", "quiet", "overwrite", helps={
        "jobs": "worker processes (one thread each); one job per network",
        "device": "cpu or cuda (every worker uses it)"})
    args = ap.parse_args()
    if args.analyse_only and args.weights_from is None:
        raise SpecError("--analyse-only: needs --weights-from DIR")
    study.require({"dca": "DynamicalComponentsAnalysis", "networkx": "networkx",
                   "sklearn": "scikit-learn"})
    budget = Budget.from_minutes(args.max_minutes)
    study.apply_thread_policy(1)
    args.progress = not args.quiet and args.jobs <= 1  # bars from many workers would interleave
    if args.steps is not None:
        args.set = [*args.set, f"training.n_steps={args.steps}"]
    tasks = args.tasks.split(",")
    if args.task_spec is None:
        args.task_spec = ["decision=models/ctrnn_study_256.yaml"] if "decision" in tasks else []
    spec_paths = task_specs(args, tasks)
    specs = {t: load_model_spec(spec_paths[t], args.set) for t in tasks}
    spec = specs[tasks[0]]
    args.steps = spec.training.n_steps
    theta_tasks = [t for t in args.theta_tasks.split(",") if t in tasks]
    skip = set(filter(None, args.skip.split(",")))
    start = time.perf_counter()
    with study.output_dir(args) as out:
        (out / "weights").mkdir()
        # flip-flop first (shorter, so it does not trail), then the main networks, then the
        # θ sweep seed by seed (a run stopped by --max-minutes has every angle's first seeds)
        jobs = []
        if "flipflop" not in skip:
            jobs.append((("flipflop",), flip_flop, (args, out)))
        jobs += [(("main", t, seed), main_network_job, (specs[t], t, seed, out, args))
                 for seed in range(args.networks) for t in tasks]
        reused = set()
        if "theta" not in skip:
            for seed in range(args.theta_networks):
                for t in theta_tasks:
                    for theta in args.thetas:
                        if seed < args.networks and theta_is_main(specs[t], theta):
                            reused.add((t, theta, seed))
                        else:
                            jobs.append((("theta", t, theta, seed), theta_network,
                                         (spec_paths[t], t, theta, seed, out, args)))
        print(study.start_line(len(jobs), args), flush=True)
        outcomes = study.run_jobs(jobs, args.jobs, budget,
                                  on_done=_trained_line if args.train_only else _progress_line)
        if args.train_only:  # weights and curves only, for a later --weights-from run
            study.write_csv(out / "trained.csv", [
                {"job": _name(k), "status": o.status, "seconds": o.seconds,
                 **(o.result if o.status == "done" else {})} for k, o in outcomes.items()])
            print(f"trained: {study.summary(outcomes)}")
            return

        rows, extras, rollout_acc, latents = [], {}, {}, {}
        for key, o in outcomes.items():
            if key[0] == "main" and o.status == "done":
                row = dict(o.result)
                extras[(row["task"], row["seed"])] = (row.pop("_history"), row.pop("_spectra"))
                if (latent := row.pop("_latent")) is not None:
                    latents[row["task"]] = latent
                rollout_acc[(row["task"], row["seed"])] = row.pop("_rollout_accuracy")
                rows.append(row)
        rows.sort(key=lambda r: (tasks.index(r["task"]), r["seed"]))
        table = pd.DataFrame(rows)
        table.to_csv(out / "results.csv", index=False)
        not_done = [(_name(key), o.status, o.detail) for key, o in outcomes.items()
                    if o.status != "done"]
        metrics = {"spec": {t: specs[t].name for t in tasks},
                   "n_steps": spec.training.n_steps,
                   "learning_rate": spec.training.learning_rate, "trained": list(spec.train),
                   "n_units": {t: specs[t].n_units for t in tasks},
                   "networks_per_task": args.networks,
                   "weights_from": str(args.weights_from) if args.weights_from else None,
                   "networks_completed": {t: int((table["task"] == t).sum()) if len(table)
                                          else 0 for t in tasks},
                   "jobs": args.jobs, "device": args.device, "max_minutes": args.max_minutes,
                   "jobs_not_completed": study.not_completed(outcomes, _name)}
        for task_name, group in (table.groupby("task") if len(table) else []):
            for col in group.columns:
                if col in ("task", "seed", "reused_weights") or group[col].isna().all() or \
                        not pd.api.types.is_numeric_dtype(group[col]):
                    continue
                metrics[f"{task_name}.{col}.mean"] = float(group[col].mean())
                metrics[f"{task_name}.{col}.sd"] = float(group[col].std(ddof=0))
            # chance level of the angles: random d-dim subspaces vs the readout, and vs each
            # other (pre/post, PCA/DCA), in the same N
            n, n_out = int(group["n_units"].iloc[0]), 2 if task_name == "decision" else 1
            for what, d2 in (("readout", n_out), ("subspaces", args.d)):
                chance = random_subspace_angles(n, args.d, d2, 2000, seed=0)
                metrics[f"{task_name}.angle_chance_{what}_deg.median"] = float(np.median(chance))
                metrics[f"{task_name}.angle_chance_{what}_deg.p05"] = float(
                    np.percentile(chance, 5))
        sections = []
        if len(table):
            _figures(out, extras)
            for task_name, latent in latents.items():
                _latent_figure(task_name, latent, out / f"latent_{task_name}.png")
                sections.append((f"Latent trajectories and fixed points: {task_name}",
                                 html.figure(f"latent_{task_name}.png", "PCA and DCA")))
            sections += [("Per-task summary (mean over networks)",
                          html.table(table.drop(columns="seed").groupby("task").mean()
                                     .reset_index().round(4).values.tolist(),
                                     ["task", *table.drop(columns=["seed", "task"]).columns])),
                         ("Learning and spectra", html.figure("training.png", "curves, spectra"))]
        if "theta" not in skip:
            theta_rows = []
            for seed in range(args.theta_networks):
                for t in theta_tasks:
                    for theta in args.thetas:
                        if (t, theta, seed) in reused:
                            main_row = next((r for r in rows if r["task"] == t
                                             and r["seed"] == seed), None)
                            if main_row is not None:
                                theta_rows.append({
                                    "task": t, "n_units": main_row["n_units"],
                                    "theta_deg": theta, "seed": seed,
                                    "pi_untrained": main_row["pi_untrained"],
                                    "pi_trained": main_row["pi_trained"],
                                    "accuracy": rollout_acc[(t, seed)]})
                        elif outcomes[("theta", t, theta, seed)].status == "done":
                            theta_rows.append(outcomes[("theta", t, theta, seed)].result)
            sweep = pd.DataFrame(theta_rows, columns=["task", "n_units", "theta_deg", "seed",
                                                      "pi_untrained", "pi_trained", "accuracy"])
            sweep = sweep.sort_values(["task", "theta_deg", "seed"]).reset_index(drop=True)
            sweep.to_csv(out / "theta_sweep.csv", index=False)
            metrics["theta_networks_completed"] = {
                f"{t} {th:g}": int(((sweep["theta_deg"] == th) & (sweep["task"] == t)).sum())
                for t in theta_tasks for th in args.thetas}
            if len(sweep):
                _theta_figure(sweep, out / "pi_vs_theta.png")
                sections.append(("Predictive information vs leaky-ReLU angle",
                                 html.figure("pi_vs_theta.png", "DCA PI, trained vs untrained")))
            for (t, theta), g in sweep.groupby(["task", "theta_deg"]):
                metrics[f"{t}.pi_theta_{theta:g}.untrained"] = float(g["pi_untrained"].mean())
                metrics[f"{t}.pi_theta_{theta:g}.trained"] = float(g["pi_trained"].mean())
        if "flipflop" not in skip and outcomes[("flipflop",)].status == "done":
            metrics.update(outcomes[("flipflop",)].result)
            sections.append(("3-bit flip-flop fixed points",
                             html.figure("flipflop_fixed_points.png", "fixed points")))
        metrics["wall_time_s"] = time.perf_counter() - start
        study.write_json(out / "metrics.json", metrics)
        if not_done:
            sections.insert(0, ("Jobs not completed (failed, or stopped by --max-minutes)",
                                html.table([list(r) for r in not_done],
                                           ["job", "status", "detail"])))
        sections.insert(0, ("Headline numbers", html.table(list(metrics.items()),
                                                           ["metric", "value"])))
        study.write_report(out, "ctrnn study: perception and decision networks", sections)
    print(f"report: {args.out / 'report.html'}")
    if args.results_md is not None:
        from results_md import write_results  # beside this script

        command = " ".join(["python analyses/ctrnn_tasks/run.py", *sys.argv[1:]])
        print(f"results: {write_results(args.out, args.results_md, command)}")
    study.exit_if_failed(outcomes, lambda key: f"job {_name(key)}")


def _name(key: tuple) -> str:
    return " ".join(map(str, key))


def _trained_line(o) -> None:
    print(f"{_name(o.key)}: {o.status} ({o.seconds:.0f} s) {o.detail}", flush=True)


def _progress_line(o) -> None:
    name = " ".join(f"{k:g}" if isinstance(k, float) else str(k) for k in o.key)
    if o.status != "done":
        print(f"{name}: {o.status} {o.detail}", flush=True)
    elif o.key[0] == "main":
        row = o.result
        print(f"{row['task']} seed {row['seed']}: test accuracy {row['test_accuracy']:.3f} "
              f"(untrained {row['untrained_accuracy']:.3f}), ΔW rank90 "
              f"{row['delta_w_rank90']}, radius {row['radius_before']:.3f} -> "
              f"{row['radius_after']:.3f}, PI {row['pi_untrained']:.3f} -> "
              f"{row['pi_trained']:.3f} nats ({o.seconds:.0f} s)", flush=True)
    elif o.key[0] == "theta":
        r = o.result
        print(f"{r['task']} theta {r['theta_deg']:5.1f} seed {r['seed']}: PI "
              f"{r['pi_untrained']:.3f} -> "
              f"{r['pi_trained']:.3f} nats, accuracy {r['accuracy']:.2f} ({o.seconds:.0f} s)",
              flush=True)
    else:
        r = o.result
        print(f"flip-flop: {r['flipflop_stable_fixed_points']} stable fixed points, "
              f"{r['flipflop_saddles']} saddles, val. accuracy {r['flipflop_val_accuracy']:.4f}"
              f" ({o.seconds:.0f} s)", flush=True)


def _figures(out: Path, extras: dict) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    colors = {"perception": "C0", "decision": "C1"}
    for (task_name, _), (hist, (lb, la)) in extras.items():
        color = colors.get(task_name, "C2")
        axes[0].semilogy(hist.val_step, hist.val_loss, color=color, lw=0.8)
        axes[1].plot(lb.real, lb.imag, ".", ms=2, color="0.5")
        axes[2].plot(la.real, la.imag, ".", ms=2, color=color)
    handles = [plt.Line2D([], [], color=c, label=t) for t, c in colors.items()]
    axes[0].legend(handles=handles)
    axes[2].legend(handles=handles)
    axes[0].set(xlabel="step", ylabel="validation loss (masked L2)", title="training")
    lim = max(max(abs(ax.get_xlim()[i]) for i in (0, 1)) for ax in axes[1:])
    for ax, when in ((axes[1], "before"), (axes[2], "after")):
        ax.axvline(1.0, color="k", lw=0.5, ls="--")  # Re λ = 1: the linearised stability edge
        ax.set(xlabel="Re λ", ylabel="Im λ", title=f"W_rec eigenvalues {when} training",
               xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
    study.save_figure(fig, out / "training.png", dpi=90)


def _latent_figure(task_name: str, latent: dict, path: Path) -> None:
    """Trained network (seed 0): trajectories (16 trials, coloured by condition) in the top-3
    PCA and DCA spaces with each condition's fixed points (o stable, x saddle, + unstable;
    small dots: slow points), the study's figures 2-3."""
    fig = plt.figure(figsize=(10, 4.5))
    labels = latent["labels"]
    values = list(np.unique(labels))
    cmap = plt.get_cmap("coolwarm")
    colour = {v: cmap(i / max(1, len(values) - 1)) for i, v in enumerate(values)}
    for k, space in enumerate(("pca", "dca")):
        ax = fig.add_subplot(1, 2, k + 1, projection="3d")
        res = latent[space]
        basis = res.components if space == "pca" else res.basis
        for trial, lab in zip(res.trajectories[:16], labels[:16], strict=True):
            ax.plot(*trial.T, lw=0.6, color=colour[lab], alpha=0.7)
        for name, fps in latent["fps"].items():
            value = latent["conditions"][name][0]
            nearest = min(values, key=lambda v, value=value: abs(v - value))
            for p, st, fx in zip(fps.points, fps.stability, fps.fixed, strict=True):
                xyz = (p - res.mean) @ basis.T
                if fx:
                    ax.scatter(*xyz, color=colour[nearest], edgecolor="k", s=40,
                               marker={"stable": "o", "saddle": "X", "unstable": "P"}[st])
                else:
                    ax.scatter(*xyz, color=colour[nearest], s=4)
        ax.set_title(f"{task_name}: {space.upper()} space")
    fig.suptitle("trained, seed 0; colour = condition; fixed points: o stable, X saddle, "
                 "P unstable; dots = slow points", fontsize=9)
    study.save_figure(fig, path, dpi=80, tight=False)


def _theta_figure(sweep: pd.DataFrame, path: Path) -> None:
    names = list(dict.fromkeys(sweep["task"]))
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for ax, t in zip(axes[0], names, strict=True):
        g = (sweep[sweep["task"] == t].groupby("theta_deg")[["pi_untrained", "pi_trained"]]
             .agg(["mean", "std"]))
        for col, label in (("pi_untrained", "untrained"), ("pi_trained", "trained")):
            ax.errorbar(g.index, g[(col, "mean")], g[(col, "std")], marker="o", label=label)
        ax.set(xlabel="leaky-ReLU angle θ (deg)", ylabel="predictive information (nats)",
               title=t)
        ax.legend()
    study.save_figure(fig, path, dpi=90)


if __name__ == "__main__":
    from neurorec.core.errors import run_script

    run_script(main)
