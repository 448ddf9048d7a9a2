"""Checksum files `verify --checksums` and `unshard --checksums` read: the forms they come in,
and lists that cover several datasets."""

from __future__ import annotations

import hashlib

import pytest
from click.testing import CliRunner
from test_indexed import shard

from pythia_data.checksums import find_expected, read_checksum_file
from pythia_data.cli import main
from pythia_data.errors import PythiaDataError

from golden import golden_case


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize(
    "line",
    [
        "{h}  {n}",  # sha256sum
        "{h} *{n}",  # sha256sum --binary
        "{h} {n}",  # one space, which sha256sum -c reads too
        "SHA256 ({n}) = {h}",  # sha256sum --tag, BSD sha256
        "{n} {h}",  # Pythia's utils/shard_hashes.txt
        "{h}  {n}\r",  # written on Windows
    ],
)
def test_the_forms_checksum_files_come_in(tmp_path, line):
    # Pythia's own list of its shards' hashes ("NAME HEX") was refused as "not a sha256sum line".
    prefix = shard(golden_case("long_docs"), tmp_path / "s", [100_001, 500_000])
    sums = tmp_path / "sums"
    sums.write_text(
        "".join(line.format(h=h, n=n) + "\n" for n, h in digests(prefix.parent).items())
    )
    code, out = run("verify", prefix, "--checksums", sums, "--quiet")
    assert code == 0 and "all 4 files match" in out, out
    code, out = run("unshard", prefix, "--checksums", sums, "-o", tmp_path / "whole", "--quiet")
    assert code == 0, out


def test_a_name_listed_twice_with_different_checksums_is_refused(tmp_path):
    sums = tmp_path / "sums"
    sums.write_text(f"{'a' * 64}  d.idx\n{'b' * 64}  d.idx\n")
    with pytest.raises(PythiaDataError, match="d.idx is listed twice, with different checksums"):
        read_checksum_file(sums)


def test_a_list_of_two_datasets_of_the_same_file_names(tmp_path, monkeypatch):
    # Pythia's standard and deduplicated preshuffled data are both document-*: a checksum file
    # of both (`sha256sum standard/* deduped/*`) checked the deduplicated files against the
    # standard ones' digests, reported every file FAILED, and unshard refused the good shards.
    standard = shard(golden_case("long_docs"), tmp_path / "standard", [100_001, 500_000])
    deduped = shard(golden_case("long_docs"), tmp_path / "deduped", [222_222, 333_333])
    sums = tmp_path / "all.sha256"
    sums.write_text(
        "".join(
            f"{h}  {prefix.parent.name}/{n}\n"
            for prefix in (standard, deduped)
            for n, h in digests(prefix.parent).items()
        )
    )
    for cwd in (tmp_path, tmp_path / "deduped", tmp_path.parent):
        monkeypatch.chdir(cwd)
        for prefix in (standard, deduped):
            code, out = run("verify", prefix, "--checksums", sums, "--quiet")
            assert code == 0 and "all 4 files match" in out, out
    code, out = run("unshard", deduped, "--checksums", sums, "--quiet")
    assert code == 0, out
    # Where no entry is the file itself and none ends like its path, no digest is guessed.
    elsewhere = tmp_path / "elsewhere" / "long_docs-00000-of-00003.bin"
    with pytest.raises(PythiaDataError, match="2 different files named long_docs-00000-of-00003"):
        find_expected(read_checksum_file(sums), elsewhere, sums)


def test_write_checksums_where_it_cannot_write_fails_before_hashing(tmp_path, monkeypatch):
    # The output was first tried once every file was hashed (an hour over Pythia's shards), and
    # a missing folder failed then, where the other commands create it.
    import pythia_data.cli.verify as verify

    prefix = shard(golden_case("long_docs"), tmp_path / "s", [100_001])
    hashed = []
    real = verify.sha256_file
    monkeypatch.setattr(verify, "sha256_file", lambda *a: hashed.append(a) or real(*a))
    (tmp_path / "file").write_text("")
    code, out = run("verify", prefix, "--write-checksums", tmp_path / "file" / "sums", "-q")
    assert code == 1 and f"its folder {tmp_path / 'file'} is not a folder" in out, out
    assert hashed == []
    code, out = run("verify", prefix, "--write-checksums", tmp_path / "new" / "sums", "-q")
    assert code == 0, out
    assert len(read_checksum_file(tmp_path / "new" / "sums")) == 3
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["sums"]


