"""The ctrnn study: 10 networks per task (perception, decision) trained from different seeds,
weights saved before/after, and the dynamical-systems analyses; plus the leaky-ReLU angle sweep
of predictive information and the 3-bit flip-flop fixed-point check.

    python analyses/ctrnn_tasks/run.py --out results/ctrnn_tasks            # the whole study
    python analyses/ctrnn_tasks/run.py --out /tmp/ct --networks 3 --steps 300 --quick

Writes ``results.csv`` (one row per network), ``metrics.json`` (the headline numbers),
``weights/<task>_seed<k>_{before,after}.npz``, figures and ``report.html``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.stats
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from neurorec.analysis.dynamics import (  # noqa: E402
    centrality,
    dca_predictive_information,
    eigen_spectrum,
    pca_trajectories,
    subspace_angles,
    weight_change,
)
from neurorec.analysis.fixed_points import ctrnn_step_map, find_fixed_points  # noqa: E402
from neurorec.fit.train import evaluate, train  # noqa: E402
from neurorec.models.ctrnn import build_ctrnn  # noqa: E402
from neurorec.outputs import atomic_dir, write_json  # noqa: E402
from neurorec.report import html  # noqa: E402
from neurorec.spec import load_model_spec, load_stimulus_spec  # noqa: E402
from neurorec.tasks import make_task  # noqa: E402


def rollout(model, task, seed: int, n_trials: int = 64):
    trials = task.generate(n_trials, np.random.default_rng([seed, 9]))
    with torch.no_grad():
        r, z = model(torch.as_tensor(trials.inputs, dtype=model.w_out.dtype),
                     generator=torch.Generator().manual_seed(seed))
    return trials, r.double().numpy(), z.double().numpy()


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
    model = build_ctrnn(spec, task.n_inputs, task.n_outputs, seed=seed)
    before = model.weights()
    pre = latent_summary(model, task, seed, args.d, args.window)
    result = train(model, task, spec.training, seed=seed, progress=not args.quiet)
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
                                                     eigen_spectrum(after["w_rec"]))}


def theta_sweep(spec_path: Path, task, args, out: Path) -> pd.DataFrame:
    """Predictive information vs the leaky-ReLU angle θ, trained vs untrained (study fig. 6)."""
    rows = []
    for theta in args.thetas:
        spec = load_model_spec(spec_path, [*args.set, "nonlinearity=leaky_relu",
                                           f"leak_angle={theta}",
                                           f"training.n_steps={args.steps}"])
        for seed in range(args.theta_networks):
            model = build_ctrnn(spec, task.n_inputs, task.n_outputs, seed=seed)
            pre = latent_summary(model, task, seed, args.d, args.window)
            train(model, task, spec.training, seed=seed, progress=not args.quiet)
            post = latent_summary(model, task, seed, args.d, args.window)
            rows.append({"theta_deg": theta, "seed": seed, "pi_untrained": pre["pi"],
                         "pi_trained": post["pi"], "accuracy": post["accuracy"]})
            print(f"theta {theta:5.1f} seed {seed}: PI {pre['pi']:.3f} -> {post['pi']:.3f} "
                  f"nats, accuracy {post['accuracy']:.2f}", flush=True)
    return pd.DataFrame(rows)


def flip_flop(args, out: Path) -> dict:
    """Train the 3-bit flip-flop network and count its stable fixed points (expect 8)."""
    task = make_task(load_stimulus_spec(REPO / "stimuli/task_flip_flop.yaml"))
    spec = load_model_spec(REPO / "models/ctrnn_flipflop.yaml",
                           [f"training.n_steps={args.flipflop_steps}"])
    model = build_ctrnn(spec, task.n_inputs, task.n_outputs, seed=0)
    result = train(model, task, spec.training, seed=0, progress=not args.quiet)
    model = model.double()
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
    fig.savefig(out / "flipflop_fixed_points.png", dpi=90)
    plt.close(fig)
    return {"flipflop_steps": args.flipflop_steps,
            "flipflop_val_accuracy": result.history.val_accuracy[-1],
            "flipflop_stable_fixed_points": len(stable),
            "flipflop_distinct_output_patterns": len(patterns),
            "flipflop_saddles": fps.count("saddle"),
            "flipflop_slow_points": int((~fps.fixed).sum()),
            "flipflop_train_s": result.seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--spec", type=Path, default=REPO / "models/ctrnn_study.yaml")
    ap.add_argument("--tasks", default="perception,decision")
    ap.add_argument("--networks", type=int, default=10, help="seeds per task")
    ap.add_argument("--steps", type=int, default=None, help="override training.n_steps")
    ap.add_argument("--set", action="append", default=[], help="spec override FIELD=VALUE")
    ap.add_argument("--thetas", type=float, nargs="*", default=[0.0, 15.0, 30.0, 45.0])
    ap.add_argument("--theta-networks", type=int, default=3)
    ap.add_argument("--flipflop-steps", type=int, default=1500)
    ap.add_argument("--fp-starts", type=int, default=256)
    ap.add_argument("--fp-iter", type=int, default=1500)
    ap.add_argument("--d", type=int, default=3, help="latent dimension (PCA, DCA)")
    ap.add_argument("--window", type=int, default=5, help="DCA past/future window T, steps")
    ap.add_argument("--skip", default="", help="comma list of: theta, flipflop")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.steps is not None:
        args.set = [*args.set, f"training.n_steps={args.steps}"]
    spec = load_model_spec(args.spec, args.set)
    args.steps = spec.training.n_steps
    start = time.perf_counter()
    with atomic_dir(args.out, overwrite=args.overwrite) as out:
        (out / "weights").mkdir()
        rows, extras = [], {}
        for task_name in args.tasks.split(","):
            task = make_task(load_stimulus_spec(REPO / f"stimuli/task_{task_name}.yaml"))
            for seed in range(args.networks):
                row = one_network(spec, task, task_name, seed, out, args)
                extras[(task_name, seed)] = (row.pop("_history"), row.pop("_spectra"))
                rows.append(row)
                print(f"{task_name} seed {seed}: test accuracy {row['test_accuracy']:.3f} "
                      f"(untrained {row['untrained_accuracy']:.3f}), ΔW rank90 "
                      f"{row['delta_w_rank90']}, radius {row['radius_before']:.3f} -> "
                      f"{row['radius_after']:.3f}, PI {row['pi_untrained']:.3f} -> "
                      f"{row['pi_trained']:.3f} nats", flush=True)
        table = pd.DataFrame(rows)
        table.to_csv(out / "results.csv", index=False)
        metrics = {"spec": spec.name, "n_steps": spec.training.n_steps,
                   "learning_rate": spec.training.learning_rate, "trained": list(spec.train),
                   "networks_per_task": args.networks}
        for task_name, group in table.groupby("task"):
            for col in ("test_accuracy", "untrained_accuracy", "delta_w_rank90", "delta_w_pr",
                        "delta_w_sv1_frac", "radius_before", "radius_after",
                        "non_normality_before", "non_normality_after", "mean_weight_drift",
                        "centrality_spearman", "pi_untrained", "pi_trained",
                        "angle_pre_post_deg", "angle_conditions_deg", "angle_readout_deg"):
                metrics[f"{task_name}.{col}.mean"] = float(group[col].mean())
                metrics[f"{task_name}.{col}.sd"] = float(group[col].std(ddof=0))
        _figures(out, extras)
        sections = [("Per-task summary (mean over networks)",
                     html.table(table.drop(columns="seed").groupby("task").mean().reset_index()
                                .round(4).values.tolist(),
                                ["task", *table.drop(columns=["seed", "task"]).columns])),
                    ("Learning and spectra", html.figure("training.png", "curves, spectra"))]
        skip = set(filter(None, args.skip.split(",")))
        if "theta" not in skip:
            sweep = theta_sweep(args.spec, make_task(load_stimulus_spec(
                REPO / "stimuli/task_perception.yaml")), args, out)
            sweep.to_csv(out / "theta_sweep.csv", index=False)
            _theta_figure(sweep, out / "pi_vs_theta.png")
            for theta, g in sweep.groupby("theta_deg"):
                metrics[f"pi_theta_{theta:g}.untrained"] = float(g["pi_untrained"].mean())
                metrics[f"pi_theta_{theta:g}.trained"] = float(g["pi_trained"].mean())
            sections.append(("Predictive information vs leaky-ReLU angle",
                             html.figure("pi_vs_theta.png", "DCA PI, trained vs untrained")))
        if "flipflop" not in skip:
            metrics.update(flip_flop(args, out))
            sections.append(("3-bit flip-flop fixed points",
                             html.figure("flipflop_fixed_points.png", "fixed points")))
        metrics["wall_time_s"] = time.perf_counter() - start
        write_json(out / "metrics.json", metrics)
        sections.insert(0, ("Headline numbers", html.table(list(metrics.items()),
                                                           ["metric", "value"])))
        html.page("ctrnn study: perception and decision networks", sections,
                  out / "report.html")
    print(f"report: {args.out / 'report.html'}")


def _figures(out: Path, extras: dict) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for (task_name, _), (hist, (lb, la)) in extras.items():
        color = "C0" if task_name == "perception" else "C1"
        axes[0].semilogy(hist.val_step, hist.val_loss, color=color, lw=0.8)
        axes[1].plot(la.real, la.imag, ".", ms=2, color=color)
        axes[1].plot(lb.real, lb.imag, ".", ms=1, color="0.7")
    axes[0].set(xlabel="step", ylabel="validation loss", title="C0 perception, C1 decision")
    axes[1].set(xlabel="Re λ", ylabel="Im λ", title="W_rec eigenvalues (grey: before)")
    fig.tight_layout()
    fig.savefig(out / "training.png", dpi=90)
    plt.close(fig)


def _theta_figure(sweep: pd.DataFrame, path: Path) -> None:
    g = sweep.groupby("theta_deg")[["pi_untrained", "pi_trained"]].agg(["mean", "std"])
    fig, ax = plt.subplots(figsize=(5, 4))
    for col, label in (("pi_untrained", "untrained"), ("pi_trained", "trained")):
        ax.errorbar(g.index, g[(col, "mean")], g[(col, "std")], marker="o", label=label)
    ax.set(xlabel="leaky-ReLU angle θ (deg)", ylabel="predictive information (nats)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
