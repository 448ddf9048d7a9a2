"""Shared helpers of the pythia_train tests: tiny shapes and on-disk row datasets."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from pythia_data import IndexedDatasetBuilder
from pythia_train.configs import ModelConfig


def tiny_config(**overrides) -> ModelConfig:
    base = dict(num_layers=2, hidden_size=64, num_heads=4, vocab_size=512, max_seq_len=64)
    base.update(overrides)
    return ModelConfig(**base)


def write_rows(prefix: Path, rows: np.ndarray) -> Path:
    """A preshuffled dataset: item i is rows[i] (seq_length + 1 tokens each)."""
    with IndexedDatasetBuilder(prefix, dtype=np.uint16) as b:
        for row in rows:
            b.add_item(row)
    return prefix


def random_rows(n: int, seq_length: int, vocab: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab, size=(n, seq_length + 1), dtype=np.uint16)


def sample_tokens(max_docs: int = 40) -> np.ndarray:
    """The bundled Pile sample, tokenized with the 20B tokenizer, EOD (0) after each document."""
    import zstandard
    from tokenizers import Tokenizer

    from pythia_data.data import DEFAULT_TOKENIZER, SAMPLE_CORPUS

    tok = Tokenizer.from_file(str(DEFAULT_TOKENIZER))
    with open(SAMPLE_CORPUS, "rb") as f:
        text = zstandard.ZstdDecompressor().stream_reader(f).read().decode("utf-8")
    docs = [json.loads(line)["text"] for line in io.StringIO(text) if line.strip()]
    ids: list[int] = []
    for enc in tok.encode_batch(docs[:max_docs]):
        ids.extend(enc.ids)
        ids.append(0)
    return np.asarray(ids, dtype=np.uint16)


def pack_rows(tokens: np.ndarray, seq_length: int) -> np.ndarray:
    n = len(tokens) // (seq_length + 1)
    return tokens[: n * (seq_length + 1)].reshape(n, seq_length + 1)
