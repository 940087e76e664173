"""PTB loader (Mikolov split): counts, vocabulary, missing-file message; a tiny model's
perplexity on a slice of PTB against a hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neurorec.core.errors import DataError
from neurorec.datasets import ptb
from neurorec.families.rglm_lm.model import RGLMLanguageModel
from neurorec.families.rglm_lm.spec import RGLMLMSpec


def write_corpus(folder, train="a b\nb c a\n", valid="a c\n", test="b\n"):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"ptb.{name}.txt").write_text(text)


def test_toy_corpus_tokens_and_vocab(tmp_path):
    write_corpus(tmp_path / "ptb")
    d = ptb.load_ptb(tmp_path / "ptb")
    # train: a b <eos> b c a <eos>: counts a2 b2 <eos>2 c1 -> ties alphabetical
    assert d.vocab == ("<eos>", "a", "b", "c")
    assert d.train.tolist() == [1, 2, 0, 2, 3, 1, 0]
    assert d.valid.tolist() == [1, 3, 0] and d.test.tolist() == [2, 0]
    assert d.eos_id == 0


def test_env_var_and_missing_files(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROREC_DATA", str(tmp_path))
    with pytest.raises(DataError, match=r"ptb\.train\.txt: file not found \(set NEUROREC_DATA"):
        ptb.load_ptb()
    write_corpus(tmp_path / "ptb")
    assert ptb.load_ptb().vocab_size == 4


def test_word_outside_vocabulary_is_named(tmp_path):
    write_corpus(tmp_path / "ptb", test="zebra\n")
    with pytest.raises(DataError, match="word 'zebra' is not in the training vocabulary"):
        ptb.load_ptb(tmp_path / "ptb")


@pytest.fixture(scope="module")
def real():
    try:
        return ptb.load_ptb()
    except DataError:
        pytest.skip("PTB not found (set NEUROREC_DATA)")


def test_real_split_sizes(real):
    assert (len(real.train), len(real.valid), len(real.test)) == (929_589, 73_760, 82_430)
    assert real.vocab_size == 10_000 and "<unk>" in real.vocab
    assert real.vocab[real.train[0]] == "aer" and real.vocab[0] == "the"


def test_tiny_model_perplexity_on_a_ptb_slice(real):
    """R = W0 = B = 0 and b = log unigram frequencies of the slice: every token's
    probability is its slice frequency, so perplexity = exp(-mean log freq)."""
    ids = real.valid[:2000]
    freq = np.bincount(ids, minlength=real.vocab_size) / len(ids)
    spec = RGLMLMSpec(recurrent={"dim": 3}, train={"dtype": "float64"})
    m = RGLMLanguageModel(spec).init_net(real.tokens("valid"))
    with torch.no_grad():
        for t in (m.net_.R, m.net_.W0t, m.net_.B):
            t.zero_()
        m.net_.b.copy_(torch.as_tensor(np.log(np.maximum(freq, 1e-300))))
    counts = np.bincount(ids)
    hand = math.exp(-sum(c * math.log(c / 2000) for c in counts if c) / 2000)
    assert m.perplexity(ids) == pytest.approx(hand, rel=1e-10)
