"""Sequential-MNIST dynamics of a 200-unit tanh RNN (issue 7, study B).

    python analyses/seqmnist_dynamics/run.py --out results/seqmnist \
        [--model models/seq_mnist.yaml] [--n-networks 10] [--set fit.epochs=20] \
        [--seed 0] [--device cpu]

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
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
STUDY_ACCURACY = 0.93  # the study, trained on the full 60,000-image training set


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "seq_mnist.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--n-networks", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--lyapunov-steps", type=int, default=500)
    ap.add_argument("--attractor-images", type=int, default=300)
    ap.add_argument("--attractor-transient", type=int, default=3000)
    ap.add_argument("--attractor-tol", type=float, default=1e-4)
    ap.add_argument("--tsne-images", type=int, default=800)
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    import matplotlib
    import torch

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    from neurorec.analysis.limit_cycles import find_attractors
    from neurorec.analysis.lyapunov import lyapunov_spectrum
    from neurorec.datasets.mnist import mnist_split
    from neurorec.models.tanh_rnn import (
        VARIANTS,
        SequenceRNN,
        autonomous_jacobian,
        autonomous_step,
        sequence_variant,
    )
    from neurorec.outputs import atomic_dir, write_json
    from neurorec.report import html
    from neurorec.spec import dump_spec, load_model_spec

    torch.set_num_threads(1)
    spec = load_model_spec(args.model, args.overrides)
    data = mnist_split(spec.data.n_test, spec.data.split_seed)
    ns = np.arange(29)
    acc = {v: np.zeros((args.n_networks, len(ns))) for v in VARIANTS}
    nets: list[dict] = []
    lyap_example: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(args.seed)
    sub = rng.choice(len(data.x_test), args.attractor_images, replace=False)
    for k in range(args.n_networks):
        seed = args.seed + k
        t0 = time.perf_counter()
        ckpt = args.out.with_name(f".{args.out.name}.net{k}.checkpoint.pt")
        model = SequenceRNN(spec, args.device).fit(data.x_train, data.y_train, seed=seed,
                                                   progress=not args.quiet, checkpoint=ckpt)
        row = {"seed": seed, "fit_time_s": time.perf_counter() - t0,
               "test_accuracy": model.score(data.x_test, data.y_test),
               "final_train_loss": model.history_[-1]["loss"]}
        for v in VARIANTS:
            for j, n in enumerate(ns):
                acc[v][k, j] = model.score(sequence_variant(data.x_test, v, int(n)),
                                           data.y_test)
        # states the input leaves: start of the autonomous dynamics
        _, states = model.forward(data.x_test[sub])
        h_end = states[:, -1].astype(float)
        for when in ("initial", "trained"):
            W, b = model.recurrent_params(initial=when == "initial")
            spectra = [lyapunov_spectrum(lambda h, W=W, b=b: autonomous_step(W, b, h),
                                         lambda h, W=W, b=b: autonomous_jacobian(W, b, h),
                                         h_end[i], args.lyapunov_steps, n_transient=200,
                                         seed=seed) for i in range(2)]
            row[f"lyapunov_max_{when}"] = float(np.mean([s.max_exponent for s in spectra]))
            row[f"lyapunov_sum_{when}"] = float(np.mean([s.exponents.sum() for s in spectra]))
            row[f"n_positive_{when}"] = int(np.sum(spectra[0].exponents > 1e-3))
            if k == 0:
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
        if k == 0:
            tsne_idx = sub[: args.tsne_images]
            _, tsne_states = model.forward(data.x_test[tsne_idx])
            times = (7, 14, 21, 28)
            embeds = [TSNE(2, perplexity=30, random_state=args.seed, init="pca")
                      .fit_transform(tsne_states[:, t - 1]) for t in times]
            tsne_labels = data.y_test[tsne_idx]
            history0 = model.history_
        nets.append(row)
        if not args.quiet:
            print(f"network {k}: test accuracy {row['test_accuracy']:.4f}, "
                  f"λmax {row['lyapunov_max_initial']:+.3f} -> {row['lyapunov_max_trained']:+.3f}"
                  f", {row['fit_time_s']:.0f} s", flush=True)

    test_acc = np.array([r["test_accuracy"] for r in nets])
    m = {"split": data.describe(), "n_networks": args.n_networks,
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

    with atomic_dir(args.out, args.overwrite) as d:
        with open(d / "accuracy_vs_n.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["variant", "n", "network", "accuracy"])
            for v in VARIANTS:
                for k in range(args.n_networks):
                    for j, n in enumerate(ns):
                        w.writerow([v, int(n), k, f"{acc[v][k, j]:.4f}"])
        fig, ax = plt.subplots(1, 3, figsize=(14, 3.6))
        for v in VARIANTS:
            ax[0].errorbar(ns, acc[v].mean(0), acc[v].std(0), label=v, capsize=2)
        ax[0].set(xlabel="n (rows hidden / kept / appended)", ylabel="test accuracy",
                  title=f"{args.n_networks} networks")
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
        fig.tight_layout()
        fig.savefig(d / "accuracy_lyapunov.png", dpi=90)
        plt.close(fig)

        fig, ax = plt.subplots(1, len(embeds), figsize=(4 * len(embeds), 4))
        for a, e, t in zip(ax, embeds, times, strict=True):
            sc = a.scatter(e[:, 0], e[:, 1], c=tsne_labels, cmap="tab10", s=4)
            a.set(title=f"t = {t}", xticks=[], yticks=[])
        fig.colorbar(sc, ax=ax[-1])
        fig.tight_layout()
        fig.savefig(d / "tsne.png", dpi=90)
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot([r["loss"] for r in history0], "o-")
        ax.set(xlabel="epoch", ylabel="cross-entropy", title="training, network 0")
        fig.tight_layout()
        fig.savefig(d / "training.png", dpi=90)
        plt.close(fig)

        write_json(d / "metrics.json", m)
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
        for k, r in enumerate(nets):
            for when in ("initial", "trained"):
                at = r[f"attractors_{when}"]
                rows.append((f"net {k} {when}: orbits fixed / cycle / aperiodic "
                             f"(of {args.attractor_images})",
                             f"{at['fixed_point_orbits']} / {at['limit_cycle_orbits']} / "
                             f"{at['aperiodic_orbits']}; {at['n_fixed_points']} fixed points,"
                             f" {at['n_limit_cycles']} limit cycles, periods "
                             f"{at['cycle_periods']}", "-"))
        header = ["quantity", "ours", "study"]
        setup = (f"{data.describe()}. {args.n_networks} networks (seeds {args.seed}.."
                 f"{args.seed + args.n_networks - 1}), {spec.n_units} tanh units, Adam lr "
                 f"{spec.fit.lr:g}, {spec.fit.epochs} epochs, batch {spec.fit.batch_size}. "
                 f"Lyapunov: full spectrum ({spec.n_units} exponents) of h -> tanh(W h + b), "
                 f"200 transient + {args.lyapunov_steps} steps from the states 2 test images "
                 f"leave. Attractors: {args.attractor_images} test images, "
                 f"{args.attractor_transient} steps transient, periods up to 100, tolerance "
                 f"{args.attractor_tol:g}.")
        md = ["# Sequential-MNIST dynamics: results", "", setup, "",
              "| " + " | ".join(header) + " |", "|---|---|---|",
              *["| " + " | ".join(map(str, r)) + " |" for r in rows], "",
              "Figures: `accuracy_lyapunov.png`, `tsne.png`, `training.png`; per-network "
              "numbers in `metrics.json`, curves in `accuracy_vs_n.csv`.", ""]
        (d / "RESULTS.md").write_text("\n".join(md))
        html.page("Sequential-MNIST dynamics (tanh RNN)", [
            ("Setup", f"<p>{setup}</p>"), ("Numbers", html.table(rows, header)),
            ("Accuracy vs n, Lyapunov spectrum",
             html.figure("accuracy_lyapunov.png", "variants and spectra")),
            ("t-SNE of hidden states by digit", html.figure("tsne.png", "t-SNE")),
            ("Training", html.figure("training.png", "loss")),
        ], d / "report.html")
    for k in range(args.n_networks):
        args.out.with_name(f".{args.out.name}.net{k}.checkpoint.pt").unlink(missing_ok=True)
    return m


if __name__ == "__main__":
    main()
