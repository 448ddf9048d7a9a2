"""The GPT-NeoX-20B tokenizer (or any byte-level BPE ``tokenizer.json`` of its family), exact and fast.

Ids equal ``tokenizers.Tokenizer.from_file(path).encode(text).ids`` for every input. Every call
releases the GIL; batches are encoded in parallel on all cores and returned as numpy arrays,
never as per-token Python objects.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Mapping, Sequence

import numpy as np

from pythia_data import _core
from pythia_data.data import DEFAULT_TOKENIZER
from pythia_data.errors import PythiaDataError

__all__ = ["Tokenizer"]


class Tokenizer:
    """A byte-level BPE tokenizer loaded from a Hugging Face ``tokenizer.json``."""

    def __init__(self, path: str | bytes | os.PathLike | None = None):
        """Load the ``tokenizer.json`` at ``path``; the bundled GPT-NeoX-20B tokenizer when
        ``path`` is None (the same as ``from_file``)."""
        if path is not None and not isinstance(path, (str, bytes, os.PathLike)):
            raise TypeError(
                "Tokenizer takes the path of a tokenizer.json (or None for the bundled "
                f"GPT-NeoX-20B), not {type(path).__name__}; from_str takes its JSON text"
            )
        path = os.fsdecode(DEFAULT_TOKENIZER if path is None else path)
        if not path:  # it failed as "FileNotFoundError: : No such file or directory"
            raise ValueError("Tokenizer takes the path of a tokenizer.json, not an empty path")
        # JSON text passed by mistake; a file whose name starts with "{" is still a path.
        if path.lstrip().startswith("{") and not os.path.exists(path):
            raise ValueError(
                "Tokenizer takes a path; for the JSON text itself use Tokenizer.from_str"
            )
        self._core = _core.Tokenizer.from_file(path)
        # Kept absolute so a pickled tokenizer reloads the same file in a worker whose working
        # directory differs.
        self.path: str | None = os.path.abspath(path)
        self._json: str | None = None  # the text given to from_str, for pickling

    @classmethod
    def from_file(cls, path: str | bytes | os.PathLike | None = None) -> Tokenizer:
        """Load ``path``; the bundled GPT-NeoX-20B tokenizer when ``path`` is None."""
        return cls(path)

    @classmethod
    def from_str(cls, json: str) -> Tokenizer:
        """Load from the text of a ``tokenizer.json``."""
        if not isinstance(json, str):
            raise TypeError(f"from_str takes the JSON text as a str, got {type(json).__name__}")
        if not json.lstrip().startswith("{") and os.path.isfile(json):
            raise ValueError("from_str takes the JSON text; for a file use Tokenizer.from_file")
        tok = cls.__new__(cls)
        tok._core = _core.Tokenizer.from_json(json.encode())
        tok.path = None
        tok._json = json
        return tok

    def __reduce__(self):
        # Pickled by path (reloaded from the file, as datasets are reopened by name) or by its JSON
        # text: DataLoader and multiprocessing workers started with spawn receive it this way.
        if self.path is not None:
            return (_reload, (type(self), self.path, self.sha256))
        return (type(self).from_str, (self._json,))

    @property
    def vocab_size(self) -> int:
        """Number of ids (largest id + 1, added tokens included): 50,277 for GPT-NeoX-20B."""
        return self._core.vocab_size

    @property
    def sha256(self) -> str:
        """sha256 (hex) of the ``tokenizer.json`` bytes it was loaded from: which tokenizer."""
        return self._core.sha256

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
        try:
            return self._core.encode(text)
        except TypeError:
            # The core's words were "argument 'text': 'bytes' object cannot be cast as 'str'".
            if isinstance(text, (bytes, bytearray, memoryview)):
                raise TypeError(
                    f"encode takes a str, not {type(text).__name__}; decode bytes first "
                    "(for example text=b.decode())"
                ) from None
            if not isinstance(text, str):
                raise TypeError(
                    f"encode takes one text as a str, not {type(text).__name__}"
                    + ("; use encode_batch for several" if _iterable(text) else "")
                ) from None
            raise

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Ids of each text, encoded in parallel."""
        texts = _as_list(texts, "encode_batch")
        try:
            return self._core.encode_batch(texts)
        except (TypeError, UnicodeEncodeError) as e:
            raise _bad_item(texts, "encode_batch") or e from None

    def encode_batch_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ids uint32, offsets int64): text i is ``ids[offsets[i]:offsets[i + 1]]``. Encoded
        in parallel 8 MB of text at a time, so memory peaks near the result's size, plus (as
        for ``tokenizers``) the UTF-8 copy Python keeps with each str that is not ASCII once
        it has been read as UTF-8, until that str is freed."""
        texts = _as_list(texts, "encode_batch_flat")
        try:
            return self._core.encode_batch_flat(texts)
        except (TypeError, UnicodeEncodeError) as e:
            raise _bad_item(texts, "encode_batch_flat") or e from None

    def decode(self, ids: Sequence[int] | np.ndarray, skip_special_tokens: bool = True) -> str:
        """Text of ``ids``; ids outside the vocabulary are ignored, bad UTF-8 becomes U+FFFD.

        Special tokens (``<|endoftext|>``, ``<|padding|>``) are dropped unless
        ``skip_special_tokens=False``, as in ``tokenizers``' ``decode``.
        """
        return self._core.decode(_ids_array(ids), skip_special_tokens)

    def __repr__(self) -> str:
        source = repr(self.path) if self.path is not None else "<JSON text>"
        return f"Tokenizer({source}, vocab_size={self.vocab_size})"


def _reload(cls: type[Tokenizer], path: str, sha256: str) -> Tokenizer:
    """A pickled tokenizer, reloaded from its file, which must still hold the same tokenizer:
    a worker encoding with another one would write other ids without a word."""
    tok = cls.from_file(path)
    if tok.sha256 != sha256:
        raise PythiaDataError(
            f"{path} changed since this tokenizer was loaded from it (sha256 {sha256[:12]}…, "
            f"now {tok.sha256[:12]}…): restore that file, or load the new one in the parent"
        )
    return tok


def _as_list(texts: Sequence[str], caller: str) -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"{caller} takes a sequence of texts; use encode for one text")
    if isinstance(texts, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"{caller} takes a sequence of str texts, not {type(texts).__name__}; "
            "decode bytes first (for example texts=[b.decode()])"
        )
    if isinstance(texts, Mapping | set | frozenset):
        # A dict gave its keys and a set an arbitrary order, where ids follow the texts' order.
        raise TypeError(
            f"{caller} takes a sequence of texts in order (a list or tuple), not a "
            f"{type(texts).__name__}"
        )
    if isinstance(texts, list):
        return texts
    try:
        items = iter(texts)
    except TypeError:  # it said "'NoneType' object is not iterable", naming no call
        raise TypeError(f"{caller} takes a sequence of texts, not {type(texts).__name__}") from None
    return list(items)


def _iterable(obj: object) -> bool:
    try:
        iter(obj)
    except TypeError:
        return False
    return True


def _bad_item(texts: list, caller: str) -> TypeError | UnicodeEncodeError | None:
    """The core's refusal of a batch, naming the first text that is not a str or holds a lone
    surrogate (its own words named no text, and the "position" they gave was the character's
    within that text, easily read as the text's in the batch); None when every text is fine."""
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            return TypeError(f"{caller}: text {i} is a {type(text).__name__}, not a str")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            # Still a UnicodeEncodeError, as encode raises for one text.
            return UnicodeEncodeError(
                e.encoding, e.object, e.start, e.end, f"{e.reason} (in {caller}'s text {i})"
            )
    return None


def _ids_array(ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """``ids`` as int64 for the core; ids that int64 cannot hold become -1 (ignored, as out of range)."""
    if isinstance(ids, np.ma.MaskedArray):  # its mask would be dropped, its masked ids decoded
        raise TypeError("decode takes ids, not a masked array: select the unmasked ids first")
    arr = np.asarray(ids)
    if arr.ndim == 0:
        raise TypeError(f"decode takes a 1-D sequence of ids, got {type(ids).__name__}")
    if arr.ndim != 1:
        raise ValueError(f"decode takes a 1-D sequence of ids, got shape {arr.shape}")
    if arr.size == 0:
        return np.empty(0, np.int64)
    if arr.dtype.kind in "iub":  # not "m": numpy counts timedelta64 among signed integers
        # Bools are the ids 0 and 1, as for Python's int and Hugging Face's decode.
        return arr.astype(np.int64, copy=False)
    # Python ints beyond int64 (object dtype), an object array of ints, or numpy integer scalars
    # of mixed signedness (which numpy promotes to float64): take each element as an integer.
    # Not the floats of an array-like with a dtype of its own (a torch tensor): those are its
    # dtype, whose elements were refused as "got Tensor", read as tensors being refused.
    if arr.dtype == object or (arr.dtype.kind == "f" and not hasattr(ids, "dtype")):
        items = arr if isinstance(ids, np.ndarray) else ids
        out = np.empty(len(arr), np.int64)
        for k, item in enumerate(items):
            try:
                value = operator.index(item)
            except TypeError:
                raise TypeError(f"decode takes integer ids, got {type(item).__name__}") from None
            out[k] = value if 0 <= value < 1 << 32 else -1
        return out
    raise TypeError(f"decode takes integer ids, got dtype {arr.dtype}")
