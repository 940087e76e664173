"""rms dynamic-evaluation settings of a trained PTB model, compared on the start of valid.

    python analyses/ptb_perplexity/dynamic_grid.py CHECKPOINT SPEC [--tokens 15000]
        [--grid BPTT:LR:SEGMENTS,...] [--threads 2]

Loads the best parameters of a ``run.py`` checkpoint (``DIR/NAME.checkpoint.pt``) into the model
of SPEC (a model spec file, the one that trained it) and scores the first ``--tokens`` valid
tokens statically and with rms dynamic evaluation (Krause et al. 2018) for each setting: segment
length BPTT, step size LR, and SEGMENTS training segments for the gradient mean square. Test is
not touched; ``run.py --dynamic-lrs`` then chooses among the survivors on the whole valid split.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from neurorec.workflows import study

DEFAULT_GRID = ("10:2e-4:1000,10:3e-4:1000,10:6e-4:1000,10:1e-3:1000,10:2e-3:1000,"
                "5:3e-4:1000,20:3e-4:1000,10:2e-4:5000,10:3e-4:5000")


def parse_grid(text: str) -> list[tuple[int, float, int]]:
    """``"10:3e-4:1000,..."`` → [(bptt, lr, segments), ...]."""
    from neurorec.core.errors import NeurorecError

    out = []
    for item in filter(None, text.split(",")):
        parts = item.strip().split(":")
        try:
            bptt, lr, segments = int(parts[0]), float(parts[1]), int(parts[2])
            if len(parts) != 3 or bptt < 1 or lr <= 0 or segments < 1:
                raise ValueError
        except (ValueError, IndexError):
            raise NeurorecError(f"--grid: {item!r} is not BPTT:LR:SEGMENTS "
                                "(e.g. 10:3e-4:1000)") from None
        out.append((bptt, lr, segments))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("spec", type=Path)
    ap.add_argument("--tokens", type=int, default=15_000)
    ap.add_argument("--grid", default=DEFAULT_GRID)
    study.add_common_args(ap, "threads", threads=2)
    args = ap.parse_args()
    from neurorec.core.errors import NeurorecError
    from neurorec.spec import load_model_spec

    spec = load_model_spec(args.spec)
    grid = parse_grid(args.grid)
    if not args.checkpoint.is_file():
        raise NeurorecError(f"{args.checkpoint}: checkpoint not found")

    from neurorec.datasets.ptb import load_ptb
    from neurorec.families.rglm_lm.model import RGLMLanguageModel
    from neurorec.fit.checkpoint import load_checkpoint

    study.apply_thread_policy(args.threads)
    data = load_ptb()
    model = RGLMLanguageModel(spec).init_net(data.tokens("train"))
    model.net_.load_state_dict(load_checkpoint(args.checkpoint)["best_net"])
    ids = data.valid[: args.tokens]
    print(f"valid tokens 0–{len(ids)}: static {math.exp(model.token_nll(ids).mean()):.2f}",
          flush=True)
    ms = {}
    for bptt, lr, segments in grid:
        if (bptt, segments) not in ms:
            ms[bptt, segments] = model.gradient_mean_square(data.train, segments, bptt)
        t0 = time.perf_counter()
        nll = model.dynamic_token_nll(ids, lr=lr, bptt=bptt, method="rms",
                                      ms=ms[bptt, segments])
        print(f"rms bptt {bptt} lr {lr:g} ms over {segments} segments: "
              f"{math.exp(nll.mean()):.2f} ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    from neurorec.core.errors import run_script

    run_script(main)
