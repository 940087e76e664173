"""R-GLM language model: closed-form recurrence, exact perplexity, dynamic evaluation without
peeking, regularisers, spec files."""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neurorec.cli import main
from neurorec.core.errors import DataError, NotFittedError
from neurorec.data.tokens import Tokens
from neurorec.families.rglm_lm.model import RGLMLanguageModel, batchify, time_constants_tokens
from neurorec.families.rglm_lm.spec import RGLMLMSpec
from neurorec.fit.run import Run
from neurorec.spec import load_model_spec

REPO = Path(__file__).resolve().parents[1]
V, H = 11, 4


def tiny(seed: int = 0, **kw) -> RGLMLanguageModel:
    spec = RGLMLMSpec(recurrent={"dim": H, "init_radius": 0.8, "init_scale": 0.5,
                                 **kw.pop("recurrent", {})},
                      train={"dtype": "float64", "batch_size": 2, "bptt": 5, "lr": 1e-2,
                             "eval_every": 50, **kw.pop("train", {})}, **kw)
    return RGLMLanguageModel(spec, seed=seed).init_net(V, eos_id=0)


def tokens(ids) -> Tokens:
    """``ids`` as Tokens in the tests' vocabulary (V words, <eos> id 0)."""
    return Tokens(np.asarray(ids), V, 0, "<test>")


def stream(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, size=n)


