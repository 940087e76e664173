"""R-GLM language model: a linear recurrence with a full-softmax readout, trained by truncated BPTT.

    h_t = R h_{t-1} + W0ᵀ l_t          (l_t: one-hot of the word read at step t)
    p(w_{t+1} = v | w_{≤t}) = softmax(B h_t + b)_v

Perplexity is exact: ``exp`` of the mean negative log-likelihood (nats) over every predicted
token, ``<eos>`` included. A split of ``n`` tokens is scored as ``n`` predictions: the stream is
read after one leading ``<eos>`` (the end of the previous sentence), so its first word is
predicted too and no token is skipped.

Dynamic evaluation (Mikolov 2010; the talk's "dynamic R-GLM") scores the stream in segments of
``dynamic.bptt`` tokens and, after scoring a segment, takes one SGD step on that segment's mean
NLL; the state is carried on. The prediction of token ``t`` therefore depends only on tokens
``< t`` (tests/test_lm.py checks it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from neurorec.core.errors import DivergenceError, SpecError
from neurorec.families.rglm_lm.spec import RGLMLMSpec
from neurorec.fit.checkpoint import (
    generator_states,
    load_checkpoint,
    restore_generators,
    save_checkpoint,
)


def _device(device: str) -> torch.device:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SpecError(f"device: {device!r} requested but torch sees no CUDA device")
    return torch.device(device)


class RGLMNet(torch.nn.Module):
    """Parameters and forward pass.

    Attributes:
        W0t: (V, H) input weights; row ``v`` is ``W0ᵀ l`` for ``l`` the one-hot of word ``v``.
        R: (H, H) recurrence; multiplied by ``mask`` (fixed, 0/1) when R is sparse.
        B: (V, H) readout, ``b``: (V,) readout bias.
    """

    def __init__(self, vocab_size: int, dim: int, density: float = 1.0,
                 init_radius: float = 0.9, init_scale: float = 0.1,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
                 structure: str = "dense"):
        super().__init__()
        g = generator
        V, H = vocab_size, dim
        self.diagonal = structure == "diagonal"
        if self.diagonal:
            # decays spread over [0, init_radius): a range of memory time scales from the start
            R = torch.rand(H, generator=g, dtype=torch.float64) * init_radius
            mask = torch.ones(H, dtype=dtype)
        else:
            mask = torch.ones(H, H, dtype=dtype)
            if density < 1:
                mask = (torch.rand(H, H, generator=g) < density).to(dtype)
            R = torch.randn(H, H, generator=g, dtype=torch.float64) * mask.double()
            radius = torch.linalg.eigvals(R).abs().max().item() if H > 0 else 0.0
            R = R * (init_radius / radius if radius > 0 else 0.0)
        self.W0t = torch.nn.Parameter(torch.randn(V, H, generator=g, dtype=dtype) * init_scale)
        self.R = torch.nn.Parameter(R.to(dtype))
        self.B = torch.nn.Parameter(torch.randn(V, H, generator=g, dtype=dtype) * init_scale)
        self.b = torch.nn.Parameter(torch.zeros(V, dtype=dtype))
        self.register_buffer("mask", mask)
        self.sparse = density < 1

    def R_eff(self) -> torch.Tensor:
        """The (H, H) recurrence matrix (``diag(λ)`` for a diagonal R)."""
        if self.diagonal:
            return torch.diag(self.R)
        return self.R * self.mask if self.sparse else self.R

    @torch.no_grad()
    def enforce_structure_(self, max_radius: float) -> None:
        """Put R back in its structure after a gradient step: zeros off the sparse mask, and
        every decay of a diagonal R within ``[-max_radius, max_radius]`` (a dense R's spectral
        radius needs an eigendecomposition: see ``RGLMLanguageModel._constrain``)."""
        if self.sparse:
            self.R.mul_(self.mask)
        if self.diagonal:
            self.R.clamp_(-max_radius, max_radius)

    def states(self, x: torch.Tensor, h0: torch.Tensor,
               input_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states after reading each token.

        Args:
            x: (T, N) int64 token ids (time-major, N parallel streams).
            h0: (N, H) state before the first token.
            input_mask: optional (T, N, H) multiplier of the inputs ``W0ᵀ l_t`` (dropout).

        Returns:
            (T, N, H) states ``h_1..h_T``.
        """
        inp = self.W0t[x]  # (T, N, H)
        if input_mask is not None:
            inp = inp * input_mask
        h = h0
        out = []
        if self.diagonal:
            lam = self.R
            for t in range(x.shape[0]):
                h = torch.addcmul(inp[t], h, lam)
                out.append(h)
        else:
            Rt = self.R_eff().t()
            for t in range(x.shape[0]):
                h = torch.addmm(inp[t], h, Rt)
                out.append(h)
        return torch.stack(out)

    def logits(self, hs: torch.Tensor) -> torch.Tensor:
        """(..., H) states → (..., V) unnormalised log-probabilities of the next word."""
        return F.linear(hs, self.B, self.b)


