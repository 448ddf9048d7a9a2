"""``tokenizer.json`` files that differ from the bundled GPT-NeoX-20B one.

Each is a modified copy of the bundled file. Either ours gives the ids (and decoded text) of
Hugging Face ``tokenizers`` loading the same file, or it refuses the file with a message: it
never loads a file and then answers differently.
"""

from __future__ import annotations

import copy
import json

import pytest

from pythia_data import PythiaDataError, Tokenizer
from pythia_data.data import DEFAULT_TOKENIZER

tokenizers = pytest.importorskip("tokenizers")

BUNDLED = json.loads(DEFAULT_TOKENIZER.read_text(encoding="utf-8"))
# The model vocab of the bundled file has ids 0..50253; its added space runs follow at 50254.
N_VOCAB = len(BUNDLED["model"]["vocab"])


def config() -> dict:
    return copy.deepcopy(BUNDLED)


def added(id: int, content: str, special: bool = True, normalized: bool = False) -> dict:
    return {
        "id": id,
        "content": content,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": normalized,
        "special": special,
    }


def load_both(cfg: dict, tmp_path) -> tuple[Tokenizer, object]:
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return Tokenizer.from_file(path), tokenizers.Tokenizer.from_file(str(path))


def refused(cfg: dict, tmp_path, match: str) -> None:
    """Ours refuses the file with a message matching ``match``."""
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    with pytest.raises(PythiaDataError, match=match):
        Tokenizer.from_file(path)


def assert_same(ours: Tokenizer, ref, texts: list[str], ids: list[int] = ()) -> None:
    for text in texts:
        assert ours.encode(text).tolist() == ref.encode(text).ids, f"ids differ for {text!r}"
    for skip in (True, False):
        got = ours.decode(list(ids), skip_special_tokens=skip)
        assert got == ref.decode(list(ids), skip_special_tokens=skip), f"decode differs, {skip=}"


TEXTS = ["Hello world", " the theory", "hello  world", "a<|endoftext|>b", "ab  c\n\n x", ""]


def test_pair_listed_twice_takes_its_last_rank(tmp_path):
    cfg = config()
    # "Ġ t" ranks first in the file; listed again last, it takes the last rank, and " the" is
    # no longer one token.
    cfg["model"]["merges"].append("Ġ t")
    ours, ref = load_both(cfg, tmp_path)
    assert ref.encode(" the").ids != [253], "the oracle no longer keeps the last rank"
    assert_same(ours, ref, [*TEXTS, " the", " t", " this is the test"])


def _set_added(key, value):
    def edit(cfg):
        cfg["added_tokens"].append(dict(added(N_VOCAB + 23, "<|a|>"), **{key: value}))

    return edit


def _drop_added(key):
    def edit(cfg):
        token = added(N_VOCAB + 23, "<|a|>")
        del token[key]
        cfg["added_tokens"].append(token)

    return edit


def _set(section, key, value):
    def edit(cfg):
        cfg[section][key] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_set_added("rstrip", "true"), r'"rstrip": invalid type: string "true", expected a bool'),
        (_set_added("special", "yes"), r'"special": invalid type: string "yes", expected a bool'),
        (_set_added("normalized", 1), r'"normalized": invalid type: integer `1`, expected a bool'),
        (_set_added("single_word", None), r'"single_word": invalid type: null, expected a bool'),
        (_set_added("content", 5), r'"content": invalid type: integer `5`, expected a'),
        (_drop_added("special"), r'no "special" \(a required field\)'),
        (_set("model", "ignore_merges", "false"), r'"ignore_merges": invalid type: string'),
        (_set("pre_tokenizer", "add_prefix_space", 0), r'"add_prefix_space": invalid type'),
        (_set("decoder", "trim_offsets", "true"), r'"trim_offsets": invalid type: string'),
        (_set("model", "end_of_word_suffix", 1), r'"end_of_word_suffix": invalid type'),
    ],
)
def test_wrong_typed_fields_are_refused_like_the_reference(tmp_path, edit, match):
    cfg = config()
    edit(cfg)
    with pytest.raises(Exception):  # noqa: B017 - the oracle's own error type
        tokenizers.Tokenizer.from_str(json.dumps(cfg))
    refused(cfg, tmp_path, match)


def test_null_where_the_reference_allows_it(tmp_path):
    cfg = config()
    cfg["model"]["ignore_merges"] = None
    cfg["model"]["end_of_word_suffix"] = None
    ours, ref = load_both(cfg, tmp_path)
    assert_same(ours, ref, TEXTS)
