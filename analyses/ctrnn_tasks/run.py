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
import time
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
    dca_predictive_information,
    eigen_spectrum,
    pca_trajectories,
    subspace_angles,
    weight_change,
)
from neurorec.analysis.fixed_points import ctrnn_step_map, find_fixed_points
from neurorec.families.ctrnn.model import build_ctrnn
from neurorec.families.ctrnn.train import evaluate, train
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


def _train(model, task, spec, seed: int, args, what: str):
    """``train`` that stops (OutOfTime) once the run's ``--max-minutes`` budget is spent."""
    budget = current_budget()

    def stop_when_out_of_time(step, _model, _loss):
        budget.check(f"{what}: stopped at step {step} of {spec.training.n_steps}")

    return train(model, task, spec.training, seed=seed, progress=args.progress,
                 callback=stop_when_out_of_time if budget.stop_at is not None else None)


def latent_summary(model, task, seed: int, d: int, window: int) -> dict:
    trials, rates, outputs = rollout(model, task, seed)
    pca = pca_trajectories(rates, d)
    pi, _ = dca_predictive_information(rates, d=d, window=window, seed=seed)
    return {"trials": trials, "rates": rates, "pca": pca, "pi": pi,
            "accuracy": task.accuracy(outputs, trials)}


def condition_angle(rates: np.ndarray, labels: np.ndarray, d: int) -> float:
    """Smallest principal angle (deg) between the top-d PCA spaces of two conditions."""
    values = np.unique(labels)
    if len(values) < 2:
        return float("nan")
    a = pca_trajectories(rates[labels == values[0]], d).components
    b = pca_trajectories(rates[labels == values[-1]], d).components
    return float(np.degrees(subspace_angles(a, b).min()))


def one_network(spec, task, task_name: str, seed: int, out: Path, args) -> dict:
    model = build_ctrnn(spec, task.n_inputs, task.n_outputs, seed=seed, device=args.device)
    before = model.weights()
    pre = latent_summary(model, task, seed, args.d, args.window)
    result = _train(model, task, spec, seed, args, f"{task_name} seed {seed}")
    after = model.weights()
    np.savez(out / "weights" / f"{task_name}_seed{seed}_before.npz", **before)
    np.savez(out / "weights" / f"{task_name}_seed{seed}_after.npz", **after)
    test = task.generate(512, np.random.default_rng([seed, 4]))
    test_loss, test_acc = evaluate(model, task, test, seed + 5)
    post = latent_summary(model, task, seed, args.d, args.window)
    change = weight_change(before["w_rec"], after["w_rec"])
    label = next(iter(post["trials"].conditions.values()))
    readout = after["w_out"]
    c_before, c_after = centrality(before["w_rec"]), centrality(after["w_rec"])
    return {"task": task_name, "seed": seed, "train_s": result.seconds,
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
            "angle_pre_post_deg": float(np.degrees(subspace_angles(
                pre["pca"].components, post["pca"].components).min())),
            "angle_conditions_deg": condition_angle(post["rates"], label, args.d),
            "angle_readout_deg": float(np.degrees(subspace_angles(
                post["pca"].components, readout).min())),
            "pca3_variance": float(post["pca"].explained.sum()),
            "_history": result.history, "_spectra": (eigen_spectrum(before["w_rec"]),
                                                     eigen_spectrum(after["w_rec"])),
            "_rollout_accuracy": post["accuracy"]}


def main_network_job(spec, task_name: str, seed: int, out: Path, args) -> dict:
    """One network of the main study (a job of the pool)."""
    task = make_task(load_stimulus_spec(REPO / f"stimuli/task_{task_name}.yaml"))
    return one_network(spec, task, task_name, seed, out, args)


def theta_spec(spec_path: Path, theta: float, args):
    return load_model_spec(spec_path, [*args.set, "nonlinearity=leaky_relu",
                                       f"leak_angle={theta}", f"training.n_steps={args.steps}"])


