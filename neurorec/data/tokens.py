"""Token streams: the data type of language models (kind ``rglm_lm``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurorec.core.errors import DataError


@dataclass(frozen=True)
class Tokens:
    """A stream of token ids and the vocabulary it is written in.

    Attributes:
        ids: (n_tokens,) int64 token ids in ``[0, vocab_size)``, in reading order.
        vocab_size: V, the number of words of the vocabulary (ids that may appear, whether or
            not they do in this stream).
        eos_id: the id of the end-of-sentence token ``<eos>`` (the context before a stream's
            first word).
        source: where the tokens came from, for messages.
    """

    ids: np.ndarray
    vocab_size: int
    eos_id: int
    source: str = "tokens"

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise DataError(f"{self.source}: ids: expected (n_tokens,) integer ids, got shape "
                            f"{ids.shape} of {ids.dtype}")
        if not 0 <= self.eos_id < self.vocab_size:
            raise DataError(f"{self.source}: eos_id: {self.eos_id} is not an id of a "
                            f"vocabulary of {self.vocab_size} words")
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise DataError(f"{self.source}: ids: expected ids in [0, {self.vocab_size}), got "
                            f"range [{ids.min()}, {ids.max()}]")

    def __len__(self) -> int:
        return len(self.ids)

    def head(self, n: int) -> Tokens:
        """The first ``n`` tokens, same vocabulary."""
        return Tokens(self.ids[:n], self.vocab_size, self.eos_id, self.source)


__all__ = ["Tokens"]
