"""Damaged or unusual Parquet / saved-dataset inputs and directory expansion for `tokenize`:
each gives a one-line error naming the file (data errors leave no work directory), or is read
exactly as the oracle tokenizer reads the same texts."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from progress_stops import stop_on_call
from test_tokenize_cli import oracle, run, sample_lines, write_saved_dataset

from pythia_data import IndexedDataset
from pythia_data.tokenize import find_inputs, tokenize_files


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


def test_directory_expansion_drops_a_link_that_sorts_before_its_target(tmp_path):
    # The link a_link.jsonl was kept and z.jsonl dropped: z's documents came before m's.
    d = tmp_path / "ord"
    write_jsonl(d / "m.jsonl", ["the middle document"])
    write_jsonl(d / "z.jsonl", ["the last document", "and its second"])
    (d / "a_link.jsonl").symlink_to("z.jsonl")
    assert find_inputs([d]) == [d / "m.jsonl", d / "z.jsonl"]
    result = run(d, "--output", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert token_lists(tmp_path / "out") == expected(
        ["the middle document", "the last document", "and its second"]
    )
    # A link to a file outside the directory is an input, in its name's place.
    write_jsonl(tmp_path / "outside.jsonl", ["from outside"])
    (d / "b_link.jsonl").symlink_to("../outside.jsonl")
    assert find_inputs([d]) == [d / "b_link.jsonl", d / "m.jsonl", d / "z.jsonl"]


def test_directory_expansion_follows_linked_directories_but_not_loops(tmp_path):
    # A linked folder's files were silently left out (rglob does not follow links).
    d = tmp_path / "corpus"
    write_jsonl(d / "a.jsonl", ["in the corpus itself"])
    write_jsonl(tmp_path / "elsewhere" / "b.jsonl", ["in a linked folder"])
    (d / "more").symlink_to("../elsewhere")
    (d / "loop").symlink_to(".")  # back to the corpus: not followed
    (d / "sub").mkdir()
    write_jsonl(d / "sub" / "c.jsonl", ["in a subfolder"])
    (d / "sub" / "up").symlink_to("..")  # up the tree: not followed either
    (d / "again").symlink_to("sub")  # sorts before sub: c.jsonl stays at its own place
    assert find_inputs([d]) == [d / "a.jsonl", d / "more" / "b.jsonl", d / "sub" / "c.jsonl"]
    result = run(d, "--output", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert token_lists(tmp_path / "out") == expected(
        ["in the corpus itself", "in a linked folder", "in a subfolder"]
    )


def test_an_alias_link_to_a_folder_of_the_tree_moves_nothing(tmp_path):
    # latest -> v2 listed v2's linked file at latest/, ahead of v2's own first file.
    write_jsonl(tmp_path / "store" / "blob1", ["the linked document"])
    tree = tmp_path / "tree"
    write_jsonl(tree / "v2" / "part1.jsonl", ["the first document"])
    (tree / "v2" / "part2.jsonl").symlink_to("../../store/blob1")
    want = [tree / "v2" / "part1.jsonl", tree / "v2" / "part2.jsonl"]
    assert find_inputs([tree]) == want
    (tree / "latest").symlink_to("v2")
    assert find_inputs([tree]) == want


def test_many_links_to_one_folder_search_it_once(tmp_path):
    # Each folder was searched once per path to it: 2^n paths down a chain of paired links.
    n = 30
    for i in range(n + 1):
        (tmp_path / f"L{i}").mkdir()
    for i in range(n):
        (tmp_path / f"L{i}" / "a").symlink_to(f"../L{i + 1}")
        (tmp_path / f"L{i}" / "b").symlink_to(f"../L{i + 1}")
    write_jsonl(tmp_path / f"L{n}" / "x.jsonl", ["at the bottom"])
    path = tmp_path / "L0" / Path(*["a"] * n) / "x.jsonl"
    assert find_inputs([tmp_path / "L0"]) == [path]


def test_a_broken_link_is_an_error_not_a_gap(tmp_path):
    d = tmp_path / "in"
    write_jsonl(d / "a.jsonl", ["a document"])
    (d / "mnt").symlink_to(tmp_path / "unmounted")
    result = run(d, "--output", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert f"{d / 'mnt'}: a broken link (to {tmp_path / 'unmounted'})" in result.output


def test_directory_whose_files_are_all_listed_adds_nothing(tmp_path):
    # Each was refused: "no input files in this directory", which was false.
    d = tmp_path / "a"
    write_jsonl(d / "x.jsonl", ["the only document"])
    (tmp_path / "alink").symlink_to("a")
    for args in ([d, d], [d, tmp_path / "alink"], [d / "x.jsonl", d]):
        assert find_inputs(args) == [args[0] if args[0].is_file() else d / "x.jsonl"]
        result = run(*args, "--output", tmp_path / "out")
        assert result.exit_code == 0, result.output
        assert token_lists(tmp_path / "out") == expected(["the only document"])
    # A directory with no input files at all still is an error.
    (tmp_path / "empty").mkdir()
    result = run(d, tmp_path / "empty", "--output", tmp_path / "none")
    assert result.exit_code == 1, result.output
    assert f"error: {tmp_path / 'empty'}: no input files in this directory" in result.output


def test_a_file_named_twice_is_read_twice_but_a_directory_adds_it_once(tmp_path):
    # As merge merges a dataset named twice: naming is on purpose, expansion is not.
    d = tmp_path / "in"
    write_jsonl(d / "x.jsonl", ["the named document"])
    write_jsonl(d / "y.jsonl", ["another document"])
    x = d / "x.jsonl"
    assert find_inputs([x, x]) == [x, x]
    assert find_inputs([x, d]) == [x, d / "y.jsonl"]
    assert find_inputs([d, x]) == [x, d / "y.jsonl", x]
    result = run(x, x, "--output", tmp_path / "twice")
    assert result.exit_code == 0, result.output
    assert token_lists(tmp_path / "twice") == expected(["the named document"] * 2)


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


def test_tokenize_files_reads_a_dataset_dict_split_by_split(tmp_path):
    # Only the CLI listed the splits: tokenize_files raised FileNotFoundError (dd/state.json).
    root = tmp_path / "dd"
    root.mkdir()
    train, test = ["the first train document", "the second one"], ["a test document"]
    write_saved_dataset(root / "train", [json.dumps({"text": t}) for t in train], files=1)
    write_saved_dataset(root / "test", [json.dumps({"text": t}) for t in test], files=1)
    (root / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    report = tokenize_files(root, tmp_path / "out")
    assert report["documents"] == 3
    assert token_lists(tmp_path / "out") == expected(train + test)  # the listing's order


# --- damaged Parquet ----------------------------------------------------------------------------


def damaged_parquet(path: Path, group: int = 2) -> list[str]:
    """5 row groups of 1,000 rows (snappy, pages of 50 rows); 200 random bytes overwritten in a
    late page of row group ``group``, the footer intact. Returns the texts written."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    sample = [json.loads(line)["text"] for line in sample_lines()]
    texts = [f"{i}: {sample[i % len(sample)][:300]}" for i in range(5000)]
    pq.write_table(
        pa.table({"text": texts}), path, row_group_size=1000, compression="snappy",
        data_page_size=8192, write_batch_size=50, use_dictionary=False,
    )  # fmt: skip
    chunk = pq.ParquetFile(path).metadata.row_group(group).column(0)
    at = chunk.data_page_offset + chunk.total_compressed_size * 3 // 4
    data = bytearray(path.read_bytes())
    data[at : at + 200] = random.Random(0).randbytes(200)
    path.write_bytes(bytes(data))
    pf = pq.ParquetFile(path)
    for g in range(5):  # the damage is where it was meant to be
        if g != group:
            pf.read_row_group(g)
    with pytest.raises(OSError, match="Corrupt snappy"):
        pf.read_row_group(group)
    # ...and the group's first pages still decode, as a reader in small batches sees.
    assert next(pf.iter_batches(batch_size=7, row_groups=[group])).num_rows == 7
    return texts


