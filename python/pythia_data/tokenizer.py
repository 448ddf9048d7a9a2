"""The GPT-NeoX-20B tokenizer (or any byte-level BPE ``tokenizer.json`` of its family), exact and fast.

Ids equal ``tokenizers.Tokenizer.from_file(path).encode(text).ids`` for every input. Every call
releases the GIL; batches are encoded in parallel on all cores and returned as numpy arrays,
never as per-token Python objects.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from pythia_data import _core
from pythia_data.data import DEFAULT_TOKENIZER

__all__ = ["Tokenizer"]


class Tokenizer:
    """A byte-level BPE tokenizer loaded from a Hugging Face ``tokenizer.json``."""

    def __init__(self, core: _core.Tokenizer, path: str | None = None):
        self._core = core
        self.path = path

    @classmethod
    def from_file(cls, path: str | os.PathLike | None = None) -> Tokenizer:
        """Load ``path``; the bundled GPT-NeoX-20B tokenizer when ``path`` is None."""
        path = os.fspath(DEFAULT_TOKENIZER if path is None else path)
        return cls(_core.Tokenizer.from_file(path), path)

    @classmethod
    def from_str(cls, json: str) -> Tokenizer:
        """Load from the text of a ``tokenizer.json``."""
        return cls(_core.Tokenizer.from_json(json.encode()))

    @property
    def vocab_size(self) -> int:
        """Number of ids (largest id + 1, added tokens included): 50,277 for GPT-NeoX-20B."""
        return self._core.vocab_size

    @property
    def eod_id(self) -> int:
        """The id of ``<|endoftext|>`` that GPT-NeoX appends to every document (0 for NeoX).

        As ``tokenizers``' ``token_to_id`` finds it: an added token's id, else the model vocab's.
        """
        eod = self._core.eod_id
        if eod is None:
            raise ValueError("this tokenizer has no <|endoftext|> token")
        return eod

    def encode(self, text: str) -> np.ndarray:
        """Ids of ``text`` as a numpy uint32 array."""
        return self._core.encode(text)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Ids of each text, encoded in parallel."""
        return self._core.encode_batch(_as_list(texts))

    def encode_batch_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ids uint32, offsets int64): text i is ``ids[offsets[i]:offsets[i + 1]]``."""
        return self._core.encode_batch_flat(_as_list(texts))

    def decode(self, ids: Sequence[int] | np.ndarray, skip_special_tokens: bool = True) -> str:
        """Text of ``ids``; ids outside the vocabulary are ignored, bad UTF-8 becomes U+FFFD."""
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise ValueError(f"decode takes a 1-D sequence of ids, got shape {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"decode takes integer ids, got dtype {arr.dtype}")
        return self._core.decode(arr.astype(np.int64, copy=False), skip_special_tokens)

    def __repr__(self) -> str:
        return f"Tokenizer({self.path!r}, vocab_size={self.vocab_size})"


def _as_list(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("encode_batch takes a sequence of texts; use encode for one text")
    return texts if isinstance(texts, list) else list(texts)
