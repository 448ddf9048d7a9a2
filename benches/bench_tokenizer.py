"""Encode speed on the bundled sample: ours against Hugging Face ``tokenizers`` (the reference),
tiktoken's core fed the NeoX ranks (not exact: it lacks NFC, added tokens and space runs) and
fastokens (exact), where installed. Not run by default:

    PYTHONPATH=python python -m pytest benches/bench_tokenizer.py --benchmark-only \
        --benchmark-columns=min,mean,rounds

Each benchmark stores MB/s (text bytes / best round) in ``extra_info``; the figures in
docs/benchmarks.md come from here.
"""

from __future__ import annotations

import io
import json
import os

import pytest
import zstandard

from pythia_data import Tokenizer
from pythia_data.data import DEFAULT_TOKENIZER, SAMPLE_CORPUS

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def _texts() -> list[str]:
    with open(SAMPLE_CORPUS, "rb") as f:
        raw = zstandard.ZstdDecompressor().stream_reader(f).read().decode()
    return [json.loads(line)["text"] for line in io.StringIO(raw) if line.strip()]


TEXTS = _texts()
TEXT_BYTES = sum(len(t.encode()) for t in TEXTS)


def _per_document(encode):
    def run():
        for t in TEXTS:
            encode(t)

    return run


def _measure(benchmark, fn, rounds: int = 3):
    fn()  # warm caches (every tokenizer here has a word cache)
    benchmark.pedantic(fn, rounds=rounds, iterations=1)
    mb_s = TEXT_BYTES / benchmark.stats.stats.min / 1e6
    benchmark.extra_info["MB/s"] = round(mb_s, 1)
    benchmark.extra_info["text_MB"] = round(TEXT_BYTES / 1e6, 2)
    print(f"\n{benchmark.name}: {mb_s:.1f} MB/s")


@pytest.fixture(scope="module")
def ours():
    return Tokenizer.from_file()


def test_ours_per_document(benchmark, ours):
    _measure(benchmark, _per_document(ours.encode))


def test_ours_batch_all_cores(benchmark, ours):
    benchmark.extra_info["cores"] = os.cpu_count()
    _measure(benchmark, lambda: ours.encode_batch_flat(TEXTS))


def test_hf_tokenizers_per_document(benchmark):
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(str(DEFAULT_TOKENIZER))
    _measure(benchmark, _per_document(tok.encode), rounds=1)


def test_hf_tokenizers_batch_all_cores(benchmark):
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(str(DEFAULT_TOKENIZER))
    _measure(benchmark, lambda: tok.encode_batch(TEXTS), rounds=1)


def test_fastokens_per_document(benchmark):
    fastokens = pytest.importorskip("fastokens")
    tok = fastokens.Tokenizer.from_file(str(DEFAULT_TOKENIZER))
    _measure(benchmark, _per_document(tok.encode))


def test_tiktoken_core_neox_ranks_per_document(benchmark):
    tiktoken = pytest.importorskip("tiktoken")
    cfg = json.loads(DEFAULT_TOKENIZER.read_text(encoding="utf-8"))
    byte_of = _gpt2_char_to_byte()
    ranks = {
        bytes(byte_of[c] for c in token): i
        for token, i in cfg["model"]["vocab"].items()
        if all(c in byte_of for c in token)
    }
    enc = tiktoken.Encoding(
        "neox-ranks", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={}
    )
    _measure(benchmark, _per_document(enc.encode_ordinary))


def _gpt2_char_to_byte() -> dict[str, int]:
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}
