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
import sys
import time
from pathlib import Path

import numpy as np

from neurorec.workflows import study
from neurorec.workflows.study import Budget, current_budget

ROOT = Path(__file__).resolve().parents[2]

STUDY_ACCURACY = 0.93  # the study, trained on the full 60,000-image training set
TSNE_TIMES = (7, 14, 21, 28)


def checkpoint_path(out: Path, k: int) -> Path:
    return study.beside(out, f".net{k}.checkpoint.pt")


def network_job(spec, k: int, sub: np.ndarray, args) -> dict:
    """Train network ``k`` (seed ``args.seed + k``) and run its analyses (a job of the pool).

    Returns ``row`` (its numbers for ``metrics.json``), ``accuracy`` (variant -> (29,)
    accuracy for n = 0..28), ``lyapunov_example`` (spectra and running λ1, initial and
    trained), ``history`` and, for network 0, ``tsne`` (embeddings, times, labels).
    """
    from sklearn.manifold import TSNE

    from neurorec.analysis.limit_cycles import find_attractors
    from neurorec.analysis.lyapunov import lyapunov_spectrum
    from neurorec.datasets.mnist import mnist_split
    from neurorec.families.rnn.model import (
        VARIANTS,
        SequenceRNN,
        autonomous_jacobian,
        autonomous_step,
        sequence_variant,
    )

    budget = current_budget()
    data = mnist_split(spec.data.n_test, spec.data.split_seed)
    seed = args.seed + k
    t0 = time.perf_counter()
    ckpt = checkpoint_path(args.out, k)
    model = SequenceRNN(spec, args.device)
    progress = not args.quiet and args.jobs <= 1
    for epoch in range(1, spec.fit.epochs + 1):  # one epoch a call: stop between epochs
        model.fit(data.x_train, data.y_train, seed=seed, progress=progress, checkpoint=ckpt,
                  epochs=epoch)
        if epoch < spec.fit.epochs:
            budget.check(f"network {k}: stopped after epoch {epoch} of {spec.fit.epochs}")
    row = {"seed": seed, "fit_time_s": time.perf_counter() - t0,
           "test_accuracy": model.score(data.x_test, data.y_test),
           "final_train_loss": model.history_[-1]["loss"]}
    ns = np.arange(29)
    acc = {v: np.array([model.score(sequence_variant(data.x_test, v, int(n)), data.y_test)
                        for n in ns]) for v in VARIANTS}
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
        att = find_attractors(lambda h, W=W, b=b: autonomous_step(W, b, h), h_end,
                              n_transient=args.attractor_transient, max_period=100,
                              tol=args.attractor_tol, merge_tol=10 * args.attractor_tol)
        periods = att.period
        row[f"attractors_{when}"] = {
            "fixed_point_orbits": int(np.sum(periods == 1)),
            "limit_cycle_orbits": int(np.sum(periods > 1)),
            "aperiodic_orbits": int(np.sum(periods == 0)),
            "n_fixed_points": att.n_fixed_points, "n_limit_cycles": att.n_limit_cycles,
            "cycle_periods": sorted({len(c) for c in att.cycles if len(c) > 1}),
            "digits_per_attractor": [
                len(np.unique(data.y_test[sub][att.attractor == j]))
                for j in range(len(att.cycles))],
        }
    tsne = None
    if k == 0:
        tsne_idx = sub[: args.tsne_images]
        _, tsne_states = model.forward(data.x_test[tsne_idx])
        embeds = [TSNE(2, perplexity=30, random_state=args.seed, init="pca")
                  .fit_transform(tsne_states[:, t - 1]) for t in TSNE_TIMES]
        tsne = {"embeds": embeds, "labels": data.y_test[tsne_idx]}
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
    jobs = [(k, network_job, (spec, k, sub, args)) for k in range(args.n_networks)]
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
        md = ["# Sequential-MNIST dynamics: results", "", setup, "",
              *study.markdown_table(rows, header), "",
              "Figures: `accuracy_lyapunov.png`, `tsne.png`, `training.png`; per-network "
              "numbers in `metrics.json`, curves in `accuracy_vs_n.csv`.", ""]
        (d / "RESULTS.md").write_text("\n".join(md))
        study.write_report(d, "Sequential-MNIST dynamics (tanh RNN)", [
            ("Setup", f"<p>{setup}</p>"), ("Numbers", html.table(rows, header)),
            ("Accuracy vs n, Lyapunov spectrum",
             html.figure("accuracy_lyapunov.png", "variants and spectra")),
            *([("t-SNE of hidden states by digit", html.figure("tsne.png", "t-SNE"))]
              if tsne is not None else []),
            ("Training", html.figure("training.png", "loss")),
        ])
    for k in done:  # an unfinished network keeps its checkpoint: the same command continues it
        checkpoint_path(args.out, k).unlink(missing_ok=True)
    study.exit_if_failed(outcomes, _network)
    return m


def _network(k: int) -> str:
    return f"network {k}"


if __name__ == "__main__":
    from neurorec.core.errors import run_script

    run_script(main)
