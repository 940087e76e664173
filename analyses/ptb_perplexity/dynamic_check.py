"""sgd vs rms dynamic evaluation on a small IRLM trained on PTB for a few minutes (CPU check).

    python analyses/ptb_perplexity/dynamic_check.py [TRAIN_SECONDS]   (default 420)

Trains ``models/lm/irlm.yaml`` at H = 256, dropout 0.5 for TRAIN_SECONDS, then scores valid
tokens 0–20k (selection: static, sgd step sizes, rms step sizes × decay) and valid tokens
20k–40k (held out: static and the best sgd and rms settings on the selection part). The test
split is not touched. The rms statistics come from 3000 training segments of 10 tokens.
"""

import math
import sys
import time

from neurorec.datasets.ptb import load_ptb
from neurorec.families.rglm_lm.model import RGLMLanguageModel
from neurorec.spec import load_model_spec
from neurorec.workflows.study import apply_thread_policy

apply_thread_policy(2)
seconds = sys.argv[1] if len(sys.argv) > 1 else "420"
data = load_ptb()
spec = load_model_spec("models/lm/irlm.yaml", [
    "recurrent.dim=256", "regularisation.dropout=0.5", f"train.max_seconds={seconds}",
    "train.epochs=10", "train.eval_every=200000"])
t0 = time.time()
m = RGLMLanguageModel(spec, seed=0)
m.fit(data.tokens("train"), valid=data.valid[:10000], progress=False)
print("trained", round(time.time() - t0), "s, tokens", m.log_.tokens[-1], "valid curve",
      [round(v, 1) for v in m.log_.valid_ppl], flush=True)
sel, held = data.valid[:20000], data.valid[20000:40000]


def ppl(nll) -> float:
    return math.exp(nll.mean())


res = {"static": ppl(m.token_nll(sel))}
print("static: selection", round(res["static"], 2), "held-out", round(ppl(m.token_nll(held)), 2))
ms = m.gradient_mean_square(data.train, n_segments=3000)
grid = [("sgd", lr, 0.0) for lr in (0.03, 0.1, 0.3)]
grid += [("rms", lr, dec) for lr in (3e-4, 1e-3, 3e-3) for dec in (0.0, 0.01)]
for method, lr, decay in grid:
    res[(method, lr, decay)] = ppl(m.dynamic_token_nll(sel, lr=lr, method=method, decay=decay,
                                                       ms=ms))
    print(method, lr, decay, "selection", round(res[(method, lr, decay)], 2), flush=True)
for method in ("sgd", "rms"):
    best = min((k for k in res if k[0] == method), key=res.get)
    held_ppl = ppl(m.dynamic_token_nll(held, lr=best[1], method=method, decay=best[2], ms=ms))
    print("best", best, "selection", round(res[best], 2), "held-out", round(held_ppl, 2))
