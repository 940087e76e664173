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

import contextlib
import math
import time
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from neurorec.core.errors import DataError, SpecError
from neurorec.data.tokens import Tokens
from neurorec.families.base import Estimator
from neurorec.families.rglm_lm.spec import RGLMLMSpec
from neurorec.fit.engine import Stepper, run_loop
from neurorec.fit.run import FitLog, Run


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


def _training_log(optimizer: str) -> FitLog:
    """The LM's :class:`~neurorec.fit.run.FitLog`: one entry per valid check in each curve
    (tokens seen, running train perplexity, learning rate; valid perplexity where there is
    a valid set)."""
    return FitLog(optimizer=optimizer, extras={"tokens": [], "train_ppl": [], "lr": [],
                                               "valid_tokens": [], "valid_ppl": []})


class _Finished(Exception):
    """Training ended before its last step (the learning rate annealed away, or a resumed
    run had ended so): the checkpoint stays as it is."""


class RGLMLanguageModel(Estimator):
    """R-GLM language model (``kind: rglm_lm``).

    ``__init__`` stores settings only; :meth:`fit` learns, from the training
    :class:`~neurorec.data.tokens.Tokens`, the data sizes ``vocab_size_`` (V) and ``eos_id_``
    (the id of ``<eos>``, the context before a stream's first word), then ``net_``, ``log_``
    and ``train_ids_`` (all saved and loaded with the model); ``score`` is the perplexity;
    :meth:`sample` draws token streams with a seed.

    Args:
        spec: the validated :class:`~neurorec.families.rglm_lm.spec.RGLMLMSpec`.
        seed: seeds the initialisation, the sparse mask, dropout and nothing else.
        device: ``"cpu"`` or ``"cuda"``.
    """

    fitted_attribute: ClassVar[str] = "net_"

    def __init__(self, spec: RGLMLMSpec, *, seed: int = 0, device: str = "cpu"):
        self.spec = spec
        self.seed = seed
        self.device = device

    # ------------------------------------------------------------------ construction
    def _dtype(self) -> torch.dtype:
        return torch.float64 if self.spec.train.dtype == "float64" else torch.float32

    def init_net(self, vocab: Tokens | int, eos_id: int | None = None) -> RGLMLanguageModel:
        """Learn the data sizes and draw the initial parameters (done by :meth:`fit`; public
        for tests and benchmarks).

        Args:
            vocab: the training :class:`~neurorec.data.tokens.Tokens` (its ``vocab_size`` and
                ``eos_id``), or the vocabulary size V itself with ``eos_id``.
        """
        if isinstance(vocab, Tokens):
            self.vocab_size_, self.eos_id_ = int(vocab.vocab_size), int(vocab.eos_id)
        else:
            if eos_id is None or not 0 <= eos_id < vocab:
                raise DataError(f"init_net: eos_id must be an id in [0, {vocab}), got {eos_id}")
            self.vocab_size_, self.eos_id_ = int(vocab), int(eos_id)
        r = self.spec.recurrent
        gen = torch.Generator().manual_seed(self.seed)
        self.net_ = RGLMNet(self.vocab_size_, r.dim, r.density, r.init_radius, r.init_scale,
                            generator=gen, dtype=self._dtype(),
                            structure=r.structure).to(_device(self.device))
        # dropout draws on the parameters' device (a CPU generator would copy every mask over)
        self._drop_gen = torch.Generator(device=self.net_.R.device).manual_seed(self.seed + 1)
        return self

    def _h0(self, n: int) -> torch.Tensor:
        return torch.zeros(n, self.spec.recurrent.dim, dtype=self._dtype(),
                           device=self.net_.R.device)

    def _dropout_mask(self, shape: tuple[int, ...], p: float) -> torch.Tensor | None:
        if p <= 0:
            return None
        keep = torch.rand(shape, generator=self._drop_gen, device=self.net_.R.device) >= p
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
    def check_steps(self, n_train: int) -> list[int]:
        """The step counts after which training checks the valid perplexity: whenever
        ``train.eval_every`` more tokens have been trained on, and after the last step.
        ``n_train``: training tokens (after ``train.max_train_tokens``)."""
        t = self.spec.train
        n_rows = (n_train + 1) // t.batch_size  # the stream starts with one <eos>
        n_steps_epoch = max(1, (n_rows - 1 + t.bptt - 1) // t.bptt)
        total_steps = max(1, round(t.epochs * n_steps_epoch))
        ends, tokens, next_eval = [], 0, t.eval_every
        for step in range(1, total_steps + 1):
            pos = ((step - 1) % n_steps_epoch) * t.bptt
            tokens += t.batch_size * min(t.bptt, n_rows - 1 - pos)
            if tokens >= next_eval or step == total_steps:
                ends.append(step)
                next_eval += t.eval_every
        return ends

    def fit(self, train: Tokens, *, progress: bool = True, run: Run | None = None,
            valid: Tokens | np.ndarray | None = None,
            on_eval: Callable[[dict], None] | None = None) -> RGLMLanguageModel:
        """Truncated BPTT on ``train``; valid perplexity every ``train.eval_every`` tokens.

        One :func:`neurorec.fit.engine.run_loop` iteration trains up to the next valid check
        (:meth:`check_steps`) and makes it; every step goes through a
        :class:`~neurorec.fit.engine.Stepper` (divergence guard, ``train.clip``).
        ``train.max_seconds`` is the loop's wall-clock budget: the step that exceeds it is
        followed by a valid check and training ends. With ``schedule: plateau`` it also ends
        once ``lr_decay`` has taken the learning rate below ``train.min_lr``.

        Args:
            train: the training :class:`~neurorec.data.tokens.Tokens`; the model learns its
                ``vocab_size`` and ``eos_id`` (``vocab_size_``, ``eos_id_``).
            valid: token ids (n_tokens,) or Tokens in the same vocabulary.
            run: with a checkpoint folder, the loop's ``checkpoint.pt`` there, written after
                every valid check (parameters, optimiser, position, dropout generator, log,
                best parameters); ``run.resume`` continues from it if it exists (bitwise on
                CPU); a run that had spent its time budget or annealed its learning rate
                away is finished: resuming it scores the same parameters, it does not train
                on.
            on_eval: called after every valid check with ``tokens``, ``train_ppl``,
                ``valid_ppl``.

        Returns:
            self, with ``net_`` (the parameters with the best valid perplexity seen, or the
            last ones without ``valid``), ``log_`` (a :class:`~neurorec.fit.run.FitLog`;
            one entry per valid check in its curves ``tokens``, ``train_ppl``, ``lr``,
            ``valid_tokens``, ``valid_ppl``; ``tokens_per_s``, ``stopped_by_budget``) and
            ``train_ids_``.
        """
        t = self.spec.train
        if not isinstance(train, Tokens):
            raise DataError(f"rglm_lm: fit: train must be Tokens (ids with their vocabulary "
                            f"size and <eos> id), got {type(train).__name__}")
        self.init_net(train)
        train = np.asarray(train.ids)
        net = self.net_
        if t.max_train_tokens is not None:
            train = train[: t.max_train_tokens]
        self.train_ids_ = train  # for rms dynamic evaluation's gradient statistics
        data = batchify(np.concatenate([[self.eos_id_], train]), t.batch_size).to(net.R.device)
        n_steps_epoch = max(1, (data.shape[0] - 1 + t.bptt - 1) // t.bptt)
        ends = self.check_steps(len(train))
        total_steps = ends[-1]
        with torch.no_grad():  # start the readout at the training unigram log-frequencies
            freq = np.bincount(train, minlength=self.vocab_size_) + 0.5
            net.b.copy_(torch.as_tensor(np.log(freq / freq.sum())))
        params = [net.W0t, net.R, net.B, net.b]
        opt = (torch.optim.Adam(params, lr=t.lr) if t.optimizer == "adam"
               else torch.optim.SGD(params, lr=t.lr, momentum=t.momentum))
        stepper = Stepper(params, opt, grad_clip=t.clip, name="rglm_lm")
        reg = self.spec.regularisation
        plateau = t.schedule == "plateau"
        st = {"step": 0, "tokens_seen": 0, "lr": t.lr, "bad_checks": 0, "h": self._h0(
            t.batch_size), "log": _training_log(t.optimizer), "best_ppl": math.inf,
            "best_net": None}
        clock: dict[str, float] = {}  # this call's wall clock, continuing the log's seconds

        def elapsed() -> float:
            return time.perf_counter() - clock["t0"]

        def finished() -> bool:
            return (plateau and st["lr"] < t.min_lr) or (
                t.max_seconds is not None and st["log"].fit_time_s > t.max_seconds)

        def set_lr(lr: float) -> None:
            st["lr"] = lr
            for g in opt.param_groups:
                g["lr"] = lr

        def train_step() -> tuple[float, int]:
            step = st["step"]
            pos = (step % n_steps_epoch) * t.bptt
            if pos == 0:
                st["h"] = self._h0(t.batch_size)  # a new epoch starts the streams afresh
            seq = min(t.bptt, data.shape[0] - 1 - pos)
            x, y = data[pos:pos + seq], data[pos + 1:pos + 1 + seq]
            if not plateau:
                set_lr(t.lr * (1 - step / total_steps))
            shape = (*x.shape, self.spec.recurrent.dim)
            hs = net.states(x, st["h"].detach(), self._dropout_mask(shape, reg.input_dropout))
            st["h"] = hs[-1]
            mask = self._dropout_mask(shape, reg.dropout)
            feats = hs * mask if mask is not None else hs
            loss = F.cross_entropy(net.logits(feats).reshape(-1, self.vocab_size_), y.reshape(-1))
            obj = loss + (reg.l2 * sum((p ** 2).sum() for p in params) if reg.l2 > 0 else 0.0)
            stepper.step(obj, where=f"step {step} (lower train.lr or recurrent.init_radius)")
            st["step"] = step + 1
            self._constrain(st["lr"], check_radius=st["step"] % self.spec.recurrent.radius_every
                            == 0 or st["step"] == total_steps)
            return loss.item(), y.numel()

        def train_to_check(i: int) -> dict[str, float]:
            if finished():  # a resumed run that had ended: it does not train on
                raise _Finished
            clock.setdefault("t0", time.perf_counter() - st["log"].fit_time_s)
            log, run_nll, run_n = st["log"], 0.0, 0
            while st["step"] < ends[i - 1]:
                loss, n_tok = train_step()
                st["tokens_seen"] += n_tok
                run_nll, run_n = run_nll + loss * n_tok, run_n + n_tok
                if t.max_seconds is not None and elapsed() > t.max_seconds:
                    break  # the loop's budget ends training after this check
            log.tokens.append(st["tokens_seen"])
            log.train_ppl.append(math.exp(run_nll / run_n))
            log.lr.append(st["lr"])
            row = {"train_ppl": log.train_ppl[-1], "lr": st["lr"]}
            if valid is not None:
                ppl = row["valid_ppl"] = self.perplexity(valid)
                log.valid_tokens.append(st["tokens_seen"])
                log.valid_ppl.append(ppl)
                if ppl < st["best_ppl"]:
                    st["best_ppl"], st["bad_checks"] = ppl, 0
                    st["best_net"] = {k: v.detach().clone() for k, v in net.state_dict().items()}
                elif plateau and len(log.valid_ppl) > 1:
                    st["bad_checks"] += 1
                    if st["bad_checks"] >= t.patience:
                        set_lr(st["lr"] * t.lr_decay)
                        st["bad_checks"] = 0
            log.fit_time_s = elapsed()
            log.n_iter = len(log.tokens)
            log.extras["tokens_per_s"] = st["tokens_seen"] / log.fit_time_s
            if on_eval is not None:
                on_eval({"tokens": st["tokens_seen"], "train_ppl": log.train_ppl[-1],
                         "valid_ppl": log.valid_ppl[-1] if log.valid_ppl else None})
            return row

        def get_state() -> dict:
            return {"net": net.state_dict(), "optimizer": opt.state_dict(),
                    **{k: v for k, v in st.items()}, "spec": self.spec.model_dump(mode="json")}

        def set_state(saved: dict) -> None:
            net.load_state_dict(saved["net"])
            opt.load_state_dict(saved["optimizer"])
            st.update({k: saved[k] for k in st})
            st["h"] = st["h"].to(net.R.device)
            set_lr(st["lr"])

        def stop_if_annealed(i: int, row: dict) -> None:
            if plateau and st["lr"] < t.min_lr:  # annealed to nothing: steps cannot help
                raise _Finished

        checkpoint = None if run is None else run.path("checkpoint.pt")
        resume = run is not None and run.resumes(checkpoint)
        with contextlib.suppress(_Finished):
            run_loop(len(ends), train_to_check, get_state=get_state, set_state=set_state,
                     torch_generator=self._drop_gen, checkpoint=checkpoint, resume=resume,
                     max_seconds=t.max_seconds, progress=progress, desc="rglm_lm",
                     unit="check", callback=stop_if_annealed)
        log = st["log"]
        if "t0" in clock:
            log.fit_time_s = elapsed()
        log.extras["tokens_per_s"] = st["tokens_seen"] / max(log.fit_time_s, 1e-9)
        # short of the last step, training ended by the budget or by annealing
        annealed = plateau and st["lr"] < t.min_lr
        budget = st["step"] < total_steps and not annealed
        log.extras["stopped_by_budget"] = budget
        log.reason = "budget" if budget else "learning rate annealed" if annealed else "epochs"
        log.converged = not budget
        if st["best_net"] is not None:
            net.load_state_dict(st["best_net"])
        self.log_ = log
        return self

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def token_nll(self, ids: Tokens | np.ndarray, chunk: int = 256) -> np.ndarray:
        """NLL (nats) of every token of ``ids`` given the ones before it (and a leading <eos>).

        Args:
            ids: int token ids, shape (n,), or Tokens in the model's vocabulary.

        Returns:
            float64 array, shape (n,).
        """
        self.check_fitted()
        net = self.net_
        x_all, y_all = self._stream(ids)
        h = self._h0(1)
        out = np.empty(len(y_all))
        for s in range(0, len(y_all), chunk):
            x, y = x_all[s:s + chunk, None], y_all[s:s + chunk]
            hs = net.states(x, h)
            h = hs[-1]
            nll = F.cross_entropy(net.logits(hs[:, 0]), y, reduction="none")
            out[s:s + len(y)] = nll.double().cpu().numpy()
        return out

    def perplexity(self, ids: Tokens | np.ndarray) -> float:
        """``exp(mean NLL per token)``, every token (``<eos>`` included) predicted once."""
        return float(math.exp(self.token_nll(ids).mean()))

    def score(self, data: Tokens | np.ndarray) -> float:
        """The family's score: :meth:`perplexity` of ``data`` (lower is better); DataError
        unless its ids and vocabulary are the model's (``vocab_size_``, ``eos_id_``)."""
        return self.perplexity(data)

    @torch.no_grad()
    def sample(self, n: int, *, seed: int, like: Tokens | np.ndarray | None = None
               ) -> np.ndarray:
        """(n,) int64 token ids drawn ancestrally from the model, each from
        ``softmax(B h_t + b)`` given the ones before it; the stream starts after one ``<eos>``
        and then the prompt ``like`` (Tokens in the model's vocabulary or token ids, not
        returned; None: no prompt). Draws on a CPU generator seeded with ``seed``, so a seed
        gives the same tokens on every device."""
        self.check_fitted()
        net, dev = self.net_, self.net_.R.device
        gen = torch.Generator().manual_seed(seed)
        prompt = np.zeros(0, np.int64) if like is None else self._ids(like)
        context = np.concatenate([[self.eos_id_], prompt]).astype(np.int64)
        h = net.states(torch.as_tensor(context, device=dev)[:, None], self._h0(1))[-1]
        out = np.empty(n, dtype=np.int64)
        for k in range(n):
            p = torch.softmax(net.logits(h[0]).double().cpu(), 0)
            out[k] = int(torch.multinomial(p, 1, generator=gen))
            h = net.states(torch.as_tensor([[out[k]]], device=dev), h)[-1]
        return out

    def _ids(self, data: Tokens | np.ndarray) -> np.ndarray:
        """(n,) the token ids of ``data``. DataError unless they are 1-D ids below
        ``vocab_size_`` (Tokens: unless their vocabulary is the model's)."""
        self.check_fitted()
        if isinstance(data, Tokens):
            if (data.vocab_size, data.eos_id) != (self.vocab_size_, self.eos_id_):
                raise DataError(f"{data.source}: vocab_size: the model was fitted to "
                                f"{self.vocab_size_} words (<eos> id {self.eos_id_}), the "
                                f"tokens have {data.vocab_size} (<eos> id {data.eos_id})")
            return np.asarray(data.ids)
        ids = np.asarray(data)
        if ids.ndim != 1 or (ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size_)):
            raise DataError(f"ids: expected (n_tokens,) ids in [0, {self.vocab_size_}), got shape "
                            f"{ids.shape}, range [{ids.min() if ids.size else 0}, "
                            f"{ids.max() if ids.size else 0}]")
        return ids

    def _stream(self, ids: Tokens | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (the leading <eos>, then ``ids[:-1]``) and targets ``ids``, (n,) each, on the
        parameters' device (:meth:`_ids` checks them)."""
        ids = self._ids(ids)
        dev = self.net_.R.device
        return (torch.as_tensor(np.concatenate([[self.eos_id_], ids[:-1]]), device=dev),
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
        self.check_fitted()
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
        self.check_fitted()
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
        self.check_fitted()
        R = self.net_.R_eff().detach().double().cpu().numpy()
        ev = np.diag(R).astype(complex) if self.net_.diagonal else np.linalg.eigvals(R)
        return ev[np.argsort(-np.abs(ev))]

    def n_parameters(self) -> int:
        self.check_fitted()
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
