"""Penn Treebank, Mikolov's word-level split (929k / 74k / 82k tokens, 10k-word vocabulary).

The files ``ptb.{train,valid,test}.txt`` stay outside the package (licence): they are read
from ``$NEUROREC_DATA/ptb/`` with ``NEUROREC_DATA`` defaulting to ``<repo>/../shared/data``.
Each line is a sentence; every line gets one ``<eos>`` after it, so the token stream is
``open(p).read().replace('\\n', ' <eos> ').split()`` exactly as Mikolov's RNNLM toolkit counts
it. The vocabulary is the set of training types (10,000 including ``<unk>``), numbered by
decreasing training frequency (ties alphabetical) so ids are stable and frequent words get
small ids; valid and test hold no word outside it.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurorec.core.errors import DataError
from neurorec.data.tokens import Tokens

NAME = "ptb"
ENV_VAR = "NEUROREC_DATA"
SPLITS = ("train", "valid", "test")
EOS = "<eos>"
CITATION = ("Marcus, Marcinkiewicz & Santorini (1993) Building a large annotated corpus of "
            "English: the Penn Treebank; split and vocabulary by T. Mikolov (2010)")
LICENCE = "Penn Treebank (LDC) text as preprocessed by T. Mikolov; research benchmarking only"


def data_root() -> Path:
    """``$NEUROREC_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def ptb_dir() -> Path:
    """Folder holding ``ptb.{train,valid,test}.txt``."""
    return data_root() / NAME


def read_tokens(path: str | Path) -> list[str]:
    """Tokens of one PTB file, one ``<eos>`` after every line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (set {ENV_VAR} to the folder holding ptb/, "
                        f"default <repo>/../shared/data)")
    return path.read_text().replace("\n", f" {EOS} ").split()


@dataclass(frozen=True)
class PTB:
    """Token ids of the three splits and the vocabulary.

    Attributes:
        train, valid, test: int64 token ids, shape (n_tokens,), in file order.
        vocab: words by id, length V (10,000 for the full corpus).
    """

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    vocab: tuple[str, ...]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def eos_id(self) -> int:
        return self.vocab.index(EOS)

    def split(self, name: str) -> np.ndarray:
        if name not in SPLITS:
            raise DataError(f"ptb: split: expected one of {SPLITS}, got {name!r}")
        return getattr(self, name)

    def tokens(self, name: str) -> Tokens:
        """Split ``name`` as :class:`~neurorec.data.tokens.Tokens` (ids with this vocabulary's
        size and ``<eos>`` id): what a language model's ``fit`` and ``score`` take."""
        return Tokens(self.split(name), self.vocab_size, self.eos_id, f"ptb:{name}")


def build_vocab(tokens: list[str]) -> tuple[str, ...]:
    """Training types by decreasing count, ties alphabetical."""
    counts = Counter(tokens)
    return tuple(sorted(counts, key=lambda w: (-counts[w], w)))


def encode(tokens: list[str], vocab: tuple[str, ...], where: str = "ptb") -> np.ndarray:
    """Token ids (int64); a word outside the vocabulary is a DataError naming it."""
    index = {w: i for i, w in enumerate(vocab)}
    try:
        return np.fromiter((index[w] for w in tokens), dtype=np.int64, count=len(tokens))
    except KeyError as err:
        raise DataError(f"{where}: word {err.args[0]!r} is not in the training vocabulary") \
            from None


def load_ptb(root: str | Path | None = None, max_tokens: int | None = None) -> PTB:
    """Load Mikolov's PTB split.

    Args:
        root: folder holding ``ptb.*.txt``; default ``$NEUROREC_DATA/ptb``.
        max_tokens: keep only the first ``max_tokens`` tokens of each split (for tests and
            quick runs); the vocabulary is still built from the whole training file.

    Returns:
        :class:`PTB` with int64 ids and the vocabulary.
    """
    folder = Path(root) if root is not None else ptb_dir()
    toks = {s: read_tokens(folder / f"ptb.{s}.txt") for s in SPLITS}
    vocab = build_vocab(toks["train"])
    ids = {s: encode(toks[s], vocab, where=str(folder / f"ptb.{s}.txt")) for s in SPLITS}
    if max_tokens is not None:
        ids = {s: v[:max_tokens] for s, v in ids.items()}
    return PTB(vocab=vocab, **ids)