def theta_network(spec_path: Path, theta: float, seed: int, args) -> dict:
    """One network of the leaky-ReLU angle sweep on the perception task (study fig. 6)."""
    task = make_task(load_stimulus_spec(REPO / "stimuli/task_perception.yaml"))
    spec = theta_spec(spec_path, theta, args)
    model = build_ctrnn(spec, task.n_inputs, task.n_outputs, seed=seed, device=args.device)
    pre = latent_summary(model, task, seed, args.d, args.window)
    _train(model, task, spec, seed, args, f"theta {theta:g} seed {seed}")
    post = latent_summary(model, task, seed, args.d, args.window)
    return {"theta_deg": theta, "seed": seed, "pi_untrained": pre["pi"],
            "pi_trained": post["pi"], "accuracy": post["accuracy"]}


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
    result = _train(model, task, spec, 0, args, "flip-flop")
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
    ap.add_argument("--spec", type=Path, default=REPO / "models/ctrnn_study.yaml")
    ap.add_argument("--tasks", default="perception,decision")
    ap.add_argument("--networks", type=int, default=10, help="seeds per task")
    ap.add_argument("--steps", type=int, default=None, help="override training.n_steps")
    study.add_common_args(ap, "set")
    ap.add_argument("--thetas", type=float, nargs="*", default=[0.0, 15.0, 30.0, 45.0])
    ap.add_argument("--theta-networks", type=int, default=3)
    ap.add_argument("--flipflop-steps", type=int, default=1500)
    ap.add_argument("--fp-starts", type=int, default=256)
    ap.add_argument("--fp-iter", type=int, default=1500)
    ap.add_argument("--d", type=int, default=3, help="latent dimension (PCA, DCA)")
    ap.add_argument("--window", type=int, default=5, help="DCA past/future window T, steps")
    ap.add_argument("--skip", default="", help="comma list of: theta, flipflop")
    study.add_common_args(ap, "jobs", "max_minutes", "device", "quiet", "overwrite", helps={
        "jobs": "worker processes (one thread each); one job per network",
        "device": "cpu or cuda (every worker uses it)"})
    args = ap.parse_args()
    study.require({"dca": "DynamicalComponentsAnalysis", "networkx": "networkx",
                   "sklearn": "scikit-learn"})
    budget = Budget.from_minutes(args.max_minutes)
    study.apply_thread_policy(1)
    args.progress = not args.quiet and args.jobs <= 1  # bars from many workers would interleave
    if args.steps is not None:
        args.set = [*args.set, f"training.n_steps={args.steps}"]
    spec = load_model_spec(args.spec, args.set)
    args.steps = spec.training.n_steps
    tasks = args.tasks.split(",")
    skip = set(filter(None, args.skip.split(",")))
    start = time.perf_counter()
    with study.output_dir(args) as out:
        (out / "weights").mkdir()
        # flip-flop first (shorter, so it does not trail), then the main networks, then the
        # θ sweep seed by seed (a run stopped by --max-minutes has every angle's first seeds)
        jobs = []
        if "flipflop" not in skip:
            jobs.append((("flipflop",), flip_flop, (args, out)))
        jobs += [(("main", t, seed), main_network_job, (spec, t, seed, out, args))
                 for seed in range(args.networks) for t in tasks]
        reused = set()
        if "theta" not in skip:
            for seed in range(args.theta_networks):
                for theta in args.thetas:
                    if ("perception" in tasks and seed < args.networks
                            and theta_is_main(spec, theta)):
                        reused.add((theta, seed))
                    else:
                        jobs.append((("theta", theta, seed), theta_network,
                                     (args.spec, theta, seed, args)))
        print(study.start_line(len(jobs), args), flush=True)
        outcomes = study.run_jobs(jobs, args.jobs, budget, on_done=_progress_line)

        rows, extras, rollout_acc = [], {}, {}
        for key, o in outcomes.items():
            if key[0] == "main" and o.status == "done":
                row = dict(o.result)
                extras[(row["task"], row["seed"])] = (row.pop("_history"), row.pop("_spectra"))
                rollout_acc[(row["task"], row["seed"])] = row.pop("_rollout_accuracy")
                rows.append(row)
        rows.sort(key=lambda r: (tasks.index(r["task"]), r["seed"]))
        table = pd.DataFrame(rows)
        table.to_csv(out / "results.csv", index=False)
        not_done = [(_name(key), o.status, o.detail) for key, o in outcomes.items()
                    if o.status != "done"]
        metrics = {"spec": spec.name, "n_steps": spec.training.n_steps,
                   "learning_rate": spec.training.learning_rate, "trained": list(spec.train),
                   "n_units": spec.n_units, "networks_per_task": args.networks,
                   "networks_completed": {t: int((table["task"] == t).sum()) if len(table)
                                          else 0 for t in tasks},
                   "jobs": args.jobs, "device": args.device, "max_minutes": args.max_minutes,
                   "jobs_not_completed": study.not_completed(outcomes, _name)}
        for task_name, group in (table.groupby("task") if len(table) else []):
            for col in ("test_accuracy", "untrained_accuracy", "delta_w_rank90", "delta_w_pr",
                        "delta_w_sv1_frac", "radius_before", "radius_after",
                        "non_normality_before", "non_normality_after", "mean_weight_drift",
                        "centrality_spearman", "pi_untrained", "pi_trained",
                        "angle_pre_post_deg", "angle_conditions_deg", "angle_readout_deg"):
                metrics[f"{task_name}.{col}.mean"] = float(group[col].mean())
                metrics[f"{task_name}.{col}.sd"] = float(group[col].std(ddof=0))
        sections = []
        if len(table):
            _figures(out, extras)
            sections += [("Per-task summary (mean over networks)",
                          html.table(table.drop(columns="seed").groupby("task").mean()
                                     .reset_index().round(4).values.tolist(),
                                     ["task", *table.drop(columns=["seed", "task"]).columns])),
                         ("Learning and spectra", html.figure("training.png", "curves, spectra"))]
        if "theta" not in skip:
            theta_rows = []
            for seed in range(args.theta_networks):
                for theta in args.thetas:
                    if (theta, seed) in reused:
                        main_row = next((r for r in rows if r["task"] == "perception"
                                         and r["seed"] == seed), None)
                        if main_row is not None:
                            theta_rows.append({"theta_deg": theta, "seed": seed,
                                               "pi_untrained": main_row["pi_untrained"],
                                               "pi_trained": main_row["pi_trained"],
                                               "accuracy": rollout_acc[("perception", seed)]})
                    elif outcomes[("theta", theta, seed)].status == "done":
                        theta_rows.append(outcomes[("theta", theta, seed)].result)
            sweep = pd.DataFrame(theta_rows, columns=["theta_deg", "seed", "pi_untrained",
                                                      "pi_trained", "accuracy"])
            sweep = sweep.sort_values(["theta_deg", "seed"]).reset_index(drop=True)
            sweep.to_csv(out / "theta_sweep.csv", index=False)
            metrics["theta_networks_completed"] = {f"{t:g}": int((sweep["theta_deg"] == t).sum())
                                                   for t in args.thetas}
            if len(sweep):
                _theta_figure(sweep, out / "pi_vs_theta.png")
                sections.append(("Predictive information vs leaky-ReLU angle",
                                 html.figure("pi_vs_theta.png", "DCA PI, trained vs untrained")))
            for theta, g in sweep.groupby("theta_deg"):
                metrics[f"pi_theta_{theta:g}.untrained"] = float(g["pi_untrained"].mean())
                metrics[f"pi_theta_{theta:g}.trained"] = float(g["pi_trained"].mean())
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
    study.exit_if_failed(outcomes, lambda key: f"job {_name(key)}")


def _name(key: tuple) -> str:
    return " ".join(map(str, key))


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
        print(f"theta {r['theta_deg']:5.1f} seed {r['seed']}: PI {r['pi_untrained']:.3f} -> "
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


def _theta_figure(sweep: pd.DataFrame, path: Path) -> None:
    g = sweep.groupby("theta_deg")[["pi_untrained", "pi_trained"]].agg(["mean", "std"])
    fig, ax = plt.subplots(figsize=(5, 4))
    for col, label in (("pi_untrained", "untrained"), ("pi_trained", "trained")):
        ax.errorbar(g.index, g[(col, "mean")], g[(col, "std")], marker="o", label=label)
    ax.set(xlabel="leaky-ReLU angle θ (deg)", ylabel="predictive information (nats)")
    ax.legend()
    study.save_figure(fig, path, dpi=90)


if __name__ == "__main__":
    from neurorec.core.errors import run_script

    run_script(main)
