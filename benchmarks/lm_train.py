"""Training and evaluation speed of the R-GLM language model vs a torch ``nn.RNN`` (tanh).

    python benchmarks/lm_train.py [--hidden 200] [--vocab 10000] [--batch 32] [--bptt 35]
                                  [--steps 20] [--threads 1] [--device cpu] [--json PATH]

Both models have the same embedding (V × H), the same full-softmax readout (H → V) and
Adam + gradient clipping; they differ only in the recurrence: R-GLM ``h = h Rᵀ + W0ᵀ l``
(plus the spectral-radius check neurorec runs after each step) vs ``nn.RNN(tanh)`` (cuDNN/
oneDNN kernel). Tokens are PTB ids when PTB is found, else uniform random ids (same cost).
Prints tokens/s for training (forward + backward + step) and evaluation (forward, batch 1
stream as neurorec scores perplexity) and the ratio R-GLM / nn.RNN.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F


class TanhRNNLM(torch.nn.Module):
    def __init__(self, V: int, H: int):
        super().__init__()
        self.emb = torch.nn.Embedding(V, H)
        self.rnn = torch.nn.RNN(H, H, nonlinearity="tanh")
        self.out = torch.nn.Linear(H, V)

    def forward(self, x, h):
        hs, h = self.rnn(self.emb(x), h)
        return self.out(hs), h


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--vocab", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--bptt", type=int, default=35)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from neurorec.core.errors import DataError
    from neurorec.families.rglm_lm.model import RGLMLanguageModel, batchify
    from neurorec.families.rglm_lm.spec import RGLMLMSpec

    V, H = a.vocab, a.hidden
    try:
        from neurorec.datasets.ptb import load_ptb

        ids = load_ptb().train % V
    except DataError:
        ids = np.random.default_rng(0).integers(0, V, 1_000_000)
    dev = torch.device(a.device)
    n_tok = a.batch * a.bptt * a.steps
    data = batchify(ids[: n_tok + a.batch * (a.bptt + 1)], a.batch).to(dev)
    eval_ids = ids[:2000]
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    spec = RGLMLMSpec(recurrent={"dim": H}, train={"batch_size": a.batch, "bptt": a.bptt})
    rglm = RGLMLanguageModel(spec, device=a.device).init_net(V, eos_id=0)
    rnn = TanhRNNLM(V, H).to(dev)

    def train_rglm():
        net = rglm.net_
        params = [net.W0t, net.R, net.B, net.b]
        opt = torch.optim.Adam(params, lr=1e-3)
        h = rglm._h0(a.batch)
        for s in range(a.steps):
            x, y = data[s * a.bptt:(s + 1) * a.bptt], data[s * a.bptt + 1:(s + 1) * a.bptt + 1]
            hs = net.states(x, h.detach())
            h = hs[-1]
            loss = F.cross_entropy(net.logits(hs).reshape(-1, V), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            rglm._constrain(1e-3)

    def train_rnn():
        opt = torch.optim.Adam(rnn.parameters(), lr=1e-3)
        h = torch.zeros(1, a.batch, H, device=dev)
        for s in range(a.steps):
            x, y = data[s * a.bptt:(s + 1) * a.bptt], data[s * a.bptt + 1:(s + 1) * a.bptt + 1]
            logits, h = rnn(x, h.detach())
            loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(rnn.parameters(), 1.0)
            opt.step()

    @torch.no_grad()
    def eval_rnn():
        x = torch.as_tensor(eval_ids, device=dev)
        h = torch.zeros(1, 1, H, device=dev)
        for s in range(0, len(x) - 1, 256):
            logits, h = rnn(x[s:s + 256, None], h)
            F.cross_entropy(logits[:, 0][:-1], x[s + 1:s + 256])

    def timed(fn, n):
        fn()  # warm-up
        sync()
        t = time.perf_counter()
        fn()
        sync()
        return n / (time.perf_counter() - t)

    res = {"hidden": H, "vocab": V, "batch": a.batch, "bptt": a.bptt, "threads": a.threads,
           "device": a.device, "torch": torch.__version__}
    res["train_tok_s_rglm"] = timed(train_rglm, n_tok)
    res["train_tok_s_rnn"] = timed(train_rnn, n_tok)
    res["eval_tok_s_rglm"] = timed(lambda: rglm.token_nll(eval_ids), len(eval_ids))
    res["eval_tok_s_rnn"] = timed(eval_rnn, len(eval_ids))
    res["train_ratio_rglm_over_rnn"] = res["train_tok_s_rglm"] / res["train_tok_s_rnn"]
    res["eval_ratio_rglm_over_rnn"] = res["eval_tok_s_rglm"] / res["eval_tok_s_rnn"]
    res["epoch_minutes_rglm"] = 929_589 / res["train_tok_s_rglm"] / 60
    for k, v in res.items():
        print(f"{k:28s} {v:.4g}" if isinstance(v, float) else f"{k:28s} {v}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
