"""`pythia-data tokenize` reads each line as GPT-NeoX does, with Python's ``json.loads``: what
Python accepts beyond strict JSON (NaN and infinities, numbers beyond f64, escaped lone
surrogates) is a document like any other. The reference here is ``json.loads`` plus Hugging
Face ``tokenizers``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from pythia_data import IndexedDataset
from pythia_data.cli import main
from pythia_data.data import DEFAULT_TOKENIZER

tokenizers = pytest.importorskip("tokenizers")

META = "meta.pile_set_name"


def run(*args) -> object:
    return CliRunner().invoke(main, ["tokenize", "--quiet", *map(str, args)])


def subset_name(doc: dict) -> str:
    """The subset name kept for a document: its meta string, U+FFFD for each lone surrogate,
    "" where there is no string."""
    meta = doc.get("meta")
    name = meta.get("pile_set_name") if isinstance(meta, dict) else None
    if not isinstance(name, str):
        return ""
    return name.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def reference(lines: list[str]) -> tuple[list[list[int]], list[str]]:
    """GPT-NeoX's items (the oracle's ids then EOD, empty texts dropped) and subset names."""
    tok = tokenizers.Tokenizer.from_file(str(DEFAULT_TOKENIZER))
    docs = [json.loads(line) for line in lines]
    docs = [d for d in docs if d["text"]]
    return [tok.encode(d["text"]).ids + [0] for d in docs], [subset_name(d) for d in docs]


# Each line has something strict JSON (serde_json) refuses and Python reads.
PYTHON_ONLY = [
    '{"text": "a score of", "score": NaN}',
    '{"id": Infinity, "text": "infinite ids", "x": [-Infinity, {"y": NaN}, 1e400]}',
    '{"text": "a NaN name", "meta": {"pile_set_name": NaN}}',
    '{"text": "too big a name", "meta": {"pile_set_name": 1e400}}',
    '{"text": "", "meta": {"pile_set_name": -Infinity}}',
    '{"\\ud800": 1, "text": "a lone surrogate in a key", "meta": {"pile_set_name": "K"}}',
    '{"text": "a lone surrogate in the name", "meta": {"pile_set_name": "S\\udc00\\ud800x"}}',
    '{"te\\u0078t": "escaped key", "n": NaN, "meta": {"pile_\\u0073et_name": "E"}}',
    '{"text": "dup", "text": "last wins", "meta": {"pile_set_name": NaN}, "meta": {}}',
    '{"text": "pairs", "meta": {"pile_set_name": "H\\ud83d\\u0041 \\ud83d\\ude00"}, "z": NaN}',
]


def test_lines_python_reads_are_documents(tmp_path):
    lines = ['{"text": "plain", "meta": {"pile_set_name": "P"}}', *PYTHON_ONLY]
    src = tmp_path / "py.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    items, names = reference(lines)
    for threads in ("1", "2"):
        out = tmp_path / f"out{threads}"
        result = run(src, "--output", out, "--threads", threads)
        assert result.exit_code == 0, result.output
        ds = IndexedDataset(out)
        assert [ds[i].tolist() for i in range(len(ds))] == items
        table = json.loads((tmp_path / f"out{threads}.subsets.json").read_text())["names"]
        assert [table[c] for c in np.load(tmp_path / f"out{threads}.subsets.npy")] == names


@pytest.mark.parametrize(
    "bad,message",
    [
        # Python reads these lines, but the text is no string a tokenizer can encode, so
        # GPT-NeoX's run stops there.
        ('{"text": "a\\ud800b", "n": 1}', 'the "text" field holds a lone surrogate (\\ud800)'),
        ('{"text": "\\udfff", "s": NaN}', 'the "text" field holds a lone surrogate (\\udfff)'),
        ('{"text": NaN}', 'the "text" field is a number, not a string'),
        ('{"body": "x", "n": Infinity}', 'no "text" field'),
        # And these Python refuses too.
        ('{"text": "x", "n": nan}', "invalid JSON"),
        ('{"text": "x", "n": -NaN}', "invalid JSON"),
        ('{"text": "x", "n": NaN,}', "invalid JSON"),
        ('{"text": "x", "n": Infinity1}', "invalid JSON"),
    ],
)
def test_lines_python_reads_but_cannot_tokenize(tmp_path, bad, message):
    if message == "invalid JSON":
        with pytest.raises(ValueError):
            json.loads(bad)
    else:
        doc = json.loads(bad)
        tok = tokenizers.Tokenizer.from_file(str(DEFAULT_TOKENIZER))
        with pytest.raises((TypeError, KeyError)):
            tok.encode(doc["text"])
    src = tmp_path / "bad.jsonl"
    src.write_text('{"text": "fine"}\n' + bad + '\n{"text": "also fine"}\n')
    result = run(src, "--output", tmp_path / "out")
    assert result.exit_code == 1
    assert f"{src}: line 2: {message}" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]
    result = run(src, "--output", tmp_path / "out", "--on-error", "skip")
    assert result.exit_code == 0 and "skipped 1 bad lines" in result.output, result.output
    assert len(IndexedDataset(tmp_path / "out")) == 2