def test_corrupt_parquet_page_is_a_data_error_naming_the_file(tmp_path, monkeypatch):
    # It was `error: Corrupt snappy compressed data.`, an OSError: after a checkpoint the run
    # kept its work directory and said to run the same command again, which cannot succeed.
    import pythia_data.tokenize

    source = tmp_path / "d.parquet"
    damaged_parquet(source)
    monkeypatch.setattr(pythia_data.tokenize, "ARROW_BATCH_ROWS", 500)  # checkpoints before it
    result = run(source, "--output", tmp_path / "out", "--checkpoint-seconds", "0")
    assert result.exit_code == 1, result.output
    assert result.output.startswith(
        f"error: {source}: corrupt Parquet data in row group 2, rows 2001-3000 (Corrupt snappy"
    ), result.output
    assert "re-download" in result.output and "again" not in result.output
    assert len(result.output.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.parquet"]


def test_corrupt_parquet_footer_is_a_data_error_naming_the_file(tmp_path):
    # pyarrow raises it as an OSError: it was `error: Couldn't deserialize thrift: ...`.
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    source = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["a", "b"] * 50}), source, row_group_size=20)
    data = bytearray(source.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")
    at = len(data) - 8 - footer * 2 // 3
    data[at : at + 16] = random.Random(0).randbytes(16)
    source.write_bytes(bytes(data))
    with pytest.raises(OSError, match="deserialize thrift"):
        pq.ParquetFile(source)
    result = run(source, "--output", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"error: {source}: not a readable Parquet file (Couldn't")
    assert len(result.output.splitlines()) == 1, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.parquet"]


@pytest.mark.parametrize("held", [True, False])  # kept decoded, or decoded twice
def test_corrupt_parquet_row_group_is_skipped_whole(tmp_path, monkeypatch, held):
    import pythia_data.tokenize

    if not held:
        monkeypatch.setattr(pythia_data.tokenize, "HOLD_ROW_GROUP_BYTES", 0)
    source = tmp_path / "d.parquet"
    texts = damaged_parquet(source)
    good = texts[:2000] + texts[3000:]
    outputs = []
    for batch_rows in (2048, 7):  # the group's first pages decode in small batches
        monkeypatch.setattr(pythia_data.tokenize, "ARROW_BATCH_ROWS", batch_rows)
        out = tmp_path / f"out{batch_rows}"
        result = run(source, "--output", out, "--on-error", "skip")
        assert result.exit_code == 0, result.output
        assert "skipped 1,000 bad lines" in result.output
        assert f"{source}: corrupt Parquet data in row group 2, rows 2001-3000" in result.output
        outputs.append(b"".join(Path(f"{out}{e}").read_bytes() for e in (".bin", ".idx")))
    assert outputs[0] == outputs[1]
    assert token_lists(tmp_path / "out2048") == expected(good)
    # Stopped right after the skipped group and continued, it ends the same.
    monkeypatch.setattr(pythia_data.tokenize, "ARROW_BATCH_ROWS", 2048)  # a batch per group
    stop = stop_on_call(3)

    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        tokenize_files([source], part, on_error="skip", checkpoint_seconds=0, progress=stop)
    report = tokenize_files([source], part, on_error="skip")
    assert report["resumed_documents"] == 2000 and report["errors_skipped"] == 1000
    assert token_lists(part) == expected(good)


def damaged_group_1(path: Path, at: int, **write) -> list[str]:
    """60 of the sample's documents in row groups of 20, with 64 bytes of row group 1's text
    column inverted from ``at`` bytes into its first page. Returns the texts written."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    texts = [json.loads(line)["text"] for line in sample_lines()[:60]]
    pq.write_table(pa.table({"text": texts}), path, row_group_size=20, **write)
    chunk = pq.ParquetFile(path).metadata.row_group(1).column(0)
    data = bytearray(path.read_bytes())
    start = chunk.data_page_offset + at
    data[start : start + 64] = bytes(b ^ 0xFF for b in data[start : start + 64])
    path.write_bytes(bytes(data))
    return texts


def test_parquet_page_checksums_are_checked(tmp_path):
    # A page written with a CRC and damaged where zstd still decodes it was tokenized as
    # garbage, exit 0: the CRC was never checked.
    pq = pytest.importorskip("pyarrow.parquet")
    source = tmp_path / "d.parquet"
    texts = damaged_group_1(
        source, 100_000, compression="zstd", use_dictionary=False, write_page_checksum=True
    )
    garbled = pq.ParquetFile(source).read_row_group(1).column(0).to_pylist()
    assert len(garbled) == 20 and garbled != texts[20:40]  # unchecked, it reads as text
    result = run(source, "--output", tmp_path / "out")
    assert result.exit_code == 1, result.output
    message = f"{source}: corrupt Parquet data in row group 1, rows 21-40 (could not verify page"
    assert result.output.startswith(f"error: {message}"), result.output
    assert "CRC checksum verification failed" in result.output
    assert len(result.output.splitlines()) == 1, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.parquet"]
    result = run(source, "--output", tmp_path / "out", "--on-error", "skip")
    assert result.exit_code == 0, result.output
    assert "skipped 20 bad lines" in result.output and message in result.output
    assert token_lists(tmp_path / "out") == expected(texts[:20] + texts[40:])
    # Files without checksums (pyarrow's default) read as before.
    plain = tmp_path / "plain.parquet"
    pq.write_table(pq.read_table(source, columns=[]).append_column("text", [texts]), plain)
    result = run(plain, "--output", tmp_path / "plain")
    assert result.exit_code == 0, result.output
    assert token_lists(tmp_path / "plain") == expected(texts)


def test_corrupt_parquet_page_header_is_a_one_line_error(tmp_path):
    # pyarrow's message spans two lines ("Couldn't deserialize thrift: ...\nDeserializing page
    # header failed."), and so did ours.
    pq = pytest.importorskip("pyarrow.parquet")
    source = tmp_path / "d.parquet"
    texts = damaged_group_1(source, 1, use_dictionary=False)
    with pytest.raises(OSError, match="\nDeserializing page header failed"):
        pq.ParquetFile(source).read_row_group(1)
    result = run(source, "--output", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert result.output.startswith(
        f"error: {source}: corrupt Parquet data in row group 1, rows 21-40 (Couldn't deserialize"
    ), result.output
    assert " Deserializing page header failed.); re-create" in result.output, result.output
    assert len(result.output.splitlines()) == 1, result.output
    result = run(source, "--output", tmp_path / "out", "--on-error", "skip")
    assert result.exit_code == 0, result.output
    assert token_lists(tmp_path / "out") == expected(texts[:20] + texts[40:])


# --- Arrow column types -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docs() -> list[tuple[str, str]]:
    """(text, subset) of the sample's first documents, one repeated (for dictionaries to share)
    and one empty (skipped, as GPT-NeoX does)."""
    parsed = [json.loads(line) for line in sample_lines()[:40]]
    pairs = [(d["text"], d["meta"]["pile_set_name"]) for d in parsed]
    return pairs + [pairs[3], ("", "Empty")]


def typed(values, type_):
    """``values`` as an Arrow array of ``type_``; dictionaries built directly, as pyarrow cannot
    cast to every dictionary type."""
    pa = pytest.importorskip("pyarrow")
    if not pa.types.is_dictionary(type_):
        return pa.array(values, type_)
    codes = {v: i for i, v in enumerate(dict.fromkeys(values))}
    return pa.DictionaryArray.from_arrays(
        pa.array([codes[v] for v in values], type_.index_type),
        pa.array(list(codes), type_.value_type),
    )


def write_tables(path: Path, tables: list) -> None:
    """``tables`` (one schema) as the row groups of a Parquet file (``*.parquet``), or else as
    the batches of a save_to_disk dataset directory; written whole, as pyarrow cannot slice
    every type."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        with pq.ParquetWriter(path, tables[0].schema) as w:
            for table in tables:
                w.write_table(table)
        return
    path.mkdir()
    with pa.OSFile(str(path / "data.arrow"), "wb") as sink:
        with pa.ipc.new_stream(sink, tables[0].schema) as w:
            for table in tables:
                w.write_table(table)
    (path / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data.arrow"}]}))


def string_types() -> dict:
    pa = pytest.importorskip("pyarrow")
    return {
        "large_string": pa.large_string(),
        "string_view": pa.string_view(),
        "dictionary<string>": pa.dictionary(pa.int32(), pa.string()),
        "dictionary<large_string>": pa.dictionary(pa.int8(), pa.large_string()),
        "dictionary<string_view>": pa.dictionary(pa.int64(), pa.string_view()),
    }


@pytest.mark.parametrize("name", ["data.parquet", "saved"])
@pytest.mark.parametrize(
    "type_name",
    ["large_string", "string_view", "dictionary<string>", "dictionary<large_string>",
     "dictionary<string_view>"],
)  # fmt: skip
def test_dictionary_and_view_string_columns_are_read_as_text(tmp_path, docs, name, type_name):
    # They were refused: "the 'text' column is dictionary<values=string, ...>, not a string",
    # and such a meta column was read as no subset at all.
    pa = pytest.importorskip("pyarrow")
    type_ = string_types()[type_name]
    if name.endswith(".parquet") and type_name == "dictionary<string_view>":
        pytest.skip("pyarrow cannot write it to Parquet")
    tables = []
    for i in range(0, len(docs), 16):  # several row groups, each with its own dictionary
        texts, subsets = zip(*docs[i : i + 16], strict=True)
        meta = pa.StructArray.from_arrays([typed(subsets, type_)], ["pile_set_name"])
        tables.append(pa.table({"text": typed(texts, type_), "meta": meta}))
    write_tables(tmp_path / name, tables)
    result = run(tmp_path / name, "--output", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert token_lists(tmp_path / "out") == expected([t for t, _ in docs])
    kept = [s for t, s in docs if t]
    names = list(dict.fromkeys(kept))
    assert json.loads((tmp_path / "out.subsets.json").read_text())["names"] == names
    assert np.load(tmp_path / "out.subsets.npy").tolist() == [names.index(s) for s in kept]


def test_dictionary_of_numbers_is_still_not_text(tmp_path):
    pa = pytest.importorskip("pyarrow")
    numbers = pa.array([1, 2, 1]).dictionary_encode()
    write_tables(tmp_path / "saved", [pa.table({"text": numbers})])  # Parquet would decode it
    result = run(tmp_path / "saved", "--output", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert f"{tmp_path / 'saved'}: the 'text' column is dictionary<values=int64" in result.output
    assert "not a string" in result.output


@pytest.mark.parametrize("name", ["b.parquet", "saved"])
def test_a_text_column_of_nulls_only_is_rows_without_text(tmp_path, docs, name):
    # pandas and `datasets` type an all-None column `null`: the file was refused whole ("the
    # 'text' column is null, not a string"), even with --on-error skip.
    pa = pytest.importorskip("pyarrow")
    texts = [t for t, _ in docs[:12]]
    write_tables(tmp_path / "a.parquet", [pa.table({"text": texts})])
    write_tables(tmp_path / name, [pa.table({"text": pa.nulls(3)})])
    inputs = [tmp_path / "a.parquet", tmp_path / name]
    result = run(*inputs, "--output", tmp_path / "out", "--meta-key", "")
    assert result.exit_code == 1, result.output
    message = f'{tmp_path / name}: row 1: the "text" field is null, not a string'
    assert result.output == f"error: {message}; skip such rows with --on-error skip\n"
    result = run(*inputs, "--output", tmp_path / "out", "--meta-key", "", "--on-error", "skip")
    assert result.exit_code == 0, result.output
    assert "skipped 3 bad lines" in result.output
    assert token_lists(tmp_path / "out") == expected(texts)


@pytest.mark.parametrize("name", ["data.parquet", "saved"])
def test_a_flattened_meta_column_is_the_subset(tmp_path, docs, name):
    # `datasets`' flatten() names the struct's field "meta.pile_set_name": every document
    # was given the subset "", with no word said.
    pa = pytest.importorskip("pyarrow")
    texts, subsets = (list(x) for x in zip(*docs, strict=True))
    write_tables(tmp_path / name, [pa.table({"text": texts, "meta.pile_set_name": subsets})])
    result = run(tmp_path / name, "--output", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert token_lists(tmp_path / "out") == expected(texts)
    kept = [s for t, s in docs if t]
    names = list(dict.fromkeys(kept))
    assert json.loads((tmp_path / "out.subsets.json").read_text())["names"] == names
    assert np.load(tmp_path / "out.subsets.npy").tolist() == [names.index(s) for s in kept]


def class_label_schema(schema, path: list[str], names: list[str]):
    """``schema`` with the metadata ``datasets`` writes into its Arrow and Parquet files when the
    feature at ``path`` is a ClassLabel (its layout as datasets 5.2 writes it)."""
    features = node = {"text": {"dtype": "string", "_type": "Value"}}
    for field in path[:-1]:
        node = node.setdefault(field, {})
    node[path[-1]] = {"names": names, "_type": "ClassLabel"}
    return schema.with_metadata({"huggingface": json.dumps({"info": {"features": features}})})


@pytest.mark.parametrize("name", ["data.parquet", "saved"])
@pytest.mark.parametrize("flat", [False, True])
def test_a_class_label_meta_column_gives_its_label_names(tmp_path, docs, name, flat):
    # `datasets` stores a ClassLabel as integers and its names in the schema's metadata: every
    # document was given the subset "".
    pa = pytest.importorskip("pyarrow")
    texts, subsets = (list(x) for x in zip(*docs, strict=True))
    labels = sorted(set(subsets))
    codes = [labels.index(s) for s in subsets]
    codes[5] = -1  # no label
    if flat:
        table = pa.table({"text": texts, "meta.pile_set_name": codes})
        path = ["meta.pile_set_name"]
    else:
        table = pa.table(
            {
                "text": texts,
                "meta": pa.StructArray.from_arrays([pa.array(codes)], ["pile_set_name"]),
            }
        )
        path = ["meta", "pile_set_name"]
    table = table.replace_schema_metadata(class_label_schema(table.schema, path, labels).metadata)
    write_tables(tmp_path / name, [table.slice(0, 20), table.slice(20)])
    result = run(tmp_path / name, "--output", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert token_lists(tmp_path / "out") == expected(texts)
    kept = ["" if i == 5 else s for i, (t, s) in enumerate(docs) if t]
    names = list(dict.fromkeys(kept))
    assert json.loads((tmp_path / "out.subsets.json").read_text())["names"] == names
    assert np.load(tmp_path / "out.subsets.npy").tolist() == [names.index(s) for s in kept]
    # Integers without that metadata (or with other metadata) are still no subset name.
    plain = table.replace_schema_metadata({"huggingface": "{not json"})
    write_tables(tmp_path / f"plain-{name}", [plain])
    result = run(tmp_path / f"plain-{name}", "--output", tmp_path / "plain")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "plain.subsets.json").read_text())["names"] == [""]


@pytest.mark.parametrize("name", ["data.parquet", "saved"])
@pytest.mark.parametrize("label", [False, True])
def test_a_null_meta_struct_gives_no_subset_whatever_its_fields_hold(tmp_path, docs, name, label):
    # Arrow keeps a struct's fields under a null row (a saved dataset's Arrow file holds them as
    # written): that row's subset was the field's value, as if the JSON line's "meta" were not
    # null, where JSON lines give "".
    pa = pytest.importorskip("pyarrow")
    texts, subsets = (list(x) for x in zip(*docs, strict=True))
    labels = sorted(set(subsets))
    field = pa.array([labels.index(s) for s in subsets]) if label else pa.array(subsets)
    mask = pa.array([i in (2, 7) for i in range(len(texts))])
    meta = pa.StructArray.from_arrays([field], ["pile_set_name"], mask=mask)
    table = pa.table({"text": texts, "meta": meta})
    if label:
        schema = class_label_schema(table.schema, ["meta", "pile_set_name"], labels)
        table = table.replace_schema_metadata(schema.metadata)
    write_tables(tmp_path / name, [table.slice(0, 5), table.slice(5)])
    result = run(tmp_path / name, "--output", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert token_lists(tmp_path / "out") == expected(texts)
    kept = ["" if i in (2, 7) else s for i, (t, s) in enumerate(docs) if t]
    names = list(dict.fromkeys(kept))
    assert json.loads((tmp_path / "out.subsets.json").read_text())["names"] == names
    assert np.load(tmp_path / "out.subsets.npy").tolist() == [names.index(s) for s in kept]


# --- invalid UTF-8 ------------------------------------------------------------------------------


def raw_strings(values: list[bytes]):
    """A string array holding ``values`` unchecked, as a file written by another tool can."""
    pa = pytest.importorskip("pyarrow")
    offsets = np.cumsum([0] + [len(v) for v in values], dtype=np.int32)
    buffers = [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"".join(values))]
    return pa.Array.from_buffers(pa.string(), len(values), buffers)


@pytest.mark.parametrize("name", ["data.parquet", "saved"])
def test_invalid_utf8_text_names_the_row_and_is_skipped(tmp_path, docs, name):
    # It was `error: 'utf-8' codec can't decode byte 0xff ...`, and --on-error skip did not skip.
    pa = pytest.importorskip("pyarrow")
    texts = [t.encode() for t, _ in docs[:30]]
    texts[22] = b"ok\xffbad"
    write_tables(
        tmp_path / name, [pa.table({"text": raw_strings(texts[i : i + 16])}) for i in (0, 16)]
    )
    source = tmp_path / name
    result = run(source, "--output", tmp_path / "out", "--meta-key", "")
    assert result.exit_code == 1, result.output
    message = f'{source}: row 23: invalid UTF-8 (byte 0xff at offset 2) in the "text" field'
    assert result.output == f"error: {message}; skip such rows with --on-error skip\n"
    assert not list(tmp_path.glob("out*"))
    result = run(source, "--output", tmp_path / "out", "--meta-key", "", "--on-error", "skip")
    assert result.exit_code == 0, result.output
    assert "skipped 1 bad lines" in result.output and message in result.output
    assert token_lists(tmp_path / "out") == expected([t.decode() for t in texts[:22] + texts[23:]])


@pytest.mark.parametrize("name", ["data.parquet", "saved"])
def test_rows_of_tiny_row_groups_are_tokenized_together_in_their_places(tmp_path, docs, name):
    # Batches of three rows gather into one call to the tokenizer: each bad row must still be
    # skipped, and each subset name kept, at its own row of the whole file.
    pa = pytest.importorskip("pyarrow")
    texts = [t.encode() for t, _ in docs[:30]]
    texts[4] = b"bad\xfe"
    subsets = [s for _, s in docs[:30]]
    tables = []
    for i in range(0, 30, 3):
        meta = pa.StructArray.from_arrays([pa.array(subsets[i : i + 3])], ["pile_set_name"])
        tables.append(pa.table({"text": raw_strings(texts[i : i + 3]), "meta": meta}))
    # Row 10's text null: raw_strings makes no nulls, so its batch is rebuilt with one.
    t = tables[3]
    tables[3] = t.set_column(0, "text", pa.array([None, *t.column(0).to_pylist()[1:]]))
    source = tmp_path / name
    write_tables(source, tables)
    result = run(source, "--output", tmp_path / "out", "--on-error", "skip")
    assert result.exit_code == 0, result.output
    assert "skipped 2 bad lines" in result.output
    bad_text = f'{source}: row 5: invalid UTF-8 (byte 0xfe at offset 3) in the "text" field'
    assert bad_text in result.output
    assert f'{source}: row 10: the "text" field is null, not a string' in result.output
    kept = [k for k in range(30) if k not in (4, 9)]
    assert token_lists(tmp_path / "out") == expected([texts[k].decode() for k in kept])
    names = list(dict.fromkeys(subsets[k] for k in kept))
    assert json.loads((tmp_path / "out.subsets.json").read_text())["names"] == names
    codes = np.load(tmp_path / "out.subsets.npy").tolist()
    assert codes == [names.index(subsets[k]) for k in kept]


@pytest.mark.parametrize("nested_dictionary", [False, True])
def test_tiny_parquet_row_groups_are_read_together(tmp_path, docs, monkeypatch, nested_dictionary):
    # A reader per row group (about 0.13 ms each) was most of the time of a file of groups of
    # a few rows: consecutive small groups are read as one, with the same output. Subset names
    # in a dictionary inside a struct cannot be read so (pyarrow cannot join them across
    # groups): after one try, such a file is read a group at a time.
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    texts, subsets = [t for t, _ in docs], [s for _, s in docs]
    names = typed(subsets, pa.dictionary(pa.int32(), pa.string())) if nested_dictionary else subsets
    meta = pa.StructArray.from_arrays([pa.array(names)], ["pile_set_name"])
    table = pa.table({"text": texts, "meta": meta})
    tiny, whole = tmp_path / "tiny.parquet", tmp_path / "whole.parquet"
    pq.write_table(table, tiny, row_group_size=2)
    pq.write_table(table, whole)
    tokenize_files([whole], tmp_path / "whole")
    groups = pq.ParquetFile(tiny).num_row_groups
    assert groups == 21
    readers = []
    for method in ("iter_batches", "read_row_groups"):
        original = getattr(pq.ParquetFile, method)

        def counted(self, *args, original=original, **kwargs):
            readers.append(original.__name__)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(pq.ParquetFile, method, counted)
    for on_error in ("fail", "skip"):
        readers.clear()
        out = tmp_path / f"tiny-{on_error}"
        report = tokenize_files([tiny], out, on_error=on_error)
        assert report["documents"] == len(texts) - 1 and report["errors_skipped"] == 0
        assert len(readers) == (1 + groups if nested_dictionary else 1), readers
        for ext in (".bin", ".idx", ".subsets.npy", ".subsets.json"):
            assert Path(f"{out}{ext}").read_bytes() == (tmp_path / f"whole{ext}").read_bytes()


def test_invalid_utf8_subset_name_names_the_row_and_is_skipped(tmp_path, docs):
    pa = pytest.importorskip("pyarrow")
    texts = [t for t, _ in docs[:10]]
    names = [s.encode() for _, s in docs[:10]]
    names[4] = b"Pile-\xc3("  # a cut two-byte sequence
    meta = pa.StructArray.from_arrays([raw_strings(names)], ["pile_set_name"])
    source = tmp_path / "m.parquet"
    write_tables(source, [pa.table({"text": texts, "meta": meta})])
    result = run(source, "--output", tmp_path / "out")
    assert result.exit_code == 1, result.output
    message = (
        f'{source}: row 5: invalid UTF-8 (byte 0xc3 at offset 5) in the "meta.pile_set_name" field'
    )
    assert result.output == f"error: {message}; skip such rows with --on-error skip\n"
    result = run(source, "--output", tmp_path / "out", "--on-error", "skip")
    assert result.exit_code == 0, result.output
    assert "skipped 1 bad lines" in result.output and message in result.output
    kept = [i for i in range(10) if i != 4]
    assert token_lists(tmp_path / "out") == expected([texts[i] for i in kept])
    subsets = [docs[i][1] for i in kept]
    table = list(dict.fromkeys(subsets))
    assert json.loads((tmp_path / "out.subsets.json").read_text())["names"] == table
    assert np.load(tmp_path / "out.subsets.npy").tolist() == [table.index(s) for s in subsets]


def pairs(*values: int) -> bytes:
    return np.array(values, np.int64).tobytes()


def damaged_batch(kind: str):
    """A batch of four rows or more, and the bytes of its Arrow file to replace (found once)
    to damage it in the way ``kind`` names; None, None where the batch is damaged as made."""
    pa = pytest.importorskip("pyarrow")
    texts = ["Alpha beta.", "Gamma delta epsilon.", "Zeta!", "Eta theta iota kappa."]
    if kind == "text offsets past the data":
        ends = np.cumsum([len(t) for t in texts]).tolist()
        old = pairs(0, *ends)
        new = pairs(0, ends[0], ends[-1] + 4096, 7, ends[-1])
        return pa.table({"text": pa.array(texts, pa.large_string())}), old, new
    if kind == "an offsets buffer too short for its rows":
        # The buffer's (offset, length) in the batch's header: 16 bytes at the body's end.
        n = 2000
        table = pa.table({"text": pa.array(["abc"] * n)})
        body = (4 * (n + 1) + 7) // 8 * 8 + 3 * n
        return table, pairs(0, 4 * (n + 1)), pairs(body - 16, 16)
    if kind == "a validity bitmap too short for its rows":
        table = pa.table({"text": pa.array(["a", None, "b", "c"] * 250)})
        return table, pairs(0, 125), pairs(0, 8)
    if kind == "subset-name offsets past the data":
        names = ["Pile-CC", "Github", "ArXiv", "Enron Emails"]
        meta = pa.StructArray.from_arrays([pa.array(names)], ["pile_set_name"])
        ends = np.cumsum([len(n) for n in names]).tolist()
        old = np.array([0, *ends], np.int32).tobytes()
        new = np.array([0, 7, 9000, 9000, ends[-1]], np.int32).tobytes()
        return pa.table({"text": texts, "meta": meta}), old, new
    if kind == "a dictionary index out of range":
        indices = pa.array([0, 1, 77, 3], pa.int32())
        words = pa.DictionaryArray.from_arrays(indices, pa.array(texts), safe=False)
        return pa.table({"text": words}), None, None
    if kind == "a string view past its buffer":
        long = [t * 3 for t in texts]  # views of more than 12 bytes point into a data buffer
        table = pa.table({"text": pa.array(long, pa.string_view())})
        head = np.int32(len(long[1])).tobytes() + long[1][:4].encode()
        start = sum(len(t) for t in long[:1])
        old = head + np.array([0, start], np.int32).tobytes()
        new = head + np.array([0, start + 10**6], np.int32).tobytes()
        return table, old, new
    raise AssertionError(kind)


DAMAGE = [
    "text offsets past the data",
    "an offsets buffer too short for its rows",
    "a validity bitmap too short for its rows",
    "subset-name offsets past the data",
    "a dictionary index out of range",
    "a string view past its buffer",
]


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_arrow_batch_is_a_data_error_and_is_skipped_whole(tmp_path, kind):
    # pyarrow does not check a mapped Arrow file: each of these read past a buffer (a crash, a
    # traceback, or other memory read as text) before batches were checked.
    pa = pytest.importorskip("pyarrow")
    damaged, old, new = damaged_batch(kind)
    text_type = damaged.schema.field("text").type
    first = pa.array(["first batch, kept"])
    dictionary = pa.types.is_dictionary(text_type)
    good = pa.table({"text": first.dictionary_encode() if dictionary else first.cast(text_type)})
    if "meta" in damaged.schema.names:
        meta = pa.StructArray.from_arrays([pa.array(["Books3"])], ["pile_set_name"])
        good = good.append_column("meta", meta)
    source = tmp_path / "saved"
    write_tables(source, [good, damaged])
    if old is not None:
        data = source / "data.arrow"
        raw = data.read_bytes()
        assert raw.count(old) == 1
        data.write_bytes(raw.replace(old, new))
    rows = f"rows 2-{1 + damaged.num_rows}"
    result = run(source, "--output", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"error: {source}: damaged Arrow data in {rows} (data.arrow: ")
    assert result.output.endswith(
        "; save the dataset again, or skip such batches with --on-error skip\n"
    )
    assert "\n" not in result.output[:-1] and not list(tmp_path.glob("out*"))
    result = run(source, "--output", tmp_path / "out", "--on-error", "skip")
    assert result.exit_code == 0, result.output
    assert f"skipped {damaged.num_rows:,} bad lines" in result.output
    assert f"{source}: damaged Arrow data in {rows}" in result.output
    assert token_lists(tmp_path / "out") == expected(["first batch, kept"])


def test_damage_in_a_meta_field_that_is_not_read_stops_nothing(tmp_path):
    # The whole meta struct was checked, so damage in a field beside the subset name (a URL no
    # option reads) stopped the run, or skipped rows whose every read value was sound.
    pa = pytest.importorskip("pyarrow")
    texts = ["Alpha beta.", "Gamma delta epsilon.", "Zeta!", "Eta theta iota kappa."]
    names = ["Pile-CC", "Github", "ArXiv", "Enron Emails"]
    urls = ["https://a.example/1", "https://b.example/22", "https://c.example/333", "x"]
    meta = pa.StructArray.from_arrays([pa.array(urls), pa.array(names)], ["url", "pile_set_name"])
    source = tmp_path / "saved"
    write_tables(source, [pa.table({"text": texts, "meta": meta})])
    data = source / "data.arrow"
    ends = np.cumsum([len(u) for u in urls]).tolist()
    old = np.array([0, *ends], np.int32).tobytes()
    raw = data.read_bytes()
    assert raw.count(old) == 1
    data.write_bytes(raw.replace(old, np.array([0, 7, 9000, 9000, ends[-1]], np.int32).tobytes()))

    result = run(source, "--output", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert token_lists(tmp_path / "out") == expected(texts)
    assert json.loads((tmp_path / "out.subsets.json").read_text())["names"] == names
    assert np.load(tmp_path / "out.subsets.npy").tolist() == [0, 1, 2, 3]
    # The damaged field itself, read as the subset, is still damage.
    result = run(source, "--output", tmp_path / "out2", "--meta-key", "meta.url")
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"error: {source}: damaged Arrow data in rows 1-4 ")
    assert "column 'meta', read at 'meta.url': " in result.output, result.output
    assert not list(tmp_path.glob("out2*"))


def test_files_that_are_not_json_lines_say_what_they_are(tmp_path):
    # Read line by line they gave "invalid UTF-8" or "not a JSON object" at every line, with the
    # advice to skip them all (and, skipped, a dataset of no documents).
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"text": ["a b"] * 3})
    with (
        pa.OSFile(str(tmp_path / "stream.jsonl"), "wb") as f,
        pa.ipc.new_stream(f, table.schema) as w,
    ):
        w.write_table(table)
    with pa.OSFile(str(tmp_path / "file.jsonl"), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
        w.write_table(table)
    pq.write_table(table, tmp_path / "p.jsonl")
    docs = [{"text": "a"}, {"text": "b"}]
    (tmp_path / "u16.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), "utf-16")
    (tmp_path / "array.json").write_text(json.dumps(docs))
    (tmp_path / "pretty.jsonl").write_text(json.dumps(docs, indent=2))
    cases = {
        "stream.jsonl": "an Arrow file, not JSON lines: give the folder that `datasets`' save_to",
        "file.jsonl": "an Arrow file, not JSON lines",
        "p.jsonl": "a Parquet file, not JSON lines: rename it with the .parquet suffix",
        "u16.jsonl": "UTF-16 text, not UTF-8: convert it",
        "array.json": "a JSON array, not JSON lines (one object per line): convert it",
        "pretty.jsonl": "a JSON array, not JSON lines",
    }
    for name, message in cases.items():
        result = run(tmp_path / name, "--output", tmp_path / "out")
        assert result.exit_code == 1, result.output
        assert result.output.startswith(f"error: {tmp_path / name}: {message}"), result.output
    # JSON lines whose first line only is an array: that line is bad, the rest are read.
    for first in ("[1, 2]", '[{"text": "x"}]', "["):
        lines = tmp_path / "first_bad.jsonl"
        lines.write_text(first + '\n{"text": "a"}\n{"text": "b"}\n')
        result = run(lines, "--output", tmp_path / "out", "--on-error", "skip")
        assert result.exit_code == 0 and "skipped 1 bad lines" in result.output, result.output
        assert token_lists(tmp_path / "out") == expected(["a", "b"])


def test_dictionary_text_is_taken_into_64_bit_offsets():
    # A few long texts repeated over a 2,048-row batch pass 2 GiB: taken into 32-bit offsets,
    # they stopped the run ("Take operation overflowed binary array capacity").
    pa = pytest.importorskip("pyarrow")
    from pythia_data.tokenize import _string_array

    for value_type in (pa.string(), pa.large_string()):
        words = pa.DictionaryArray.from_arrays(
            pa.array([1, 0, 1]), pa.array(["a", "b"], value_type)
        )
        strings = _string_array(words)
        assert strings.type == pa.large_string() and strings.to_pylist() == ["b", "a", "b"]


# --- outputs and inputs in each other's way ---------------------------------------------------


def test_an_output_that_would_overwrite_an_input_is_refused(tmp_path):
    # `-o data` with data.bin as an input replaced the input by the tokens.
    for name, prefix in (("data.bin", "data"), ("x.subsets.json", "x"), ("y.idx", "y.bin")):
        src = tmp_path / name
        write_jsonl(src, ["precious input"])
        before = src.read_bytes()
        result = run(src, "--output", tmp_path / prefix)
        assert result.exit_code == 2, result.output
        assert f"would overwrite {src}, an input: choose another --output" in result.output
        assert src.read_bytes() == before
    with pytest.raises(ValueError, match="would overwrite"):
        tokenize_files([tmp_path / "data.bin"], tmp_path / "data")
    # Shard 1's output over an input of shard 0 (each shard checked only its own inputs).
    src = tmp_path / "cs-00001-of-00002.subsets.json"
    write_jsonl(src, ["shard 0's input"])
    write_jsonl(tmp_path / "z.jsonl", ["shard 1's input"])
    result = run(src, tmp_path / "z.jsonl", "-o", tmp_path / "cs", "--shard-index", 1,
                 "--num-shards", 2)  # fmt: skip
    assert result.exit_code == 2, result.output
    assert f"would overwrite {src}, an input" in result.output


def test_an_output_ending_with_a_slash_is_refused(tmp_path):
    # Path() dropped the slash: "-o new/" wrote new.bin beside the folder meant.
    write_jsonl(tmp_path / "a.jsonl", ["a document"])
    for output in (f"{tmp_path / 'new'}/", f"{tmp_path / 'new'}/.", f"{tmp_path / 'new'}/.."):
        result = run(tmp_path / "a.jsonl", "--output", output)
        assert result.exit_code == 2, result.output
        assert "names a folder, not a dataset prefix: give a prefix inside it" in result.output
    assert not (tmp_path / "new.bin").exists() and not (tmp_path / "new").exists()


def test_data_of_another_compression_than_its_name_says_what_it_is(tmp_path):
    # Read as text, it gave "invalid JSON: invalid UTF-8 at byte N".
    import bz2
    import gzip
    import lzma

    import zstandard

    line = json.dumps({"text": "a document"}).encode() + b"\n"
    cases = {
        "a.jsonl.bz2": (bz2.compress(line), "bzip2-compressed data, which tokenize does not read"),
        "a.jsonl.xz": (lzma.compress(line), "xz-compressed data, which tokenize does not read"),
        "z.jsonl": (zstandard.compress(line), "zstd-compressed data in a file named as plain"),
        "g.jsonl": (gzip.compress(line), "gzip-compressed data in a file named as plain text"),
        # Named for the other compression, or compressed not at all: the decoder's own words
        # were "Unknown frame descriptor" or "not a gzip stream".
        "g.jsonl.zst": (gzip.compress(line), "gzip-compressed data in a file named as zstd"),
        "z.jsonl.gz": (zstandard.compress(line), "zstd-compressed data in a file named as gzip"),
        "t.jsonl.zst": (line, "uncompressed JSON lines in a file named as zstd: rename it"),
        "t.jsonl.gz": (line, "uncompressed JSON lines in a file named as gzip: rename it"),
        "b.jsonl.zst": (
            b"\xef\xbb\xbf\r\n \n" + line,
            "uncompressed JSON lines in a file named as",
        ),
        "x.jsonl.gz": (lzma.compress(line), "xz-compressed data, which tokenize does not read"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        result = run(tmp_path / name, "--output", tmp_path / "out")
        assert result.exit_code == 1, result.output
        assert f"{tmp_path / name}: {message}" in result.output
    # With --on-error skip such a file is skipped and counted, as a corrupt stream is.
    write_jsonl(tmp_path / "ok.jsonl", ["a document"])
    result = run(tmp_path / "a.jsonl.xz", tmp_path / "ok.jsonl", "-o", tmp_path / "out",
                 "--on-error", "skip")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "skipped 1 bad lines or streams" in result.output
    assert token_lists(tmp_path / "out") == expected(["a document"])
