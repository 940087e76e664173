"""The rglm_lm family's row in the conformance suite: a small R-GLM language model on a few
thousand real PTB tokens, its vocabulary cut to the most frequent words."""

from __future__ import annotations

from functools import cache

import numpy as np

from neurorec.data.tokens import Tokens
from neurorec.datasets import ptb
from neurorec.families.base import Example
from neurorec.families.rglm_lm.model import RGLMLanguageModel

VOCAB = 200  # the most frequent PTB words; the rest read as <unk>


@cache
def ptb_small() -> tuple[dict[str, np.ndarray], int]:
    """({train: 6000, valid: 1000, test: 2000 tokens}, eos id) of PTB with ids >= VOCAB
    mapped to ``<unk>``. PTB missing is a DataError naming the path (never a skip)."""
    data = ptb.load_ptb(max_tokens=6000)
    unk = data.vocab.index("<unk>")
    assert unk < VOCAB and data.eos_id < VOCAB  # ids are by decreasing training count
    cut = {s: np.where(data.split(s) < VOCAB, data.split(s), unk)
           for s in ("train", "valid", "test")}
    return {"train": cut["train"], "valid": cut["valid"][:1000], "test": cut["test"][:2000]}, \
        data.eos_id


SPEC = {"kind": "rglm_lm", "recurrent": {"dim": 16},
        "train": {"epochs": 1, "batch_size": 8, "bptt": 20, "lr": 1e-2, "eval_every": 2000},
        "dynamic": {"enabled": False}}


def rglm_lm_example() -> Example:
    def data() -> tuple[Tokens, Tokens]:
        splits, eos = ptb_small()
        return (Tokens(splits["train"], VOCAB, eos, "ptb_small:train"),
                Tokens(splits["test"], VOCAB, eos, "ptb_small:test"))

    def sample(model: RGLMLanguageModel, seed: int) -> np.ndarray:
        return model.sample(40, seed=seed)

    def wrong(test: Tokens) -> Tokens:  # the same ids in a vocabulary one word larger
        return Tokens(test.ids, VOCAB + 1, test.eos_id, test.source)

    # chance: the uniform model's perplexity is the vocabulary size
    return Example(spec=SPEC, data=data, chance=float(VOCAB), wrong=wrong, sample=sample,
                   sample_shape=(40,))
