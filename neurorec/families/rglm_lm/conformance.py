"""The rglm_lm family's row in the conformance suite: a small R-GLM language model on a few
thousand real PTB tokens, its vocabulary cut to the most frequent words."""

from __future__ import annotations

from functools import cache

import numpy as np

from neurorec.datasets import ptb
from neurorec.families.base import Example
from neurorec.families.rglm_lm.model import RGLMLanguageModel
from neurorec.families.rglm_lm.spec import RGLMLMSpec

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


def rglm_lm_example() -> Example:
    spec = RGLMLMSpec(recurrent={"dim": 16},
                      train={"epochs": 2, "batch_size": 8, "bptt": 20, "lr": 1e-2,
                             "eval_every": 2000},
                      dynamic={"enabled": False})

    def fit(model: RGLMLanguageModel) -> RGLMLanguageModel:
        split, _ = ptb_small()
        return model.fit(split["train"], split["valid"], progress=False)

    def score(model: RGLMLanguageModel) -> float:
        return model.score(ptb_small()[0]["test"])

    def simulate(model: RGLMLanguageModel, seed: int) -> np.ndarray:
        return model.sample(40, seed=seed)

    return Example(make=lambda: RGLMLanguageModel(spec, VOCAB, ptb_small()[1], seed=0),
                   fit=fit, score=score, simulate=simulate)
