"""`pythia-data tokenize` end to end (zstd decompression, JSON parsing, tokenization, writing)
on 1 and 2 threads, against Hugging Face ``tokenizers`` batch-encoding the same files. The goal:
on 2 cores the pipeline reaches 80 % of twice the single-core tokenizer rate. Not run by default:

    PYTHONPATH=python python -m pytest benches/bench_tokenize_pipeline.py --benchmark-only -s
"""

from __future__ import annotations

import io
import json
import shutil

import pytest
import zstandard

from pythia_data import Tokenizer
from pythia_data.data import DEFAULT_TOKENIZER, SAMPLE_CORPUS
from pythia_data.tokenize import tokenize_files

COPIES = 8  # the sample eight times: about 50 MB of text, so warm-up is a small share


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    for i in range(COPIES):
        shutil.copy(SAMPLE_CORPUS, d / f"part{i}.jsonl.zst")
    files = sorted(d.iterdir())
    texts = []
    for f in files:
        with open(f, "rb") as fh:
            raw = zstandard.ZstdDecompressor().stream_reader(fh).read().decode()
        texts += [json.loads(line)["text"] for line in io.StringIO(raw) if line.strip()]
    return files, sum(len(t.encode()) for t in texts)


def _report(benchmark, text_bytes, **extra):
    mb_s = text_bytes / benchmark.stats.stats.min / 1e6
    benchmark.extra_info.update({"MB/s": round(mb_s, 1), **extra})
    print(f"\n{benchmark.name}: {mb_s:.1f} MB/s of text")
    return mb_s


@pytest.mark.parametrize("threads", [1, 2])
def test_pipeline(benchmark, corpus, tmp_path, threads):
    files, text_bytes = corpus
    tok = Tokenizer.from_file()

    def run():
        tokenize_files(files, tmp_path / "out", tokenizer=tok, threads=threads)

    run()
    benchmark.pedantic(run, rounds=3, iterations=1)
    _report(benchmark, text_bytes, threads=threads)


def test_hf_tokenizers_batch_same_files(benchmark, corpus):
    tokenizers = pytest.importorskip("tokenizers")
    files, text_bytes = corpus
    tok = tokenizers.Tokenizer.from_file(str(DEFAULT_TOKENIZER))

    def run():
        for f in files:
            with open(f, "rb") as fh:
                raw = zstandard.ZstdDecompressor().stream_reader(fh).read().decode()
            tok.encode_batch(
                [json.loads(line)["text"] for line in io.StringIO(raw) if line.strip()]
            )

    benchmark.pedantic(run, rounds=1, iterations=1)
    _report(benchmark, text_bytes)