def batchify(ids: np.ndarray, n_streams: int) -> torch.Tensor:
    """Cut a token stream into ``n_streams`` contiguous streams: (n // n_streams, n_streams)."""
    n = (len(ids) // n_streams) * n_streams
    return torch.as_tensor(np.asarray(ids[:n]).reshape(n_streams, -1).T.copy())


@dataclass
class TrainingLog:
    """Curves recorded while training (tokens seen, valid perplexity, running train perplexity)."""

    tokens: list[int] = field(default_factory=list)
    train_ppl: list[float] = field(default_factory=list)
    valid_tokens: list[int] = field(default_factory=list)
    valid_ppl: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: float = 0.0
    tokens_per_s: float = 0.0
    stopped_by_budget: bool = False  # train.max_seconds ended training before train.epochs


class RGLMLanguageModel:
    """R-GLM language model (``kind: rglm_lm``).

    ``__init__`` stores the spec; :meth:`fit` learns ``net_`` and ``log_``.

    Args:
        spec: the validated :class:`~neurorec.families.rglm_lm.spec.RGLMLMSpec`.
        vocab_size: V; ``eos_id`` the id of ``<eos>`` (the context before a split's first word).
        seed: seeds the initialisation, the sparse mask, dropout and nothing else.
        device: ``"cpu"`` or ``"cuda"``.
    """

    def __init__(self, spec: RGLMLMSpec, vocab_size: int, eos_id: int, seed: int = 0,
                 device: str = "cpu"):
        self.spec = spec
        self.vocab_size = vocab_size
        self.eos_id = eos_id
        self.seed = seed
        self.device = device

    # ------------------------------------------------------------------ construction
    def _dtype(self) -> torch.dtype:
        return torch.float64 if self.spec.train.dtype == "float64" else torch.float32

    def init_net(self) -> RGLMLanguageModel:
        """Draw the initial parameters (done by :meth:`fit`; public for tests)."""
        r = self.spec.recurrent
        self.gen_ = torch.Generator().manual_seed(self.seed)
        self.net_ = RGLMNet(self.vocab_size, r.dim, r.density, r.init_radius, r.init_scale,
                            generator=self.gen_, dtype=self._dtype(),
                            structure=r.structure).to(_device(self.device))
        # dropout draws on the parameters' device (a CPU generator would copy every mask over)
        self.drop_gen_ = torch.Generator(device=self.net_.R.device).manual_seed(self.seed + 1)
        return self

    def _h0(self, n: int) -> torch.Tensor:
        return torch.zeros(n, self.spec.recurrent.dim, dtype=self._dtype(),
                           device=self.net_.R.device)

    def _dropout_mask(self, shape: tuple[int, ...], p: float) -> torch.Tensor | None:
        if p <= 0:
            return None
        keep = torch.rand(shape, generator=self.drop_gen_, device=self.net_.R.device) >= p
        return keep.to(self._dtype()) / (1 - p)

    @torch.no_grad()
    def _constrain(self, lr: float, check_radius: bool = True) -> None:
        reg, net = self.spec.regularisation, self.net_
        if reg.l1 > 0:  # proximal step for the L1 penalty: soft-threshold R
            net.R.copy_(torch.sign(net.R) * torch.clamp(net.R.abs() - lr * reg.l1, min=0))
        if reg.column_norm > 0:
            for w in (net.W0t, net.B):
                norms = w.norm(dim=1, keepdim=True).clamp(min=reg.column_norm)
                w.mul_(reg.column_norm / norms)
        r_max = self.spec.recurrent.max_radius
        net.enforce_structure_(r_max)
        if not net.diagonal and check_radius:
            radius = torch.linalg.eigvals(net.R_eff().double()).abs().max().item()
            if radius > r_max:
                net.R.mul_(r_max / radius)

    # ------------------------------------------------------------------ training
    def fit(self, train: np.ndarray, valid: np.ndarray | None = None, progress: bool = True,
            checkpoint: str | Path | None = None, resume: bool = False,
            on_eval: Callable[[dict], None] | None = None) -> RGLMLanguageModel:
        """Truncated BPTT on ``train``; valid perplexity every ``train.eval_every`` tokens.

        Args:
            train, valid: int token ids, shape (n_tokens,).
            checkpoint: file for :func:`~neurorec.fit.checkpoint.save_checkpoint` after every
                valid check (parameters, optimiser, position, generator states, log).
            resume: continue from ``checkpoint`` if it exists.

        Returns:
            self, with ``net_`` (the parameters with the best valid perplexity seen, or the
            last ones without ``valid``) and ``log_`` (:class:`TrainingLog`).
        """
        t = self.spec.train
        self.init_net()
        net = self.net_
        if t.max_train_tokens is not None:
            train = train[: t.max_train_tokens]
        self.train_ids_ = train  # for rms dynamic evaluation's gradient statistics
        data = batchify(np.concatenate([[self.eos_id], train]), t.batch_size).to(net.R.device)
        n_steps_epoch = max(1, (data.shape[0] - 1 + t.bptt - 1) // t.bptt)
        total_steps = max(1, round(t.epochs * n_steps_epoch))
        with torch.no_grad():  # start the readout at the training unigram log-frequencies
            freq = np.bincount(train, minlength=self.vocab_size) + 0.5
            net.b.copy_(torch.as_tensor(np.log(freq / freq.sum())))
        params = [net.W0t, net.R, net.B, net.b]
        opt = (torch.optim.Adam(params, lr=t.lr) if t.optimizer == "adam"
               else torch.optim.SGD(params, lr=t.lr, momentum=t.momentum))
        log = TrainingLog()
        step, tokens_seen, lr, bad_checks = 0, 0, t.lr, 0
        best = (math.inf, None)
        h = self._h0(t.batch_size)
        next_eval = t.eval_every
        run_nll, run_n = 0.0, 0
        if resume and checkpoint is not None and Path(checkpoint).is_file():
            state = load_checkpoint(checkpoint)
            net.load_state_dict(state["net"])
            opt.load_state_dict(state["optimizer"])
            restore_generators(state["generators"], torch_gen=self.gen_)
            if "dropout_generator" in state:
                self.drop_gen_.set_state(state["dropout_generator"])
            step, tokens_seen, lr = state["step"], state["tokens_seen"], state["lr"]
            bad_checks = state.get("bad_checks", 0)
            h = state["h"].to(net.R.device)
            next_eval, log = state["next_eval"], state["log"]
            best = (state["best_ppl"], state["best_net"])
        for g in opt.param_groups:
            g["lr"] = lr
        # a resumed run that had already spent its time budget or annealed its learning rate
        # away is finished: resuming it scores the same parameters, it does not train on
        plateau = t.schedule == "plateau"
        annealed = plateau and lr < t.min_lr
        out_of_budget = t.max_seconds is not None and log.seconds > t.max_seconds
        if resume and 0 < step < total_steps and (annealed or out_of_budget):
            log.stopped_by_budget = not annealed
            step = total_steps
        reg = self.spec.regularisation
        l2 = reg.l2
        start = time.perf_counter() - log.seconds
        bar = tqdm(total=total_steps, initial=step, disable=not progress, desc="rglm_lm",
                   unit="batch")
        while step < total_steps:
            pos = (step % n_steps_epoch) * t.bptt
            if pos == 0:
                h = self._h0(t.batch_size)  # a new epoch starts the streams afresh
            seq = min(t.bptt, data.shape[0] - 1 - pos)
            x, y = data[pos:pos + seq], data[pos + 1:pos + 1 + seq]
            if not plateau:
                lr = t.lr * (1 - step / total_steps)
                for g in opt.param_groups:
                    g["lr"] = lr
            shape = (*x.shape, self.spec.recurrent.dim)
            hs = net.states(x, h.detach(), self._dropout_mask(shape, reg.input_dropout))
            h = hs[-1]
            mask = self._dropout_mask(shape, reg.dropout)
            feats = hs * mask if mask is not None else hs
            loss = F.cross_entropy(net.logits(feats).reshape(-1, self.vocab_size), y.reshape(-1))
            if not torch.isfinite(loss):
                raise DivergenceError(f"rglm_lm: training loss is {loss.item()} at step {step} "
                                      "(lower train.lr or recurrent.init_radius)")
            obj = loss + (l2 * sum((p ** 2).sum() for p in params) if l2 > 0 else 0.0)
            opt.zero_grad(set_to_none=True)
            obj.backward()
            torch.nn.utils.clip_grad_norm_(params, t.clip)
            opt.step()
            step += 1
            self._constrain(lr, check_radius=step % self.spec.recurrent.radius_every == 0
                            or step == total_steps)
            n_tok = y.numel()
            tokens_seen += n_tok
            run_nll += loss.item() * n_tok
            run_n += n_tok
            bar.update(1)
            out_of_time = (t.max_seconds is not None
                           and time.perf_counter() - start > t.max_seconds)
            if tokens_seen >= next_eval or step == total_steps or out_of_time:
                next_eval += t.eval_every
                log.tokens.append(tokens_seen)
                log.train_ppl.append(math.exp(run_nll / run_n))
                log.lr.append(lr)
                run_nll, run_n = 0.0, 0
                if valid is not None:
                    ppl = self.perplexity(valid)
                    log.valid_tokens.append(tokens_seen)
                    log.valid_ppl.append(ppl)
                    bar.set_postfix(valid_ppl=f"{ppl:.1f}")
                    if ppl < best[0]:
                        best = (ppl, {k: v.detach().clone() for k, v in net.state_dict().items()})
                        bad_checks = 0
                    elif plateau and len(log.valid_ppl) > 1:
                        bad_checks += 1
                        if bad_checks >= t.patience:
                            lr *= t.lr_decay
                            bad_checks = 0
                            for g in opt.param_groups:
                                g["lr"] = lr
                log.seconds = time.perf_counter() - start
                log.tokens_per_s = tokens_seen / log.seconds
                if on_eval is not None:
                    on_eval({"tokens": tokens_seen, "train_ppl": log.train_ppl[-1],
                             "valid_ppl": log.valid_ppl[-1] if log.valid_ppl else None})
                if checkpoint is not None:
                    save_checkpoint(checkpoint, {
                        "net": net.state_dict(), "optimizer": opt.state_dict(),
                        "generators": generator_states(torch_gen=self.gen_),
                        "dropout_generator": self.drop_gen_.get_state(), "step": step,
                        "tokens_seen": tokens_seen, "lr": lr, "bad_checks": bad_checks,
                        "h": h.detach().cpu(),
                        "next_eval": next_eval, "log": log, "best_ppl": best[0],
                        "best_net": best[1], "spec": self.spec.model_dump(mode="json")})
            if out_of_time and step < total_steps:
                log.stopped_by_budget = True
                break
            if plateau and lr < t.min_lr:  # annealed to nothing: further steps cannot help
                break
        bar.close()
        log.seconds = time.perf_counter() - start
        log.tokens_per_s = tokens_seen / max(log.seconds, 1e-9)
        if best[1] is not None:
            net.load_state_dict(best[1])
        self.log_ = log
        return self

    # ------------------------------------------------------------------ evaluation
    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            from neurorec.core.errors import NotFittedError

            raise NotFittedError("rglm_lm: call fit (or init_net) before scoring")

    @torch.no_grad()
    def token_nll(self, ids: np.ndarray, chunk: int = 256) -> np.ndarray:
        """NLL (nats) of every token of ``ids`` given the ones before it (and a leading <eos>).

        Args:
            ids: int token ids, shape (n,).

        Returns:
            float64 array, shape (n,).
        """
        self._check_fitted()
        net = self.net_
        x_all, y_all = self._stream(ids)
        h = self._h0(1)
        out = np.empty(len(ids))
        for s in range(0, len(ids), chunk):
            x, y = x_all[s:s + chunk, None], y_all[s:s + chunk]
            hs = net.states(x, h)
            h = hs[-1]
            nll = F.cross_entropy(net.logits(hs[:, 0]), y, reduction="none")
            out[s:s + len(y)] = nll.double().cpu().numpy()
        return out

    def perplexity(self, ids: np.ndarray) -> float:
        """``exp(mean NLL per token)``, every token (``<eos>`` included) predicted once."""
        return float(math.exp(self.token_nll(ids).mean()))

    def _stream(self, ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (the leading <eos>, then ``ids[:-1]``) and targets ``ids``, (n,) each, on the
        parameters' device."""
        dev = self.net_.R.device
        return (torch.as_tensor(np.concatenate([[self.eos_id], ids[:-1]]), device=dev),
                torch.as_tensor(np.asarray(ids), device=dev))

    def _segment_nll(self, x: torch.Tensor, y: torch.Tensor, h: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token NLL (T,) of one batch-1 segment and its states (T, 1, H)."""
        hs = self.net_.states(x[:, None], h.detach())
        return F.cross_entropy(self.net_.logits(hs[:, 0]), y, reduction="none"), hs

    def gradient_mean_square(self, ids: np.ndarray, n_segments: int | None = None,
                             bptt: int | None = None) -> dict[str, torch.Tensor]:
        """Mean over segments of the squared gradient of each segment's mean NLL.

        The segments are the first ``n_segments`` (default ``dynamic.ms_segments``) of
        ``dynamic.bptt`` tokens of ``ids`` (training tokens), read in order with the state carried
        over, as dynamic evaluation reads the test stream: Krause et al.'s MS for ``rms``.

        Returns:
            ``{name: tensor}`` per parameter of the network (``W0t``, ``R``, ``B``, ``b``).
        """
        self._check_fitted()
        d = self.spec.dynamic
        n_segments = d.ms_segments if n_segments is None else n_segments
        bptt = d.bptt if bptt is None else bptt
        params = dict(self.net_.named_parameters())
        x_all, y_all = self._stream(np.asarray(ids)[: n_segments * bptt])
        ms = {k: torch.zeros_like(p) for k, p in params.items()}
        h, count = self._h0(1), 0
        for s in range(0, len(y_all), bptt):
            nll, hs = self._segment_nll(x_all[s:s + bptt], y_all[s:s + bptt], h)
            grads = torch.autograd.grad(nll.mean(), list(params.values()))
            for k, g in zip(params, grads, strict=True):
                ms[k] += g ** 2
            h, count = hs[-1].detach(), count + 1
        return {k: v / count for k, v in ms.items()}

    def dynamic_token_nll(self, ids: np.ndarray, lr: float | None = None,
                          bptt: int | None = None, progress: bool = False,
                          method: str | None = None, decay: float | None = None,
                          ms: dict[str, torch.Tensor] | None = None) -> np.ndarray:
        """Per-token NLL under dynamic evaluation; the model's own parameters are not changed.

        Each segment of ``bptt`` tokens is scored with the current parameters, then one step on
        that segment's mean NLL updates a copy of the parameters θ (trained values θ₀): ``sgd``
        ``θ ← θ − lr·g``; ``rms`` ``θ ← θ − lr·g / (sqrt(MS) + eps)``; then, with ``decay`` λ > 0,
        ``θ ← θ + λ·w·(θ₀ − θ)``, w = 1 for ``sgd`` and ``min(sqrt(MS) / mean sqrt(MS), 1/λ)``
        per element of each parameter for ``rms``. Gradients are clipped to ``train.clip``.
        Arguments left ``None`` take the spec's ``dynamic`` values; ``ms`` (``rms`` only)
        defaults to :meth:`gradient_mean_square` of the training tokens given to ``fit``.

        Returns:
            float64 array, shape (n,).
        """
        self._check_fitted()
        d = self.spec.dynamic
        lr = d.lr if lr is None else lr
        bptt = d.bptt if bptt is None else bptt
        method = d.method if method is None else method
        decay = d.decay if decay is None else decay
        if method not in ("sgd", "rms"):
            raise ValueError(f"dynamic method {method!r} is not sgd or rms")
        net = self.net_
        params = dict(net.named_parameters())
        if method == "rms" and ms is None:
            if getattr(self, "train_ids_", None) is None:
                raise ValueError("rms dynamic evaluation needs ms (gradient_mean_square of "
                                 "training tokens) or a model fitted here")
            ms = self.gradient_mean_square(self.train_ids_, bptt=bptt)
        scale, pull = {}, {}
        if method == "rms":
            for k in params:
                rms = ms[k].sqrt()
                scale[k] = 1.0 / (rms + d.eps)
                if decay > 0:
                    pull[k] = torch.clamp(rms / rms.mean().clamp_min(1e-30), max=1.0 / decay)
        saved = {k: v.detach().clone() for k, v in net.state_dict().items()}
        trained = {k: saved[k] for k in params}  # θ₀ for the decay: the saved copy
        x_all, y_all = self._stream(ids)
        out = np.empty(len(ids))
        h = self._h0(1)
        try:
            for s in tqdm(range(0, len(ids), bptt), disable=not progress, desc="dynamic",
                          unit="seg"):
                nll, hs = self._segment_nll(x_all[s:s + bptt], y_all[s:s + bptt], h)
                out[s:s + len(nll)] = nll.detach().double().cpu().numpy()
                net.zero_grad(set_to_none=True)
                nll.mean().backward()
                torch.nn.utils.clip_grad_norm_(params.values(), self.spec.train.clip)
                with torch.no_grad():
                    for k, p in params.items():  # in place: the step is memory-bound
                        if method == "sgd":
                            p.add_(p.grad, alpha=-lr)
                        else:
                            p.addcmul_(p.grad, scale[k], value=-lr)
                        if decay > 0:
                            w = pull[k] if method == "rms" else 1.0
                            p.add_(decay * w * (trained[k] - p))
                    net.enforce_structure_(self.spec.recurrent.max_radius)
                # the carried state keeps the old parameters' contribution (as in Mikolov's
                # dynamic RNNLM): recomputing it would cost a pass over the whole past
                h = hs[-1].detach()
        finally:
            net.load_state_dict(saved)
        return out

    # ------------------------------------------------------------------ analysis
    def eigenvalues(self) -> np.ndarray:
        """Eigenvalues of R (complex, shape (H,)), sorted by decreasing modulus."""
        self._check_fitted()
        R = self.net_.R_eff().detach().double().cpu().numpy()
        ev = np.diag(R).astype(complex) if self.net_.diagonal else np.linalg.eigvals(R)
        return ev[np.argsort(-np.abs(ev))]

    def n_parameters(self) -> int:
        self._check_fitted()
        n = sum(p.numel() for p in (self.net_.W0t, self.net_.B, self.net_.b))
        n_r = self.net_.R.numel() if self.net_.diagonal else self.net_.mask.sum().item()
        return int(n + n_r)


def time_constants_tokens(eigenvalues: np.ndarray) -> np.ndarray:
    """Decay time constants in tokens, ``τ = -1 / ln|λ|`` (inf for |λ| ≥ 1).

    A mode with eigenvalue λ keeps a fraction ``|λ|^k = exp(-k/τ)`` of a word's input after
    ``k`` more tokens.
    """
    mod = np.abs(np.asarray(eigenvalues))
    with np.errstate(divide="ignore"):
        tau = -1.0 / np.log(np.clip(mod, 1e-300, None))
    return np.where(mod >= 1, np.inf, tau)