def _hash_slowly_except(fails, error, chunks):
    """A sha256_file that hashes 200 slow chunks (each noted in ``chunks``), except for the
    file ``fails`` picks, which raises ``error(path)`` once the others are under way."""
    import time

    def sha256_file(path, progress):
        if fails(path):
            time.sleep(0.05)
            raise error(path)
        for _ in range(200):
            time.sleep(0.01)
            progress(1)
            chunks.append(path)
        return "0" * 64

    return sha256_file


def test_hashing_stops_with_the_command(tmp_path, monkeypatch):
    # Ctrl-C, SIGTERM or a file failing to read left the threads hashing every file still
    # queued before the command could end: an hour over Pythia's shards.
    import pythia_data.cli.verify as verify

    prefix = shard(golden_case("long_docs"), tmp_path / "s", [100_001, 200_002, 300_003])
    chunks = []
    stub = _hash_slowly_except(lambda p: p.suffix == ".idx", lambda p: KeyboardInterrupt(), chunks)
    monkeypatch.setattr(verify, "sha256_file", stub)
    code, out = run("verify", prefix, "--write-checksums", tmp_path / "sums", "-q")
    assert code == 130 and "interrupted" in out, out
    assert len(chunks) < 100, len(chunks)
    assert not (tmp_path / "sums").exists()


def test_a_file_failing_to_read_stops_the_hashing_whichever_it_is(tmp_path, monkeypatch):
    # Results were taken in the files' order: a failure in the last shard waited for every
    # shard before it to be hashed in full (an hour over Pythia's), and the others went on.
    import pythia_data.cli.verify as verify

    prefix = shard(golden_case("long_docs"), tmp_path / "s", [100_001, 200_002, 300_003])
    chunks = []
    fails = lambda p: p.name.endswith("-00003-of-00004.bin")  # noqa: E731
    error = lambda p: OSError(5, "Input/output error", str(p))  # noqa: E731
    monkeypatch.setattr(verify, "sha256_file", _hash_slowly_except(fails, error, chunks))
    code, out = run("verify", prefix, "--write-checksums", tmp_path / "sums", "-q")
    assert code == 1 and "Input/output error" in out, out
    assert len(chunks) < 200, len(chunks)
    assert not (tmp_path / "sums").exists()


def test_a_list_of_two_datasets_names_missing_labels_of_this_one_only(tmp_path, monkeypatch):
    # The labels listed for a/document were reported MISSING for b/document, which has none:
    # verify failed on an intact dataset.
    from test_cli_indexed import write_dataset

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_dataset(tmp_path / "a" / "document", [3, 5], ("meta.pile_set_name", ["X"], [0, 0]))
    write_dataset(tmp_path / "b" / "document", [2, 4])
    sums = tmp_path / "all.sha256"
    sums.write_text(
        "".join(
            f"{h}  {folder}/{n}\n" for folder in "ab" for n, h in digests(tmp_path / folder).items()
        )
    )
    monkeypatch.chdir(tmp_path)
    for folder in "ab":
        code, out = run("verify", tmp_path / folder / "document", "--checksums", sums, "-q")
        assert code == 0 and "MISSING" not in out, out
    for ext in ("npy", "json"):
        (tmp_path / "a" / f"document.subsets.{ext}").unlink()
    code, out = run("verify", tmp_path / "a" / "document", "--checksums", sums, "-q")
    assert code == 1 and "MISSING document.subsets.npy" in out, out


def test_a_bare_name_and_a_path_of_the_same_name_each_find_their_file(tmp_path):
    # `sha256sum document* deduped/document*` in the standard folder: the deduplicated files
    # matched both their own entry and the bare one, and were refused as matching none.
    sums = tmp_path / "sums"
    sums.write_text(f"{'a' * 64}  d.idx\n{'b' * 64}  deduped/d.idx\n")
    listed = read_checksum_file(sums)
    elsewhere = tmp_path / "x"
    assert find_expected(listed, elsewhere / "deduped" / "d.idx", sums) == "b" * 64
    assert find_expected(listed, elsewhere / "standard" / "d.idx", sums) == "a" * 64


def test_writing_the_checksums_over_the_list_checked_against_is_refused(tmp_path):
    # The list took the digests of the files it checked: a corrupt shard was reported FAILED
    # once, then every later verify against the list passed.
    prefix = shard(golden_case("long_docs"), tmp_path / "s", [100_001])
    sums = tmp_path / "sums"
    assert run("verify", prefix, "--write-checksums", sums, "-q")[0] == 0
    before = sums.read_bytes()
    code, out = run("verify", prefix, "--checksums", sums, "--write-checksums", sums, "-q")
    assert code == 2 and "is the --checksums file the dataset is checked against" in out, out
    assert sums.read_bytes() == before