def test_recurrence_equals_closed_form():
    m = tiny()
    net = m.net_
    x = torch.as_tensor(stream(9))[:, None]
    h0 = torch.randn(1, H, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    hs = net.states(x, h0)[:, 0]
    R, W = net.R.detach(), net.W0t.detach()
    for t in range(9):
        want = torch.linalg.matrix_power(R, t + 1) @ h0[0]
        for k in range(t + 1):
            want = want + torch.linalg.matrix_power(R, k) @ W[x[t - k, 0]]
        torch.testing.assert_close(hs[t], want, rtol=1e-12, atol=1e-12)


def _reference_segment(params, x, y, h):
    """Independent loop: per-token NLL of one segment and the last state (batch 1)."""
    W, R, B, b = params
    nll = []
    for xt, yt in zip(x, y, strict=True):
        h = R @ h + W[int(xt)]
        nll.append(F.cross_entropy((B @ h + b)[None], torch.tensor([int(yt)])))
    return torch.stack(nll), h


def test_perplexity_is_exp_mean_nll_of_an_independent_loop():
    m = tiny()
    ids = stream(40)
    net = m.net_
    params = [p.detach() for p in (net.W0t, net.R, net.B, net.b)]
    x = np.concatenate([[0], ids[:-1]])  # the leading <eos>
    nll = _reference_segment(params, x, ids, torch.zeros(H, dtype=torch.float64))[0].numpy()
    assert m.perplexity(ids) == pytest.approx(math.exp(np.mean(nll)), rel=1e-12)
    np.testing.assert_allclose(m.token_nll(ids, chunk=7), nll, rtol=1e-12)


def test_perplexity_of_a_hand_set_unigram_model():
    m = tiny()
    p = np.arange(1, V + 1) / np.arange(1, V + 1).sum()
    with torch.no_grad():
        for t in (m.net_.R, m.net_.W0t, m.net_.B):
            t.zero_()
        m.net_.b.copy_(torch.as_tensor(np.log(p)))
    ids = np.array([0, 3, 3, 10, 5])
    hand = math.exp(-(2 * math.log(4 / 66) + math.log(1 / 66) + math.log(11 / 66)
                      + math.log(6 / 66)) / 5)
    assert m.perplexity(ids) == pytest.approx(hand, rel=1e-12)


@pytest.mark.parametrize("method", ["sgd", "rms"])
def test_dynamic_evaluation_does_not_peek(method):
    m = tiny(dynamic={"lr": 0.5 if method == "sgd" else 0.05, "bptt": 4, "method": method,
                      "decay": 0.1})
    ids = stream(30)
    ms = m.gradient_mean_square(stream(200, seed=5), n_segments=20) if method == "rms" else None
    before = {k: v.clone() for k, v in m.net_.state_dict().items()}
    base = m.dynamic_token_nll(ids, ms=ms)
    for t in (5, 13, 22):  # mid-segment and segment starts
        changed = ids.copy()
        changed[t:] = (changed[t:] + 3) % V
        other = m.dynamic_token_nll(changed, ms=ms)
        np.testing.assert_array_equal(other[:t], base[:t])
        assert other[t] != base[t]
    # it adapts (differs from static scoring after the first segment) and restores parameters
    static = m.token_nll(ids)
    np.testing.assert_allclose(base[:4], static[:4], rtol=1e-12)
    assert not np.allclose(base[4:], static[4:])
    for k, v in m.net_.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_gradient_mean_square_matches_an_independent_loop():
    m = tiny()
    train = stream(61, seed=7)
    ms = m.gradient_mean_square(train, n_segments=6, bptt=5)
    params = [getattr(m.net_, k).detach().clone().requires_grad_() for k in ("W0t", "R", "B", "b")]
    x_all = np.concatenate([[0], train[:-1]])
    h = torch.zeros(H, dtype=torch.float64)
    want = [torch.zeros_like(p) for p in params]
    for s in range(0, 30, 5):
        nll, h = _reference_segment(params, x_all[s:s + 5], train[s:s + 5], h.detach())
        for w, g in zip(want, torch.autograd.grad(nll.mean(), params), strict=True):
            w += g ** 2 / 6
    for k, w in zip(("W0t", "R", "B", "b"), want, strict=True):
        torch.testing.assert_close(ms[k], w, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("method", ["sgd", "rms"])
def test_dynamic_update_rule_matches_a_hand_written_step(method):
    """Segment 2 is scored with the parameters after one hand-computed update on segment 1."""
    lr, decay, eps = (0.3, 0.2, 1e-4) if method == "sgd" else (0.02, 0.2, 1e-4)
    m = tiny(dynamic={"bptt": 6, "method": method, "lr": lr, "decay": decay, "eps": eps},
             train={"clip": 1e9})
    ids = stream(12, seed=3)
    ms = m.gradient_mean_square(stream(300, seed=9), n_segments=30, bptt=6)
    got = m.dynamic_token_nll(ids, ms=ms)
    names = ("W0t", "R", "B", "b")
    theta0 = [getattr(m.net_, k).detach().clone() for k in names]
    params = [t.clone().requires_grad_() for t in theta0]
    x_all = np.concatenate([[0], ids[:-1]])
    nll1, h = _reference_segment(params, x_all[:6], ids[:6], torch.zeros(H, dtype=torch.float64))
    grads = torch.autograd.grad(nll1.mean(), params)
    new = []
    for k, p0, g in zip(names, theta0, grads, strict=True):
        if method == "sgd":
            p = p0 - lr * g
            p = p + decay * (p0 - p)
        else:
            rms = ms[k].sqrt()
            p = p0 - lr * g / (rms + eps)
            p = p + decay * torch.clamp(rms / rms.mean(), max=1 / decay) * (p0 - p)
        new.append(p)
    new[1] = torch.clamp(new[1], -0.999, 0.999) if m.net_.diagonal else new[1]
    nll2, _ = _reference_segment(new, x_all[6:], ids[6:], h.detach())
    np.testing.assert_allclose(got[:6], nll1.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(got[6:], nll2.detach().numpy(), rtol=1e-10)
    assert not np.allclose(got[6:], m.token_nll(ids)[6:])  # it did adapt


def test_dynamic_evaluation_with_full_decay_is_static_scoring():
    m = tiny(dynamic={"lr": 0.5, "bptt": 4, "decay": 1.0})
    ids = stream(30)
    np.testing.assert_allclose(m.dynamic_token_nll(ids), m.token_nll(ids), rtol=1e-12)


def test_rms_dynamic_evaluation_needs_gradient_statistics():
    m = tiny(dynamic={"method": "rms"})
    with pytest.raises(ValueError, match="needs ms"):
        m.dynamic_token_nll(stream(20))


def test_training_lowers_perplexity_and_regularisers_hold():
    rng = np.random.default_rng(0)
    # a first-order Markov chain: the next word is mostly (word + 1) mod V
    ids = [0]
    for _ in range(2000):
        ids.append((ids[-1] + 1) % V if rng.random() < 0.8 else int(rng.integers(V)))
    ids = np.array(ids)
    m = tiny(train={"epochs": 3, "lr": 0.05, "batch_size": 4, "bptt": 10},
             regularisation={"column_norm": 0.7, "l1": 1e-3, "dropout": 0.1},
             recurrent={"density": 0.5, "max_radius": 0.95})
    start = m.perplexity(ids[:500])
    m.fit(tokens(ids[500:]), valid=ids[:500], progress=False)
    assert m.perplexity(ids[:500]) < 0.5 * start
    assert m.net_.W0t.norm(dim=1).max() <= 0.7 + 1e-9
    assert m.net_.B.norm(dim=1).max() <= 0.7 + 1e-9
    assert torch.all(m.net_.R[m.net_.mask == 0] == 0)
    assert np.abs(m.eigenvalues()).max() <= 0.95 + 1e-9
    assert len(m.log_.valid_ppl) >= 2 and m.log_.tokens_per_s > 0


def test_same_seed_same_fit_and_resume(tmp_path):
    ids = stream(600)
    a = tiny(train={"epochs": 1}).fit(tokens(ids), valid=ids[:50], progress=False,
                                      run=Run(checkpoint_dir=tmp_path / "a"))
    b = tiny(train={"epochs": 1}).fit(tokens(ids), valid=ids[:50], progress=False)
    torch.testing.assert_close(a.net_.R, b.net_.R, rtol=0, atol=0)
    # resuming a finished run from its checkpoint gives the same parameters
    c = tiny(train={"epochs": 1}).fit(tokens(ids), valid=ids[:50], progress=False,
                                      run=Run(checkpoint_dir=tmp_path / "a", resume=True))
    torch.testing.assert_close(a.net_.B, c.net_.B, rtol=0, atol=0)


def test_batchify_and_time_constants():
    x = batchify(np.arange(10), 3)
    assert x.tolist() == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    tau = time_constants_tokens(np.array([math.exp(-1 / 50), -0.5, 1.0, 0.0]))
    np.testing.assert_allclose(tau[:2], [50, -1 / math.log(0.5)])
    assert tau[2] == np.inf and 0 <= tau[3] < 0.01


@pytest.mark.parametrize("path", sorted((REPO / "models" / "lm").glob("*.yaml")))
def test_lm_specs_validate(path, capsys):
    assert load_model_spec(path).kind == "rglm_lm"
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: ok (rglm_lm)\n"


def test_bad_lm_spec_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: rglm_lm\nregularisation: {dropout: 1.5}\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "regularisation.dropout" in err[0]


@pytest.mark.parametrize("text, field", [
    ("recurrent: {structure: diagonal, density: 0.5}", "recurrent.density"),
    ("train: {optimizer: adam, momentum: 0.9}", "train.momentum"),
    ("regularisation: {input_dropout: 1.0}", "regularisation.input_dropout"),
])
def test_incompatible_lm_options_are_one_line(tmp_path, capsys, text, field):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"kind: rglm_lm\n{text}\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and field in err[0]


def test_diagonal_recurrence_is_a_sum_of_impulse_responses():
    """Diagonal R (the impulse-response LM): h_t = λ^(t+1) ⊙ h_0 + Σ_k λ^k ⊙ W0ᵀ l_(t-k)."""
    m = tiny(recurrent={"structure": "diagonal"})
    net = m.net_
    lam, W = net.R.detach(), net.W0t.detach()
    assert lam.shape == (H,) and torch.all((lam >= 0) & (lam < 0.8))
    x = torch.as_tensor(stream(9))[:, None]
    h0 = torch.randn(1, H, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    hs = net.states(x, h0)[:, 0]
    for t in range(9):
        want = lam ** (t + 1) * h0[0] + sum(lam ** k * W[x[t - k, 0]] for k in range(t + 1))
        torch.testing.assert_close(hs[t], want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.sort(m.eigenvalues().real), np.sort(lam.numpy()))
    assert m.n_parameters() == 2 * V * H + V + H


def test_diagonal_training_with_input_dropout_learns_and_stays_stable():
    rng = np.random.default_rng(0)
    ids = [0]
    for _ in range(2000):
        ids.append((ids[-1] + 1) % V if rng.random() < 0.8 else int(rng.integers(V)))
    ids = np.array(ids)
    m = tiny(train={"epochs": 3, "lr": 0.05, "batch_size": 4, "bptt": 10},
             regularisation={"input_dropout": 0.1, "dropout": 0.1},
             recurrent={"structure": "diagonal", "max_radius": 0.9})
    start = m.perplexity(ids[:500])
    m.fit(tokens(ids[500:]), valid=ids[:500], progress=False)
    assert m.perplexity(ids[:500]) < 0.5 * start
    assert np.abs(m.eigenvalues()).max() <= 0.9 + 1e-12


def test_time_budget_stops_training_and_keeps_the_best_parameters():
    ids = stream(600)
    m = tiny(train={"epochs": 50, "max_seconds": 1e-6}).fit(tokens(ids), valid=ids[:50],
                                                            progress=False)
    assert m.log_.stopped_by_budget
    assert m.log_.tokens == [10]  # one step of batch 2 × bptt 5, then the budget check
    assert len(m.log_.valid_ppl) == 1


@pytest.mark.parametrize("train", [{"max_seconds": 1e-6},
                                   {"eval_every": 20, "lr_decay": 0.1, "min_lr": 1e-3}])
def test_resuming_a_finished_run_trains_no_further(tmp_path, train):
    """A checkpoint of a run that spent its time budget (or annealed lr below min_lr) scores
    the same parameters when resumed; it does not take more steps."""
    ids = stream(2000)
    a = tiny(train={"epochs": 50, **train}).fit(tokens(ids), valid=ids[:50], progress=False,
                                                run=Run(checkpoint_dir=tmp_path / "a"))
    b = tiny(train={"epochs": 50, **train}).fit(
        tokens(ids), valid=ids[:50], progress=False,
        run=Run(checkpoint_dir=tmp_path / "a", resume=True))
    assert b.log_.tokens == a.log_.tokens and b.log_.valid_ppl == a.log_.valid_ppl
    assert b.log_.stopped_by_budget == a.log_.stopped_by_budget == ("max_seconds" in train)
    for k, v in a.net_.state_dict().items():
        torch.testing.assert_close(b.net_.state_dict()[k], v, rtol=0, atol=0)


def test_linear_schedule_takes_lr_to_zero_over_the_epochs():
    ids = stream(600)
    m = tiny(train={"epochs": 2, "eval_every": 1, "schedule": "linear", "min_lr": 1e-3})
    m.fit(tokens(ids), valid=ids[:50], progress=False)
    n = 2 * math.ceil((600 // 2 - 1) / 5)  # steps: 2 epochs of (299 // bptt 5, rounded up)
    # a check after every step; log.lr[k] is the lr used by step k
    assert len(m.log_.lr) == n  # valid never improving, min_lr: neither stops a linear run
    np.testing.assert_allclose(m.log_.lr, 1e-2 * (1 - np.arange(n) / n), rtol=1e-12)


def test_training_stops_once_the_learning_rate_is_annealed_away():
    ids = stream(2000)
    # on random tokens the valid perplexity stops improving, so lr halves at every check
    m = tiny(train={"epochs": 200, "eval_every": 20, "lr_decay": 0.1, "min_lr": 1e-5})
    m.fit(tokens(ids), valid=ids[:50], progress=False)
    # the last check's decay took lr (recorded before the check) below min_lr, then it stopped
    assert m.log_.lr[-1] * 0.1 < 1e-5 <= m.log_.lr[-1]
    assert m.log_.tokens[-1] < 200 * 1990 and not m.log_.stopped_by_budget


@pytest.mark.parametrize("patience", [1, 3])
def test_learning_rate_decays_after_patience_checks_without_a_new_best(patience):
    ids = stream(2000)
    m = tiny(train={"epochs": 1, "eval_every": 20, "lr_decay": 0.5, "patience": patience})
    m.fit(tokens(ids), valid=ids[:50], progress=False)
    # replay the rule on the logged valid perplexities: log.lr[k] is the lr before check k
    lr, best, bad, expected = 1e-2, math.inf, 0, []
    for k, ppl in enumerate(m.log_.valid_ppl):
        expected.append(lr)
        if ppl < best:
            best, bad = ppl, 0
        elif k > 0:
            bad += 1
            if bad >= patience:
                lr, bad = lr * 0.5, 0
    assert m.log_.lr == pytest.approx(expected, rel=0, abs=0)
    n_decays = sum(b < a for a, b in itertools.pairwise(expected))
    assert n_decays >= 2  # random tokens: valid stops improving, so the rule is exercised


def test_ptb_table_merge_takes_the_dropout_row_best_on_valid(tmp_path):
    import importlib.util
    path = REPO / "analyses/ptb_perplexity/run.py"
    spec = importlib.util.spec_from_file_location("ptb_run", path)
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    kn = {"row": "5-gram Kneser-Ney", "model": "kn5", "valid": 147.7, "test": 141.1}
    a = {"rows": [kn, {"row": "R-GLM (irlm_dropout_colnorm)", "model": "irlm_dropout_colnorm",
                       "valid": 120.0, "test": 110.0}]}
    b = {"rows": [kn, {"row": "R-GLM (irlm_dropout_colnorm)", "model": "irlm_dropout_colnorm",
                       "valid": 115.0, "test": 112.0}]}
    paths = []
    for i, r in enumerate((a, b)):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(__import__("json").dumps(r))
    run.merge_tables(paths, tmp_path / "t")
    table = (tmp_path / "t" / "table.md").read_text()
    assert "| R-GLM, dropout + column normalisation | 102.0 | 112.0 (115.0) |" in table
    assert "| 5-gram Kneser-Ney | 141.2 | 141.1 (147.7) |" in table
    assert len(__import__("json").loads((tmp_path / "t" / "rows.json").read_text())) == 3


class _Killed(Exception):
    pass


def test_a_fit_killed_between_checkpoints_resumes_bitwise(tmp_path):
    """A fit killed mid-way (``on_eval`` raising at the 4th valid check, before that check's
    checkpoint) and fitted again from the checkpoint: parameters, the dropout draws and the
    curves equal the uninterrupted fit's exactly."""
    ids = stream(1200)
    kw = {"train": {"epochs": 2, "eval_every": 60},
          "regularisation": {"dropout": 0.2, "input_dropout": 0.1}}
    full = tiny(**copy.deepcopy(kw)).fit(tokens(ids), valid=ids[:50], progress=False)
    checks = []

    def killed_at_four(row):
        checks.append(row)
        if len(checks) == 4:
            raise _Killed

    ck = tmp_path / "ck"
    with pytest.raises(_Killed):
        tiny(**copy.deepcopy(kw)).fit(tokens(ids), valid=ids[:50], progress=False,
                                      run=Run(checkpoint_dir=ck), on_eval=killed_at_four)
    resumed = tiny(**copy.deepcopy(kw)).fit(tokens(ids), valid=ids[:50], progress=False,
                                            run=Run(checkpoint_dir=ck, resume=True))
    for k, v in full.net_.state_dict().items():
        assert torch.equal(resumed.net_.state_dict()[k], v), k
    assert resumed.log_.valid_ppl == full.log_.valid_ppl
    assert resumed.log_.train_ppl == full.log_.train_ppl and len(full.log_.tokens) > 5


def test_sample_is_seeded_and_follows_the_model():
    m = tiny()
    a, b, c = m.sample(30, seed=1), m.sample(30, seed=1), m.sample(30, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and a.dtype == np.int64 and a.shape == (30,)
    assert ((0 <= a) & (a < V)).all()
    # the draws follow the model's own next-word probabilities: a unigram model's
    # frequencies over many draws match its softmax(b)
    with torch.no_grad():
        for t in (m.net_.R, m.net_.W0t, m.net_.B):
            t.zero_()
        p = np.arange(1, V + 1) / np.arange(1, V + 1).sum()
        m.net_.b.copy_(torch.as_tensor(np.log(p)))
    draws = m.sample(20_000, seed=0)
    np.testing.assert_allclose(np.bincount(draws, minlength=V) / 20_000, p, atol=0.01)
    with pytest.raises(NotFittedError, match="call fit"):
        RGLMLanguageModel(m.spec).sample(3, seed=0)


def test_data_sizes_are_learned_in_fit_and_saved(tmp_path):
    """The constructor stores settings only; vocab_size_ and eos_id_ come from the training
    Tokens, size the parameters, and are saved and loaded with the model."""
    spec = tiny().spec
    m = RGLMLanguageModel(spec, seed=3)
    assert vars(m) == {"spec": spec, "seed": 3, "device": "cpu"}
    ids = stream(300)
    m.fit(Tokens(ids, V + 4, 2, "<test>"), progress=False)
    assert (m.vocab_size_, m.eos_id_) == (V + 4, 2)
    assert m.net_.B.shape == (V + 4, H) and m.net_.b.shape == (V + 4,)
    loaded = RGLMLanguageModel.load(m.save(tmp_path / "lm"))
    assert (loaded.vocab_size_, loaded.eos_id_) == (V + 4, 2)
    assert loaded.perplexity(ids[:50]) == m.perplexity(ids[:50])
    with pytest.raises(DataError, match="fitted to 15 words"):
        m.score(Tokens(ids[:50], V, 0, "<other vocabulary>"))
    with pytest.raises(DataError, match="must be Tokens"):
        RGLMLanguageModel(spec).fit(ids, progress=False)
    with pytest.raises(TypeError):  # data sizes are not constructor arguments any more
        RGLMLanguageModel(spec, V, 0)
