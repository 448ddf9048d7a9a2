"""Damaged or unusual Parquet / saved-dataset inputs and directory expansion for `tokenize`:
each gives a one-line error naming the file (data errors leave no work directory), or is read
exactly as the oracle tokenizer reads the same texts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_tokenize_cli import oracle, run, write_saved_dataset

from pythia_data import IndexedDataset
from pythia_data.tokenize import find_inputs


def token_lists(prefix: Path) -> list[list[int]]:
    ds = IndexedDataset(prefix)
    return [ds[i].tolist() for i in range(len(ds))]


def expected(texts: list[str]) -> list[list[int]]:
    """What GPT-NeoX writes for these texts: the oracle's ids then EOD, empty texts dropped."""
    return [oracle().encode(t).ids + [0] for t in texts if t]


def write_jsonl(path: Path, texts: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))


# --- directories --------------------------------------------------------------------------------


def test_directory_expansion_skips_hidden_names(tmp_path):
    d = tmp_path / "in"
    write_jsonl(d / "a.jsonl", ["first document"])
    write_jsonl(d / "sub" / "b.jsonl", ["second document"])
    write_jsonl(d / ".hidden" / "h.jsonl", ["from a hidden directory"])
    write_jsonl(d / ".x.jsonl", ["a hidden file"])
    assert find_inputs([d]) == [d / "a.jsonl", d / "sub" / "b.jsonl"]
    result = run(d, "--output", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert token_lists(tmp_path / "out") == expected(["first document", "second document"])
    # Named on the command line, a hidden file is an input like any other.
    assert find_inputs([d / ".x.jsonl", d]) == [
        d / ".x.jsonl",
        d / "a.jsonl",
        d / "sub" / "b.jsonl",
    ]
    result = run(d / ".x.jsonl", "--output", tmp_path / "hidden")
    assert result.exit_code == 0, result.output
    assert token_lists(tmp_path / "hidden") == expected(["a hidden file"])


def test_directory_expansion_reads_a_linked_file_once(tmp_path):
    d = tmp_path / "in"
    write_jsonl(d / "a.jsonl", ["the linked document"])
    write_jsonl(d / "c.jsonl", ["another document"])
    (d / "b.jsonl").symlink_to(d / "a.jsonl")  # sorts after its target: the target is kept
    (d / "sub").mkdir()
    (d / "sub" / "z.jsonl").symlink_to("../c.jsonl")
    assert find_inputs([d]) == [d / "a.jsonl", d / "c.jsonl"]
    result = run(d, "--output", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert token_lists(tmp_path / "out") == expected(["the linked document", "another document"])
    # A file named before the directory is listed first; the directory's copy is dropped.
    assert find_inputs([d / "c.jsonl", d]) == [d / "c.jsonl", d / "a.jsonl"]


# --- saved DatasetDict directories --------------------------------------------------------------


def saved_dataset_dict(root: Path, splits) -> None:
    """A DatasetDict saved with one split, "train", whose listing names ``splits``."""
    if not root.exists():
        root.mkdir()
        write_saved_dataset(root / "train", [json.dumps({"text": "a train document"})], files=1)
    (root / "dataset_dict.json").write_text(json.dumps({"splits": splits}))


def test_dataset_dict_listing_a_missing_split(tmp_path):
    root = tmp_path / "dd"
    saved_dataset_dict(root, ["train"])
    result = run(root, "--output", tmp_path / "ok")
    assert result.exit_code == 0, result.output
    assert token_lists(tmp_path / "ok") == expected(["a train document"])

    saved_dataset_dict(root, ["train", "missing"])
    result = run(root, "--output", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert (
        result.output == f"error: {root / 'missing'}: split listed in dataset_dict.json not found\n"
    )
    assert not list(tmp_path.glob("out*"))
    (root / "empty").mkdir()
    saved_dataset_dict(root, ["train", "empty"])
    result = run(root, "--output", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert f"error: {root / 'empty'}: split listed in dataset_dict.json has no state.json" in (
        result.output
    )


@pytest.mark.parametrize("splits", ["train", {"train": 1}, ["train", 3], None])
def test_dataset_dict_splits_that_are_not_a_list_of_names(tmp_path, splits):
    # "train" was iterated as the splits "t", "r", "a", "i", "n".
    root = tmp_path / "dd"
    saved_dataset_dict(root, splits)
    result = run(root, "--output", tmp_path / "out")
    assert result.exit_code == 1, result.output
    listing = root / "dataset_dict.json"
    assert result.output == f'error: {listing}: "splits" must be a list of split names\n'
    assert not list(tmp_path.glob("out*"))
