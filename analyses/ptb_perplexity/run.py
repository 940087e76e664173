"""The R-GLM talk's Penn Treebank perplexity table, measured.

    python -u analyses/ptb_perplexity/run.py --out results/ptb [--specs models/lm/irlm_cpu.yaml ...]
        [--set train.max_train_tokens=200000 ...] [--device cpu] [--seed 0] [--no-dynamic]
        [--threads 2] [--dynamic-lrs sgd:0.1,rms:1e-4,rms:3e-4]

The default spec, ``models/lm/irlm_cpu.yaml``, is the table's CPU model: 40 minutes of training
on 2 cores and ≈ 15 minutes of scoring with the three dynamic settings above (test 109.4 static,
100.5 dynamic; ``RESULTS.md``). For every R-GLM spec given it trains the model on PTB
train (Mikolov split, 10k vocabulary), scores valid and test exactly (exp of mean NLL per token,
``<eos>`` included), then dynamic evaluation; it fits the modified Kneser-Ney 5-gram and the
unigram cache on the same data, and interpolates R-GLM + KN5 + cache with weights fitted by EM
on valid. Writes ``table.csv`` / ``table.md`` (talk value beside ours), ``curves.png``
(training curves), ``timescales.png`` (eigenvalues of R as time constants in tokens),
``results.json`` and ``report.html``; each trained model is checkpointed under ``DIR/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np

from neurorec.workflows import study

ROOT = Path(__file__).resolve().parents[2]

TALK = [  # (row, talk test perplexity)
    ("5-gram Kneser-Ney", 141.2), ("feed-forward NNLM", 140.2), ("log-bilinear", 144.5),
    ("RNN", 124.7), ("dynamic RNN", 123.2), ("R-GLM, no regularisation", 137.0),
    ("R-GLM, L1", 125.0), ("R-GLM, dropout + column normalisation", 102.0),
    ("dynamic R-GLM", 98.4), ("R-GLM + KN5 + cache", 94.0),
    ("dynamic R-GLM + KN5 + cache", 90.7),
]


# which of our specs answers which talk row (by spec name); among several, the best on valid
TALK_SPECS = {
    "R-GLM, no regularisation": ("rglm_plain",),
    "R-GLM, L1": ("rglm_l1",),
    "R-GLM, dropout + column normalisation": ("irlm_dropout_colnorm", "irlm_cpu",
                                              "rglm_dropout_colnorm"),
}


def _best_match(talk_row: str, rows: list[dict]) -> dict | None:
    """Our row for a talk row: KN5 directly; R-GLM rows through TALK_SPECS, chosen on valid."""
    if talk_row == "5-gram Kneser-Ney":
        return next((r for r in rows if r["row"] == talk_row), None)
    dynamic = talk_row.startswith("dynamic R-GLM")
    mixed = talk_row.endswith("+ KN5 + cache")
    names = (TALK_SPECS.get(talk_row) if not (dynamic or mixed)
             else TALK_SPECS["R-GLM, dropout + column normalisation"])
    if names is None:
        return None
    prefix = "dynamic R-GLM (" if dynamic else "R-GLM ("
    cands = [r for r in rows if r.get("model") in names and r["row"].startswith(prefix)
             and r["row"].endswith("+ KN5 + cache") == mixed]
    return min(cands, key=lambda r: r["valid"]) if cands else None


def side_by_side(rows: list[dict]) -> str:
    """Markdown table: every talk row, its value, and our matching row (test and valid)."""
    side = ["| talk row | talk test ppl | ours: test ppl (valid) | our row |",
            "|---|---:|---:|---|"]
    for talk_row, talk_ppl in TALK:
        match = _best_match(talk_row, rows)
        side.append(f"| {talk_row} | {talk_ppl} | " + (
            f"{match['test']:.1f} ({match['valid']:.1f}) | {match['row']} |" if match
            else "not run (not an R-GLM or count model) | |"))
    return "\n".join(side) + "\n"


def merge_tables(paths: list[Path], out: Path) -> None:
    """Gather the rows of several runs (count baselines once) into OUT/table.md + rows.json."""
    rows: list[dict] = []
    for p in paths:
        for r in json.loads(Path(p).read_text())["rows"]:
            if r.get("model") in ("kn5", "cache", "kn5+cache") and any(
                    q["row"] == r["row"] for q in rows):
                continue
            rows.append({**r, "source": str(p)})
    out.mkdir(parents=True, exist_ok=True)
    (out / "rows.json").write_text(json.dumps(rows, indent=1, default=float))
    (out / "table.md").write_text(side_by_side(rows))
    print((out / "table.md").read_text())


def dynamic_settings(text: str | None, default) -> list[tuple[str, float, float]]:
    """``--dynamic-lrs`` entries as (method, lr, decay); bare numbers take the spec's method
    and decay, and no list means the spec's own setting."""
    from neurorec.core.errors import NeurorecError

    if not text:
        return [(default.method, default.lr, default.decay)]
    out = []
    for item in text.split(","):
        parts = item.strip().split(":")
        try:
            if len(parts) == 1:
                out.append((default.method, float(parts[0]), default.decay))
            elif parts[0] in ("sgd", "rms") and len(parts) in (2, 3):
                out.append((parts[0], float(parts[1]),
                            float(parts[2]) if len(parts) == 3 else default.decay))
            else:
                raise ValueError
        except ValueError:
            raise NeurorecError(f"--dynamic-lrs: {item!r} is not LR or METHOD:LR[:DECAY] "
                                "(METHOD sgd or rms)") from None
    return out


