"""Sequential-MNIST dynamics of a 200-unit tanh RNN (issue 7, study B).

    python analyses/seqmnist_dynamics/run.py --out results/seqmnist \
        [--model models/seq_mnist.yaml] [--n-networks 10] [--set fit.epochs=20] \
        [--seed 0] [--device cpu] [--jobs 10] [--max-minutes 6]

Data: the MNIST test set (10,000 images) split stratified 8,000 train / 2,000 test with the
spec's seed (the training images are not available here); rows as 28 time steps.
For each of ``--n-networks`` networks (seeds seed, seed+1, ...): held-out accuracy on the
test variants hidden (last n rows zeroed), cut (first n rows only) and extended (n blank rows
appended), n = 0..28; the full Lyapunov spectrum of the autonomous dynamics
``h -> tanh(W h + b)`` before and after training (QR / Benettin, from the states the test
images leave); attractors of the autonomous dynamics after the input (fixed points, limit
cycles with their periods, how many distinct). For the first network: t-SNE of hidden states
by digit at several time steps. Writes ``metrics.json``, ``accuracy_vs_n.csv``, ``RESULTS.md``,
``report.html`` and PNG figures into ``--out``; checkpoints beside it let a killed run resume.

``--jobs N`` runs the networks in N worker processes (one thread each; the same numbers as
``--jobs 1``); ``--max-minutes M`` stops training in time to write the report with the networks
that finished (the report says how many; an unfinished network's checkpoint is kept, so the
same command run again continues it).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from neurorec.workflows import study
from neurorec.workflows.study import Budget, current_budget

ROOT = Path(__file__).resolve().parents[2]

STUDY_ACCURACY = 0.93  # the study, trained on the full 60,000-image training set
TSNE_TIMES = (7, 14, 21, 28, 42, 56)  # steps 29..56 are blank rows (the autonomous phase)
# inputs held in the autonomous phase: zero (= blank rows: pixels 0, measured), the image's
# last row (blank in most MNIST images: measured, then it is the zero input), and its last row
# with ink
AUTONOMOUS_INPUTS = ("zero", "last_ink_row")


def last_ink_row(x: np.ndarray) -> np.ndarray:
    """(n, 28) the last row of each image x (n, 28, 28) with a nonzero pixel (zeros if none)."""
    ink = x.any(axis=2)  # (n, 28)
    idx = np.where(ink.any(1), x.shape[1] - 1 - np.argmax(ink[:, ::-1], axis=1), 0)
    return np.where(ink.any(1)[:, None], x[np.arange(len(x)), idx], 0).astype(float)
ATTRACTOR_TOLS = (1e-6, 1e-4, 1e-3, 1e-2)


def checkpoint_path(out: Path, k: int) -> Path:
    return study.beside(out, f".net{k}.checkpoint")


def variant_accuracies(model, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """(T + 1,) accuracy for n = 0..T of each test variant (hidden / cut / extended) from one
    pass with T blank rows appended: cut n reads h_n, extended n reads h_{T+n}, hidden n runs
    h_{T−n} n steps with zero input (blank rows drive the network by U·0 + b = b exactly).
    The same numbers as scoring each variant's sequences with ``model.score`` (checked in
    ``tests/test_seqmnist_dynamics.py``), in a ninth of the time."""
    import torch

    from neurorec.families.rnn.model import sequence_variant

    T = x.shape[1]
    net = model.net_
    _, st = model.forward(sequence_variant(x, "extended", T))  # (n, 2T, N)
    yt = np.asarray(y)
    with torch.no_grad():
        states = torch.as_tensor(st)
        h0 = states.new_zeros(len(x), states.shape[2])
        hs = torch.cat([h0[:, None], states], 1)  # hs[:, t]: after t rows

        def score(h: torch.Tensor) -> float:
            return float(((h @ net.V.T + net.c).argmax(1).numpy() == yt).mean())

        drive = states.new_zeros(1, x.shape[2]) @ net.U.T + net.b  # = b, as forward has it
        hidden = []
        for n in range(T + 1):
            h = hs[:, T - n]
            for _ in range(n):
                h = torch.tanh(h @ net.W.T + drive)
            hidden.append(score(h))
        return {"hidden": np.array(hidden),
                "cut": np.array([score(hs[:, n]) for n in range(T + 1)]),
                "extended": np.array([score(hs[:, T + n]) for n in range(T + 1)])}


def network_job(spec, k: int, sub: np.ndarray, sub_cluster: np.ndarray, args) -> dict:
    """Train network ``k`` (seed ``args.seed + k``) and run its analyses (a job of the pool).

    Returns ``row`` (its numbers for ``metrics.json``), ``accuracy`` (variant -> (29,)
    accuracy for n = 0..28), ``lyapunov_example`` (spectra and running λ1, initial and
    trained), ``history`` and, for network 0, ``tsne`` (embeddings, times, labels).
    """
    from sklearn.manifold import TSNE

    from neurorec.analysis.attractors import attractor_census
    from neurorec.analysis.clustering import separation_over_time, silhouette
    from neurorec.analysis.lyapunov import lyapunov_spectrum
    from neurorec.datasets.mnist import mnist_split
    from neurorec.families.rnn.model import (
        SequenceRNN,
        autonomous_jacobian,
        autonomous_step,
        sequence_variant,
    )
    from neurorec.fit.run import Run

    budget = current_budget()
    data = mnist_split(spec.data.n_test, spec.data.split_seed)
    seed = args.seed + k
    t0 = time.perf_counter()
    ckpt = checkpoint_path(args.out, k)
    model = SequenceRNN(spec, device=args.device, seed=seed)
    progress = not args.quiet and args.jobs <= 1
    for epoch in range(1, spec.fit.epochs + 1):  # one epoch a call: stop between epochs
        model.fit(data.x_train, y=data.y_train, progress=progress,
                  run=Run(checkpoint_dir=ckpt, resume=True), epochs=epoch)
        if epoch < spec.fit.epochs:
            budget.check(f"network {k}: stopped after epoch {epoch} of {spec.fit.epochs}")
    row = {"seed": seed, "fit_time_s": time.perf_counter() - t0,
           "test_accuracy": model.score(data.x_test, data.y_test),
           "final_train_loss": model.history_[-1]["loss"]}
    acc = variant_accuracies(model, data.x_test, data.y_test)
    # states the input leaves: start of the autonomous dynamics
    _, states = model.forward(data.x_test[sub])
    h_end = states[:, -1].astype(float)
    lyap_example: dict[str, np.ndarray] = {}
    for when in ("initial", "trained"):
        W, b = model.recurrent_params(initial=when == "initial")
        spectra = [lyapunov_spectrum(lambda h, W=W, b=b: autonomous_step(W, b, h),
                                     lambda h, W=W, b=b: autonomous_jacobian(W, b, h),
                                     h_end[i], args.lyapunov_steps, n_transient=200,
                                     seed=seed) for i in range(2)]
        row[f"lyapunov_max_{when}"] = float(np.mean([s.max_exponent for s in spectra]))
        row[f"lyapunov_sum_{when}"] = float(np.mean([s.exponents.sum() for s in spectra]))
        row[f"n_positive_{when}"] = int(np.sum(spectra[0].exponents > 1e-3))
        lyap_example[when] = spectra[0].exponents
        lyap_example[f"{when}_running"] = spectra[0].running[:, 0]
    # ---- issue 18: the autonomous phase under each input, attractors at several tolerances
    held = {"zero": np.zeros((len(sub), 28)),
            "last_row": data.x_test[sub][:, -1].astype(float),
            "last_ink_row": last_ink_row(data.x_test[sub])}  # (n, 28) inputs held
    row["last_row_blank_fraction"] = float(np.mean(~data.x_test[sub][:, -1].any(1)))
    lyap_sub = sub[: args.lyapunov_images]  # held[cond][i] is the input of image lyap_sub[i]
    _, lyap_states = model.forward(data.x_test[lyap_sub])
    for when in ("initial", "trained"):
        W, b = model.recurrent_params(initial=when == "initial")
        U = model.input_weights(initial=when == "initial")
        row[f"lyapunov_positive_fraction_{when}"] = float(np.mean(lyap_example[when] > 1e-3))
        row[f"autonomous_{when}"] = {}
        for cond in AUTONOMOUS_INPUTS:
            drive = b + held[cond] @ U.T  # (n, N)
            census = attractor_census(lambda h, W=W, d=drive: autonomous_step(W, d, h), h_end,
                                      args.attractor_transient,
                                      sorted({*ATTRACTOR_TOLS, args.attractor_tol}),
                                      max_period=100)
            # λ1 from more starting states and longer runs, with its spread over them
            lam = []
            for i in range(len(lyap_sub)):
                d_i = b + held[cond][i] @ U.T
                lam.append(lyapunov_spectrum(
                    lambda h, W=W, d=d_i: autonomous_step(W, d, h),
                    lambda h, W=W, d=d_i: autonomous_jacobian(W, d, h),
                    lyap_states[i, -1].astype(float), args.lyapunov_long_steps,
                    n_transient=200, n_exponents=1, seed=seed).max_exponent)
            lam = np.array(lam)
            half = 1.96 * lam.std(ddof=1) / np.sqrt(len(lam)) if len(lam) > 1 else np.nan
            rel = census.min_residual / np.maximum(census.scale, 1e-12)
            if cond == "zero":  # the earlier single-tolerance keys, from the same census
                att = census.by_tol[census.tols.index(args.attractor_tol)]
                row[f"attractors_{when}"] = {
                    "fixed_point_orbits": int(np.sum(att.period == 1)),
                    "limit_cycle_orbits": int(np.sum(att.period > 1)),
                    "aperiodic_orbits": int(np.sum(att.period == 0)),
                    "n_fixed_points": att.n_fixed_points,
                    "n_limit_cycles": att.n_limit_cycles,
                    "cycle_periods": sorted({len(c) for c in att.cycles if len(c) > 1}),
                    "digits_per_attractor": [
                        len(np.unique(data.y_test[sub][att.attractor == j]))
                        for j in range(len(att.cycles))]}
            row[f"autonomous_{when}"][cond] = {
                "by_tol": census.summary(labels=data.y_test[sub]),
                "min_residual_quantiles": dict(zip(
                    ("q10", "median", "q90"),
                    np.quantile(census.min_residual, [0.1, 0.5, 0.9]).tolist(), strict=True)),
                "relative_min_residual_median": float(np.median(rel)),
                "lambda1_mean": float(lam.mean()), "lambda1_ci95": [float(lam.mean() - half),
                                                                    float(lam.mean() + half)],
                "lambda1_per_start": lam.tolist()}
    # blank rows are zero input in this model (pixels 0): measured, not assumed
    ext = sequence_variant(data.x_test[sub[:20]], "extended", 10)
    _, ext_states = model.forward(ext)
    W, b = model.recurrent_params()
    h = ext_states[:, 27].astype(float)
    gap = 0.0
    for t in range(28, 38):
        h = autonomous_step(W, b, h)
        gap = max(gap, float(np.abs(ext_states[:, t] - h).max()))
    row["blank_rows_vs_zero_input_max_abs_diff"] = gap

    # ---- issue 18: digit clusters per time step, 28 rows then 28 blank rows
    clu_idx = sub_cluster[: args.cluster_images]
    _, clu_states = model.forward(sequence_variant(data.x_test[clu_idx], "extended", 28))
    sep = separation_over_time(clu_states, data.y_test[clu_idx], seed=seed)
    row["cluster_knn"] = sep["knn"].tolist()
    row["cluster_silhouette"] = sep["silhouette"].tolist()

    tsne = None
    if k == 0:
        tsne_idx = clu_idx[: args.tsne_images]
        embeds = [TSNE(2, perplexity=30, random_state=args.seed, init="pca")
                  .fit_transform(clu_states[: len(tsne_idx), t - 1]) for t in TSNE_TIMES]
        tsne = {"embeds": embeds, "labels": data.y_test[tsne_idx],
                "silhouette": [silhouette(e, data.y_test[tsne_idx]) for e in embeds]}
    return {"row": row, "accuracy": acc, "lyapunov_example": lyap_example,
            "history": model.history_, "tsne": tsne}


def _progress_line(o) -> None:
    if o.status != "done":
        print(f"network {o.key}: {o.status} {o.detail}", flush=True)
        return
    row = o.result["row"]
    print(f"network {o.key}: test accuracy {row['test_accuracy']:.4f}, "
          f"λmax {row['lyapunov_max_initial']:+.3f} -> {row['lyapunov_max_trained']:+.3f}"
          f", fit {row['fit_time_s']:.0f} s, all {o.seconds:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    study.add_common_args(ap, "out")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "seq_mnist.yaml")
    study.add_common_args(ap, "set")
    ap.add_argument("--n-networks", type=int, default=10)
    study.add_common_args(ap, "seed", "device")
    ap.add_argument("--lyapunov-steps", type=int, default=500)
    ap.add_argument("--attractor-images", type=int, default=300)
    ap.add_argument("--attractor-transient", type=int, default=3000)
    ap.add_argument("--attractor-tol", type=float, default=1e-4)
    ap.add_argument("--tsne-images", type=int, default=800)
    ap.add_argument("--cluster-images", type=int, default=1000,
                    help="test images for k-NN / silhouette of digits per time step")
    ap.add_argument("--lyapunov-images", type=int, default=10,
                    help="starting states for λ1 with its confidence interval")
    ap.add_argument("--lyapunov-long-steps", type=int, default=2000)
    study.add_common_args(ap, "jobs", "max_minutes", "overwrite", "quiet", helps={
        "jobs": "worker processes (one thread each); one job per network"})
    args = ap.parse_args(argv)
    study.require({"sklearn": "scikit-learn"})

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from neurorec.datasets.mnist import mnist_split
    from neurorec.families.rnn.model import VARIANTS
    from neurorec.report import html
    from neurorec.spec import dump_spec, load_model_spec

    study.refuse_existing(args.out, args.overwrite)  # say so now, not after the training
    # training stops 100 s before the end: a network's analyses take ~60 s on one core
    budget = Budget.from_minutes(args.max_minutes, reserve_s=100.0)
    study.apply_thread_policy(1)
    spec = load_model_spec(args.model, args.set)
    data = mnist_split(spec.data.n_test, spec.data.split_seed)
    ns = np.arange(29)
    rng = np.random.default_rng(args.seed)
    sub = rng.choice(len(data.x_test), args.attractor_images, replace=False)
    sub_cluster = rng.permutation(len(data.x_test))
    jobs = [(k, network_job, (spec, k, sub, sub_cluster, args))
            for k in range(args.n_networks)]
    if not args.quiet:
        print(study.start_line(len(jobs), args, "networks"), flush=True)
    outcomes = study.run_jobs(jobs, args.jobs, budget,
                              on_done=None if args.quiet else _progress_line)
    done = [k for k, o in outcomes.items() if o.status == "done"]
    not_done = study.not_completed(outcomes, _network)
    if not done:
        for o in outcomes.values():
            if o.status == "failed":
                print(o.error, file=sys.stderr)
        raise SystemExit(f"no network finished: {'; '.join(not_done)}")
    results = [outcomes[k].result for k in done]
    nets = [r["row"] for r in results]
    acc = {v: np.stack([r["accuracy"][v] for r in results]) for v in VARIANTS}
    example = results[0]  # the first network that finished (network 0 unless it did not)
    lyap_example = example["lyapunov_example"]
    history0 = example["history"]
    tsne = next((r["tsne"] for r in results if r["tsne"] is not None), None)
    n_done = len(done)

    test_acc = np.array([r["test_accuracy"] for r in nets])
    m = {"split": data.describe(), "n_networks": args.n_networks,
         "networks_completed": n_done, "networks_not_completed": not_done,
         "jobs": args.jobs, "device": args.device, "max_minutes": args.max_minutes,
         "epochs": spec.fit.epochs, "test_accuracy_mean": float(test_acc.mean()),
         "test_accuracy_sd": float(test_acc.std()), "networks": nets,
         "accuracy_vs_n": {v: {"n": ns, "mean": acc[v].mean(0), "sd": acc[v].std(0)}
                           for v in VARIANTS},
         "lyapunov_spectrum_network0": {k: v for k, v in lyap_example.items()
                                        if not k.endswith("running")}}
    for when in ("initial", "trained"):
        lm = np.array([r[f"lyapunov_max_{when}"] for r in nets])
        m[f"lyapunov_max_{when}_mean"] = float(lm.mean())
        m[f"lyapunov_max_{when}_positive_fraction"] = float(np.mean(lm > 1e-3))
    m["issue18"] = issue18_summary(nets, tsne)

    with study.output_dir(args) as d:
        study.write_csv(d / "accuracy_vs_n.csv", [
            {"variant": v, "n": int(n), "network": k, "accuracy": f"{acc[v][i, j]:.4f}"}
            for v in VARIANTS for i, k in enumerate(done) for j, n in enumerate(ns)])
        fig, ax = plt.subplots(1, 3, figsize=(14, 3.6))
        for v in VARIANTS:
            ax[0].errorbar(ns, acc[v].mean(0), acc[v].std(0), label=v, capsize=2)
        ax[0].set(xlabel="n (rows hidden / kept / appended)", ylabel="test accuracy",
                  title=f"{n_done} networks")
        ax[0].legend()
        ax[1].plot(lyap_example["initial"], ".", label="before training")
        ax[1].plot(lyap_example["trained"], ".", label="after training")
        ax[1].axhline(0, color="k", lw=0.5)
        ax[1].set(xlabel="index", ylabel="exponent (per step)", title="Lyapunov spectrum")
        ax[1].legend()
        ax[2].plot(lyap_example["initial_running"], label="before")
        ax[2].plot(lyap_example["trained_running"], label="after")
        ax[2].set(xlabel="step", ylabel="running λ1", title="convergence")
        ax[2].legend()
        study.save_figure(fig, d / "accuracy_lyapunov.png", dpi=90)

        if tsne is not None:
            embeds = tsne["embeds"]
            fig, ax = plt.subplots(1, len(embeds), figsize=(4 * len(embeds), 4))
            for a, e, t in zip(ax, embeds, TSNE_TIMES, strict=True):
                sc = a.scatter(e[:, 0], e[:, 1], c=tsne["labels"], cmap="tab10", s=4)
                a.set(title=f"t = {t}", xticks=[], yticks=[])
            fig.colorbar(sc, ax=ax[-1])
            study.save_figure(fig, d / "tsne.png", dpi=90)

        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot([r["loss"] for r in history0], "o-")
        ax.set(xlabel="epoch", ylabel="cross-entropy", title=f"training, network {done[0]}")
        study.save_figure(fig, d / "training.png", dpi=90)

        clustering_figure(plt, m["issue18"], nets, d / "clustering.png")
        study.write_json(d / "metrics.json", m)
        (d / "spec.yaml").write_text(dump_spec(spec))
        rows = [("test accuracy (28 rows)", f"{m['test_accuracy_mean']:.4f} ± "
                 f"{m['test_accuracy_sd']:.4f}", f"{STUDY_ACCURACY:.2f} (60k training images)")]
        for v in VARIANTS:
            a = acc[v].mean(0)
            rows.append((f"{v}: accuracy at n = 0 / 7 / 14 / 21 / 28",
                         " / ".join(f"{a[n]:.3f}" for n in (0, 7, 14, 21, 28)), "-"))
        for when in ("initial", "trained"):
            rows.append((f"max Lyapunov exponent, {when} (mean over networks)",
                         f"{m[f'lyapunov_max_{when}_mean']:+.4f} "
                         f"({m[f'lyapunov_max_{when}_positive_fraction']:.0%} positive)", "-"))
        for k, r in zip(done, nets, strict=True):
            for when in ("initial", "trained"):
                at = r[f"attractors_{when}"]
                rows.append((f"net {k} {when}: orbits fixed / cycle / aperiodic "
                             f"(of {args.attractor_images})",
                             f"{at['fixed_point_orbits']} / {at['limit_cycle_orbits']} / "
                             f"{at['aperiodic_orbits']}; {at['n_fixed_points']} fixed points,"
                             f" {at['n_limit_cycles']} limit cycles, periods "
                             f"{at['cycle_periods']}", "-"))
        header = ["quantity", "ours", "study"]
        finished = (f"{n_done} networks (seeds {args.seed}..{args.seed + args.n_networks - 1})"
                    if n_done == args.n_networks else
                    f"{n_done} of {args.n_networks} networks finished (seeds "
                    f"{', '.join(str(args.seed + k) for k in done)}; not finished: "
                    f"{'; '.join(not_done)})")
        setup = (f"{data.describe()}. {finished}, {spec.n_units} tanh units, Adam lr "
                 f"{spec.fit.lr:g}, {spec.fit.epochs} epochs, batch {spec.fit.batch_size}. "
                 f"Lyapunov: full spectrum ({spec.n_units} exponents) of h -> tanh(W h + b), "
                 f"200 transient + {args.lyapunov_steps} steps from the states 2 test images "
                 f"leave. Attractors: {args.attractor_images} test images, "
                 f"{args.attractor_transient} steps transient, periods up to 100, tolerance "
                 f"{args.attractor_tol:g}.")
        claims = claim_rows(m, acc, n_done)
        md = ["# Sequential-MNIST dynamics: results", "", setup, "",
              "## The study's claims", "",
              *study.markdown_table(claims, CLAIM_HEADER), "",
              *issue18_notes(m["issue18"], args), "",
              "## All numbers", "",
              *study.markdown_table(rows, header), "",
              "Figures: `accuracy_lyapunov.png`, `tsne.png`, `clustering.png`, `training.png`; "
              "per-network numbers in `metrics.json`, curves in `accuracy_vs_n.csv`.", ""]
        (d / "RESULTS.md").write_text("\n".join(md))
        study.write_report(d, "Sequential-MNIST dynamics (tanh RNN)", [
            ("Setup", f"<p>{setup}</p>"),
            ("The study's claims", html.table(claims, CLAIM_HEADER)),
            ("Numbers", html.table(rows, header)),
            ("Digit clusters over time, periodicity residuals",
             html.figure("clustering.png", "k-NN, silhouette, residuals")),
            ("Accuracy vs n, Lyapunov spectrum",
             html.figure("accuracy_lyapunov.png", "variants and spectra")),
            *([("t-SNE of hidden states by digit", html.figure("tsne.png", "t-SNE"))]
              if tsne is not None else []),
            ("Training", html.figure("training.png", "loss")),
        ])
    for k in done:  # an unfinished network keeps its checkpoint: the same command continues it
        shutil.rmtree(checkpoint_path(args.out, k), ignore_errors=True)
    study.exit_if_failed(outcomes, _network)
    return m


CLAIM_HEADER = ["study claim", "study value", "ours", "same settings?", "verdict"]
REPORT_STEPS = (7, 14, 21, 28, 35, 42, 56)  # time steps (1-based) in the tables


def _ci(x: np.ndarray) -> tuple[float, float, float]:
    """(mean, lower, upper) of the 95 % t-interval of the mean of x over networks."""
    from scipy import stats

    x = np.asarray(x, float)
    if len(x) < 2:
        return float(x.mean()), float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def issue18_summary(nets: list[dict], tsne: dict | None) -> dict:
    """Across networks: limit cycles per input and tolerance, periodicity residuals, λ1 with
    its CI per network, fraction of positive exponents, digit separation per time step."""
    out: dict = {"attractors": {}, "lambda1": {}}
    for when in ("initial", "trained"):
        for cond in AUTONOMOUS_INPUTS:
            per = [r[f"autonomous_{when}"][cond] for r in nets]
            key = f"{when}/{cond}"
            out["attractors"][key] = {
                "tols": list(ATTRACTOR_TOLS),
                "n_limit_cycles": [[row["n_limit_cycles"] for row in p["by_tol"]] for p in per],
                "n_fixed_points": [[row["n_fixed_points"] for row in p["by_tol"]] for p in per],
                "cycle_periods": [[row["cycle_periods"] for row in p["by_tol"]] for p in per],
                "periodic_orbit_fraction": [
                    [1 - row["aperiodic_orbits"] / sum(
                        row[c] for c in ("fixed_point_orbits", "limit_cycle_orbits",
                                         "aperiodic_orbits")) for row in p["by_tol"]]
                    for p in per],
                "min_residual_median": [p["min_residual_quantiles"]["median"] for p in per],
                "relative_min_residual_median": [p["relative_min_residual_median"]
                                                 for p in per]}
            lam = np.array([p["lambda1_mean"] for p in per])
            lo = np.array([p["lambda1_ci95"][0] for p in per])
            hi = np.array([p["lambda1_ci95"][1] for p in per])
            out["lambda1"][key] = {"per_network": lam.tolist(), "mean_ci": _ci(lam),
                                   "n_ci_above_0": int(np.sum(lo > 0)),
                                   "n_ci_below_0": int(np.sum(hi < 0))}
        frac = np.array([r[f"lyapunov_positive_fraction_{when}"] for r in nets])
        out[f"positive_exponent_fraction_{when}"] = {"per_network": frac.tolist(),
                                                     "mean_ci": _ci(frac)}
    knn = np.array([r["cluster_knn"] for r in nets])  # (networks, 56)
    sil = np.array([r["cluster_silhouette"] for r in nets])
    peak = knn.argmax(1) + 1
    drop = knn[:, 27] - knn[:, -1]  # from the last row to 28 blank rows later
    out["clusters"] = {"knn_mean": knn.mean(0).tolist(), "knn_sd": knn.std(0).tolist(),
                       "silhouette_mean": sil.mean(0).tolist(),
                       "silhouette_sd": sil.std(0).tolist(),
                       "knn_peak_step": peak.tolist(), "knn_drop_28_to_56": _ci(drop),
                       "n_networks_knn_falls_after_28": int(np.sum(drop > 0)),
                       "silhouette_drop_28_to_56": _ci(sil[:, 27] - sil[:, -1]),
                       "chance": 0.1}
    if tsne is not None:
        out["tsne_silhouette"] = dict(zip(map(str, TSNE_TIMES), tsne["silhouette"],
                                          strict=True))
    blank = [r["blank_rows_vs_zero_input_max_abs_diff"] for r in nets]
    out["blank_rows_vs_zero_input_max_abs_diff"] = float(np.max(blank))
    out["last_row_blank_fraction"] = float(np.mean([r["last_row_blank_fraction"]
                                                    for r in nets]))
    return out


def _cycles_text(a: dict, j: int) -> str:
    n = np.array([c[j] for c in a["n_limit_cycles"]])
    return (f"{int(np.sum(n > 0))}/{len(n)} networks with a limit cycle (counts "
            f"{'/'.join(map(str, n))})")


def claim_rows(m: dict, acc: dict, n_done: int) -> list[tuple]:
    """The claim table: study claim | study value | ours | same settings? | verdict."""
    s = m["issue18"]
    nets = f"{n_done} networks"
    rows = []
    a = m["test_accuracy_mean"]
    rows.append(("a 200-unit tanh RNN classifies row-sequential MNIST", f"{STUDY_ACCURACY:.0%}",
                 f"{a:.3f} ± {m['test_accuracy_sd']:.3f} ({nets})",
                 "no: 8,000 training images (MNIST test set split), not 60,000",
                 "reproduced" if a >= STUDY_ACCURACY - 0.02 else "not reproduced"))
    h, c, e = (acc[v].mean(0) for v in ("hidden", "cut", "extended"))
    rows.append(("accuracy vs sequence length: hidden / cut / extended rows (figure)",
                 "figure, no numbers",
                 f"n = 7 / 14 / 28: hidden {h[7]:.2f} / {h[14]:.2f} / {h[28]:.2f}; cut "
                 f"{c[7]:.2f} / {c[14]:.2f} / {c[28]:.2f}; extended {e[7]:.2f} / {e[14]:.2f} / "
                 f"{e[28]:.2f}", "yes (variants as described)",
                 "figure made; no study numbers to compare"))
    cl = s["clusters"]
    knn = np.array(cl["knn_mean"])
    drop = cl["knn_drop_28_to_56"]
    formed = knn[27] > knn[0] + 0.3
    degrade = drop[1] > 0
    rows.append(("t-SNE of hidden states: digit clusters form over the rows, then degrade",
                 "figure (clusters form, then degrade)",
                 f"5-NN digit accuracy at step 1 / 14 / 28 (last row) / 42 / 56 (28 blank rows): "
                 f"{knn[0]:.2f} / {knn[13]:.2f} / {knn[27]:.2f} / {knn[41]:.2f} / {knn[55]:.2f}"
                 f" (chance 0.10); drop 28 -> 56: {drop[0]:+.3f} [{drop[1]:+.3f}, "
                 f"{drop[2]:+.3f}], falls in {cl['n_networks_knn_falls_after_28']}/{n_done}",
                 "t-SNE as the study; the number is ours",
                 "reproduced (form, then degrade in the blank rows)" if formed and degrade else
                 "form: " + ("yes" if formed else "no") + "; degrade: " +
                 ("yes" if degrade else "no (CI includes 0)")))
    for when in ("initial", "trained"):
        lam = s["lambda1"][f"{when}/zero"]
        mean, lo, hi = lam["mean_ci"]
        fr = s[f"positive_exponent_fraction_{when}"]["mean_ci"]
        rows.append((f"largest Lyapunov exponent {'before' if when == 'initial' else 'after'}"
                     " training (autonomous: zero input)",
                     "reported (sign; issue 18 counts a positive trained λ1 as a difference)"
                     if when == "trained" else "reported",
                     f"λ1 {mean:+.4f} [{lo:+.4f}, {hi:+.4f}] per step; CI > 0 in "
                     f"{lam['n_ci_above_0']}/{n_done}, < 0 in {lam['n_ci_below_0']}/{n_done}; "
                     f"fraction of the 200 exponents > 1e-3: {fr[0]:.3f}",
                     "yes (QR / Benettin on h -> tanh(W h + b))",
                     _lambda_verdict(lam, n_done)))
    for cond, label in (("zero", "zero input = blank rows"),
                        ("last_ink_row", "last row with ink held")):
        a = s["attractors"][f"trained/{cond}"]
        j = ATTRACTOR_TOLS.index(1e-4)
        jl = ATTRACTOR_TOLS.index(1e-2)
        n = np.array([c[j] for c in a["n_limit_cycles"]])
        rows.append((f"two limit cycles in the trained autonomous dynamics ({label})", "2",
                     f"tol 1e-4: {_cycles_text(a, j)}; tol 1e-2: {_cycles_text(a, jl)}; "
                     "median smallest periodicity residual "
                     f"{np.median(a['min_residual_median']):.3g}",
                     "search as described (3000-step transient, periods <= 100); the study's "
                     "tolerance and number of starting states are not stated",
                     "reproduced" if np.median(n) == 2 else "not reproduced"))
    return rows


def _lambda_verdict(lam: dict, n: int) -> str:
    if lam["n_ci_above_0"] > n / 2:
        return f"λ1 > 0 (CI above 0) in {lam['n_ci_above_0']}/{n}: weakly chaotic"
    if lam["n_ci_below_0"] > n / 2:
        return f"λ1 < 0 in {lam['n_ci_below_0']}/{n}: ordered (fixed point or cycle)"
    return "λ1 ≈ 0 (CI includes 0) in most networks: marginal (quasi-periodic or slow)"


def issue18_notes(s: dict, args) -> list[str]:
    """Per-input, per-tolerance attractor table and the settings of the issue-18 analyses."""
    lines = ["Autonomous phase: after the 28 rows the map h -> tanh(W h + U x + b) runs with "
             f"x = 0 "
             f"(zero input; identical to appended blank rows: max |Δh| = "
             f"{s['blank_rows_vs_zero_input_max_abs_diff']:.1e} over 10 blank rows, float32) or "
             f"x = the image's last row with ink held (the last row itself is blank in "
             f"{s['last_row_blank_fraction']:.1%} of the images, so holding it is the zero input "
             f"there; each image then holds its own input, so its attractors are of its own "
             f"map). {args.attractor_images} starting states (the "
             f"states the test images leave), {args.attractor_transient} transient steps, "
             f"periods up to 100; an orbit is periodic with period p at tolerance tol when "
             f"‖h(t+p) − h(t)‖ ≤ tol over its last p steps; its periodicity residual is the "
             f"smallest tol at which it would be. λ1: {args.lyapunov_images} starting states x "
             f"{args.lyapunov_long_steps} steps (after 200), 95 % CI over starting states. "
             f"Clusters: {args.cluster_images} test images, 5-fold 5-NN accuracy and silhouette "
             f"of the digit labels on the 200-d hidden state at each step.", "",
             "| weights / input | tol | networks with ≥ 1 limit cycle | limit cycles per network "
             "| fixed points per network | periodic orbits (mean fraction) |",
             "|---|---|---|---|---|---|"]
    for key, a in s["attractors"].items():
        for j, tol in enumerate(a["tols"]):
            nc = [c[j] for c in a["n_limit_cycles"]]
            nf = [c[j] for c in a["n_fixed_points"]]
            pf = np.mean([c[j] for c in a["periodic_orbit_fraction"]])
            lines.append(f"| {key} | {tol:g} | {sum(x > 0 for x in nc)}/{len(nc)} | "
                         f"{' '.join(map(str, nc))} | {' '.join(map(str, nf))} | {pf:.2f} |")
    lines += ["", "| weights / input | λ1 mean [95 % CI] over networks | CI > 0 | CI < 0 | "
              "median periodicity residual (median over networks) |", "|---|---|---|---|---|"]
    for key, lam in s["lambda1"].items():
        mean, lo, hi = lam["mean_ci"]
        res = np.median(s["attractors"][key]["min_residual_median"])
        lines.append(f"| {key} | {mean:+.4f} [{lo:+.4f}, {hi:+.4f}] | {lam['n_ci_above_0']} | "
                     f"{lam['n_ci_below_0']} | {res:.3g} |")
    cl = s["clusters"]
    lines += ["", "| time step | " + " | ".join(map(str, REPORT_STEPS)) + " |",
              "|---|" + "---|" * len(REPORT_STEPS),
              "| 5-NN digit accuracy (mean ± sd) | " + " | ".join(
                  f"{cl['knn_mean'][t - 1]:.3f} ± {cl['knn_sd'][t - 1]:.3f}"
                  for t in REPORT_STEPS) + " |",
              "| silhouette (mean ± sd) | " + " | ".join(
                  f"{cl['silhouette_mean'][t - 1]:+.3f} ± {cl['silhouette_sd'][t - 1]:.3f}"
                  for t in REPORT_STEPS) + " |"]
    if "tsne_silhouette" in s:
        lines.append("| silhouette of the t-SNE map (network 0) | " + " | ".join(
            f"{s['tsne_silhouette'][str(t)]:+.3f}" if str(t) in s["tsne_silhouette"] else "-"
            for t in REPORT_STEPS) + " |")
    return lines


def clustering_figure(plt, s: dict, nets: list[dict], path: Path) -> None:
    cl = s["clusters"]
    t = np.arange(1, len(cl["knn_mean"]) + 1)
    fig, ax = plt.subplots(1, 3, figsize=(14, 3.6))
    for a, key, lab in ((ax[0], "knn", "5-NN digit accuracy"), (ax[1], "silhouette",
                                                                 "silhouette")):
        mu, sd = np.array(cl[f"{key}_mean"]), np.array(cl[f"{key}_sd"])
        a.plot(t, mu)
        a.fill_between(t, mu - sd, mu + sd, alpha=0.3)
        a.axvline(28.5, color="k", lw=0.5)
        a.set(xlabel="time step (rows 1-28, then blank)", ylabel=lab,
              title=f"{len(nets)} networks")
    ax[0].axhline(0.1, color="grey", ls="--", lw=0.8)
    for key in ("initial/zero", "trained/zero", "trained/last_ink_row"):
        cond = key.split("/")
        res = [r[f"autonomous_{cond[0]}"][cond[1]]["min_residual_quantiles"]["median"]
               for r in nets]
        ax[2].plot(np.sort(res), np.linspace(0, 1, len(res)), "o-", label=key)
    for tol in ATTRACTOR_TOLS:
        ax[2].axvline(tol, color="grey", lw=0.5)
    ax[2].set(xscale="log", xlabel="median periodicity residual of a network's orbits",
              ylabel="fraction of networks", title="how far from periodic")
    ax[2].legend(fontsize=7)
    study.save_figure(fig, path, dpi=90)


def _network(k: int) -> str:
    return f"network {k}"


if __name__ == "__main__":
    from neurorec.core.errors import run_script

    run_script(main)