def setting_key(setting: tuple[str, float, float]) -> str:
    method, lr, decay = setting
    return f"{method}:{lr:g}:{decay:g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    study.add_common_args(ap, "out")
    ap.add_argument("--specs", nargs="+", type=Path, default=[ROOT / "models/lm/irlm_cpu.yaml"])
    study.add_common_args(ap, "set", "device", "seed", "threads", helps={
        "set": "override applied to every spec (repeatable)"})
    ap.add_argument("--no-dynamic", action="store_true")
    ap.add_argument("--valid-tokens", type=int, default=10_000,
                    help="valid tokens scored at each check during training (0 = all)")
    ap.add_argument("--dynamic-lrs", default=None,
                    help="comma list of dynamic-evaluation settings, each LR (the spec's method "
                    "and decay) or METHOD:LR[:DECAY] with METHOD sgd or rms (e.g. "
                    "0.1,rms:1e-3,rms:1e-3:0.01): each is run on valid and the best is applied "
                    "to test (default: the spec's dynamic settings only)")
    ap.add_argument("--tf32", action="store_true",
                    help="CUDA: TF32 matmuls while training (tensor cores: several times the "
                    "float32 matmul rate); every reported perplexity is scored in full float32")
    study.add_common_args(ap, "quiet")
    ap.add_argument("--merge", nargs="+", type=Path, metavar="RESULTS_JSON",
                    help="train nothing: write OUT/table.md from the rows of earlier runs' "
                    "results.json (several models trained at once, e.g. on one GPU)")
    args = ap.parse_args()
    if args.merge:
        merge_tables(args.merge, args.out)
        return
    from neurorec.families.rglm_lm.spec import LMDynamicSpec
    from neurorec.spec import load_model_spec

    # bad specs, overrides or --dynamic-lrs fail now, before anything is written or trained
    specs = [load_model_spec(p, args.set) for p in args.specs]
    dynamic_settings(args.dynamic_lrs, LMDynamicSpec())

    import matplotlib
    import torch

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from neurorec.analysis.ngram import (
        KneserNey,
        cache_token_prob,
        fit_interpolation,
        perplexity,
    )
    from neurorec.datasets.ptb import load_ptb
    from neurorec.families.rglm_lm.model import RGLMLanguageModel, time_constants_tokens
    from neurorec.fit.run import Run
    from neurorec.report import html

    study.apply_thread_policy(args.threads)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    data = load_ptb()
    V = data.vocab_size
    results: dict = {"vocab_size": V, "n_tokens": {s: len(data.split(s))
                                                    for s in ("train", "valid", "test")}}
    rows: list[dict] = []

    # --- count baselines -------------------------------------------------------
    t0 = time.perf_counter()
    kn = KneserNey(5, V).fit(data.train, data.eos_id)
    kn_p = {s: kn.token_prob(data.split(s), data.eos_id) for s in ("valid", "test")}
    cache_p = {s: cache_token_prob(data.split(s), V) for s in ("valid", "test")}
    results["kn5_seconds"] = time.perf_counter() - t0
    results["kn5_discounts"] = [o.discounts.tolist() for o in kn.orders_]
    rows.append({"row": "5-gram Kneser-Ney", "model": "kn5",
                 "valid": perplexity(kn_p["valid"]), "test": perplexity(kn_p["test"])})
    rows.append({"row": "unigram cache (500 tokens)", "model": "cache",
                 "valid": perplexity(cache_p["valid"]), "test": perplexity(cache_p["test"])})
    lam = fit_interpolation(np.stack([kn_p["valid"], cache_p["valid"]]))
    rows.append({"row": "KN5 + cache", "model": "kn5+cache",
                 "valid": perplexity(lam @ np.stack([kn_p["valid"], cache_p["valid"]])),
                 "test": perplexity(lam @ np.stack([kn_p["test"], cache_p["test"]])),
                 "weights": lam.tolist()})

    # --- R-GLMs ----------------------------------------------------------------
    curves, timescales = {}, {}
    for spec in specs:
        model = RGLMLanguageModel(spec, seed=args.seed, device=args.device)
        ckpt = Run(checkpoint_dir=out / f"{spec.name}.checkpoint", resume=True)
        # valid checks during training use the first --valid-tokens valid tokens (curves, lr
        # decay, best parameters); final scores use the whole splits
        check = data.valid[:args.valid_tokens] if args.valid_tokens > 0 else data.valid
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        try:
            model.fit(data.tokens("train"), valid=check, progress=not args.quiet, run=ckpt)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32
        log = model.log_
        curves[spec.name] = log
        nll = {s: model.token_nll(data.split(s)) for s in ("valid", "test")}
        p_model = {s: np.exp(-v) for s, v in nll.items()}
        tau = time_constants_tokens(model.eigenvalues())
        timescales[spec.name] = (model.eigenvalues(), tau)
        base = {"model": spec.name, "train_tokens_per_s": log.tokens_per_s,
                "train_seconds": log.fit_time_s, "tokens_trained": log.tokens[-1],
                "epochs_trained": log.tokens[-1] / len(data.train),
                "stopped_by_budget": log.stopped_by_budget, "device": args.device,
                "train_tf32": bool(args.tf32 and args.device.startswith("cuda")),
                "hidden": spec.recurrent.dim, "n_parameters": model.n_parameters()}
        rows.append({**base, "row": f"R-GLM ({spec.name})",
                     "valid": math.exp(nll["valid"].mean()), "test": math.exp(nll["test"].mean())})
        stack = {s: np.stack([p_model[s], kn_p[s], cache_p[s]]) for s in ("valid", "test")}
        lam = fit_interpolation(stack["valid"])
        rows.append({**base, "row": f"R-GLM ({spec.name}) + KN5 + cache",
                     "valid": perplexity(lam @ stack["valid"]),
                     "test": perplexity(lam @ stack["test"]), "weights": lam.tolist()})
        if not args.no_dynamic and spec.dynamic.enabled:
            t1 = time.perf_counter()
            settings = {setting_key(x): x for x in dynamic_settings(args.dynamic_lrs,
                                                                     spec.dynamic)}
            ms = (model.gradient_mean_square(data.train)
                  if any(m == "rms" for m, _, _ in settings.values()) else None)
            # the setting is chosen on valid only; test is scored once, with that setting
            dyn_valid = {key: np.exp(-model.dynamic_token_nll(
                data.valid, lr=lr, method=method, decay=decay, ms=ms, progress=not args.quiet))
                for key, (method, lr, decay) in settings.items()}
            valid_ppl = {key: perplexity(p) for key, p in dyn_valid.items()}
            best = min(valid_ppl, key=valid_ppl.get)
            method, best_lr, decay = settings[best]
            dyn = {"valid": dyn_valid[best],
                   "test": np.exp(-model.dynamic_token_nll(
                       data.test, lr=best_lr, method=method, decay=decay, ms=ms,
                       progress=not args.quiet))}
            dyn_s = time.perf_counter() - t1
            rows.append({**base, "row": f"dynamic R-GLM ({spec.name})",
                         "valid": perplexity(dyn["valid"]), "test": perplexity(dyn["test"]),
                         "dynamic_seconds": dyn_s, "dynamic_lr": best_lr,
                         "dynamic_method": method, "dynamic_decay": decay,
                         "dynamic_valid_by_lr": valid_ppl})
            stack = {s: np.stack([dyn[s], kn_p[s], cache_p[s]]) for s in ("valid", "test")}
            lam = fit_interpolation(stack["valid"])
            rows.append({**base, "row": f"dynamic R-GLM ({spec.name}) + KN5 + cache",
                         "valid": perplexity(lam @ stack["valid"]),
                         "test": perplexity(lam @ stack["test"]), "weights": lam.tolist()})
        print(json.dumps(rows[-1], default=float), flush=True)

    # --- outputs ----------------------------------------------------------------
    keys = ["row", "model", "valid", "test", "hidden", "tokens_trained", "train_tokens_per_s",
            "weights"]
    study.write_csv(out / "table.csv", rows, keys)
    talk_lines = ["| talk row | talk test ppl |", "|---|---:|"]
    talk_lines += [f"| {r} | {v} |" for r, v in TALK]
    ours = ["| our row (measured) | valid ppl | test ppl | interpolation weights |",
            "|---|---:|---:|---|"]
    ours += [f"| {r['row']} | {r['valid']:.1f} | {r['test']:.1f} | "
             f"{', '.join(f'{x:.3f}' for x in r.get('weights', []))} |" for r in rows]
    (out / "table.md").write_text(side_by_side(rows) + "\n" + "\n".join(talk_lines) + "\n\n"
                                  + "\n".join(ours) + "\n")

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, log in curves.items():
        ax.plot(log.tokens, log.train_ppl, label=f"{name} train (running)")
        if log.valid_ppl:
            ax.plot(log.valid_tokens, log.valid_ppl, "o-", label=f"{name} valid (checks)")
    ax.set(xlabel="training tokens", ylabel="perplexity", yscale="log")
    ax.legend(fontsize=7)
    study.save_figure(fig, out / "curves.png", dpi=120)

    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for name, (ev, tau) in timescales.items():
        axes[0].scatter(ev.real, ev.imag, s=6, label=name)
        finite = np.sort(tau[np.isfinite(tau)])[::-1]
        axes[1].plot(np.arange(1, len(finite) + 1), finite, ".-", label=name)
    th = np.linspace(0, 2 * np.pi, 200)
    axes[0].plot(np.cos(th), np.sin(th), "k", lw=0.5)
    axes[0].set(xlabel="Re λ", ylabel="Im λ", title="eigenvalues of R", aspect="equal")
    axes[1].set(xlabel="mode (sorted)", ylabel="time constant τ = −1/ln|λ| (tokens)",
                yscale="log", title="R-GLM memory time scales")
    axes[1].legend(fontsize=7)
    study.save_figure(fig, out / "timescales.png", dpi=120)

    results["rows"] = rows
    results["curves"] = {k: dataclasses.asdict(v) for k, v in curves.items()}
    results["time_constants_tokens"] = {k: np.sort(v[1])[::-1][:20].tolist()
                                        for k, v in timescales.items()}
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    study.write_report(out, "PTB perplexity: R-GLM vs n-gram and cache", [
        ("Talk", html.table(TALK, ["row", "test perplexity"])),
        ("Measured here", html.table(
            [[r["row"], f"{r['valid']:.1f}", f"{r['test']:.1f}"] for r in rows],
            ["row", "valid", "test"])),
        ("Training curves", html.figure("curves.png", "running train and valid perplexity")),
        ("Time scales", html.figure("timescales.png", "eigenvalues of R, time constants")),
    ])
    print((out / "table.md").read_text())


if __name__ == "__main__":
    from neurorec.core.errors import run_script

    run_script(main)
