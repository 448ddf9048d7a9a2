"""`pythia-data build-index / batch / export-preshuffled` end to end."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import pythia_data
from pythia_data import GPTDataset, IndexedDatasetBuilder, PreshuffledDataset
from pythia_data.cli import main

from golden import CASES, FIXTURES


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def make_dir(tmp_path):
    d = tmp_path / "pile"
    d.mkdir()
    for name, sizes in (("a", [300, 41, 700, 5, 96]), ("b", [120, 33, 80])):
        with IndexedDatasetBuilder(d / name, np.uint16) as b:
            for i, n in enumerate(sizes):
                b.add_document((np.arange(n) + 17 * i) % 50000)
    return d


ARGS = ("--train-iters", 5, "--global-batch-size", 4, "--seq-length", 16, "--seed", 77)
ARGS_KW = dict(train_iters=5, global_batch_size=4, seq_length=16, seed=77)


def test_build_index_directory_then_reuse_then_refuse(tmp_path):
    d = make_dir(tmp_path)
    code, out = run("build-index", d, *ARGS, "-q")
    assert code == 0, out
    # ceil(5·4·1.005) = 21 samples for each dataset found, GPT-NeoX's names.
    for name in ("a", "b"):
        assert (d / f"{name}_train_0_indexmap_21ns_16sl_77s_doc_idx.npy").exists()
    assert "epochs" in out and "samples requested 21" in out and "training rows [0, 20)" in out
    code, out = run("build-index", d / "a", *ARGS, "-q")
    assert code == 0 and "reused existing index" in out
    # Replace a with other data under the same name: the index no longer matches.
    with IndexedDatasetBuilder(d / "a", np.uint16) as b:
        for n in (10, 900, 3):
            b.add_document(np.arange(n))
    code, out = run("build-index", d / "a.idx", *ARGS, "-q")
    assert (
        code == 1
        and out.count("\n") == 1
        and out.startswith("error:")
        and "other parameters" in out
    )
    assert "Traceback" not in out
    code, out = run("build-index", d / "a", *ARGS, "-q", "--overwrite")
    assert code == 0 and "built index" in out


def test_batch_notes_a_step_no_run_of_train_iters_trained(tmp_path):
    # GPT-NeoX's index holds ceil(iters·B·1.005) rows: with 200 steps of 2, row 400 and 401
    # make a step 200 that exists but that no step of the run (0..199) trains; batch showed
    # it without a word.
    d = make_dir(tmp_path)
    opts = ("--train-iters", 200, "--global-batch-size", 2, "--seq-length", 8)
    assert run("build-index", d / "a", *opts, "-q")[0] == 0
    code, out = run("batch", d / "a", *opts, "--step", 199)
    assert code == 0 and "note:" not in out, out
    code, out = run("batch", d / "a", *opts, "--step", 198, "--end-step", 200)
    assert code == 0, out
    assert "note: a run of --train-iters 200 trains steps 0..199: step 200 lies in" in out
    assert "step 200: rows [400, 402)" in out


def test_batch_notes_a_valid_or_test_step_no_evaluation_read(tmp_path):
    # As for train: valid (and test) indexes hold more rows than the run's evaluations read,
    # and batch showed a step past them (or any step, with --eval-iters 0) without a word.
    d = make_dir(tmp_path)
    opts = ("--train-iters", 20, "--global-batch-size", 2, "--seq-length", 8)
    valid = (*opts, "--split", "valid", "--eval-interval", 10, "--eval-iters", 2)
    assert run("build-index", d / "a", *valid, "-q")[0] == 0
    code, out = run("batch", d / "a", *valid, "--step", 5)  # (20 // 10 + 1) · 2 = 6 steps
    assert code == 0 and "note:" not in out, out
    code, out = run("batch", d / "a", *valid, "--step", 5, "--end-step", 7)
    assert code == 0, out
    assert "evaluates steps 0..5 of valid: step 6..7 lies beyond them" in out
    test = (*opts, "--split", "test", "--eval-iters", 0)
    assert run("build-index", d / "a", *test, "-q")[0] == 0
    code, out = run("batch", d / "a", *test, "--step", 0)
    assert code == 0 and "evaluates no step of test: step 0 lies beyond" in out, out


# 100 steps of 2 rows of 8 tokens; validation every 40 steps for 3 steps.
VALID_OPTS = (
    "--train-iters", 100, "--global-batch-size", 2, "--seq-length", 8,
    "--eval-interval", 40, "--eval-iters", 3,
)  # fmt: skip


def test_build_index_splits_and_blend(tmp_path):
    d = make_dir(tmp_path)
    splits = ("--split", "train", "--split", "valid", "--split", "test")
    code, out = run("build-index", d / "a", *splits, *VALID_OPTS, "-q")
    assert code == 0, out
    # valid: (100 // 40 + 1)·3 = 9 steps → ceil(9·2·1.005) = 19; test: ceil(3·2·1.005) = 7.
    assert (d / "a_valid_0_indexmap_19ns_8sl_1234s_doc_idx.npy").exists()
    assert (d / "a_test_0_indexmap_7ns_8sl_1234s_doc_idx.npy").exists()
    assert (d / "a_train_0_indexmap_201ns_8sl_1234s_doc_idx.npy").exists()
    code, out = run(
        "build-index", d, "--weights", "3,1", *ARGS, "-q", "--cache-dir", tmp_path / "blend"
    )
    assert code == 0, out
    # Components get ceil(20 · w · 1.005): 16 and 6.
    assert (tmp_path / "blend" / "a_train_0_indexmap_16ns_16sl_77s_doc_idx.npy").exists()
    # GPT-NeoX names component i's index train_{i} (build_weighted_datasets).
    assert (tmp_path / "blend" / "b_train_1_indexmap_6ns_16sl_77s_doc_idx.npy").exists()
    code, out = run("build-index", d, "--weights", "1", *ARGS, "-q")
    assert code == 2 and "2 datasets" in out  # a usage error


def test_hidden_files_and_folders_named_idx_are_no_datasets_of_a_folder(tmp_path):
    # A copy from macOS leaves AppleDouble files (._a.idx) beside the data: they were counted
    # as datasets, so --weights had to give them a weight and the build then failed on them.
    d = make_dir(tmp_path)
    shutil.copy(d / "a.idx", d / "._a.idx")
    (d / "notes.idx").mkdir()
    blend_opts = ("--weights", "3,1", *ARGS, "-q")
    code, out = run("build-index", d, *blend_opts)
    assert code == 0 and "blend of 2 datasets" in out, out
    code, out = run("batch", d, "--step", 0, *blend_opts[:-1])
    assert code == 0 and out.startswith("step 0:"), out


def test_build_index_of_a_blend_says_where_its_rows_end(tmp_path):
    # It printed GPT-NeoX's length alone, the sum of the components' lengths; the order reaches
    # the end of one component before that, and batch stopped there without a word before.
    d = make_dir(tmp_path)
    code, out = run("build-index", d, "--weights", "3,1", *ARGS, "--cache-dir", tmp_path / "b")
    assert code == 0, out
    blend = pythia_data.build_blended_index(
        [d / "a", d / "b"], [3, 1], num_samples=20, seq_length=16, seed=77, cache_dir=tmp_path / "b"
    )
    rows = len(pythia_data.BlendedDataset.from_blend(blend))
    assert rows < blend.size
    assert f"length {blend.size:,} (GPT-NeoX's); rows [0, {rows:,}) readable" in out, out


def test_batch_reads_the_blend_build_index_built(tmp_path):
    # A blend built with build-index --weights could be read from Python only.
    d = make_dir(tmp_path)
    blend_opts = ("--weights", "3,1", *ARGS, "--cache-dir", tmp_path / "blend")
    o = tmp_path / "steps.npy"
    code, out = run("batch", d, "--step", 0, "-o", o, *blend_opts)
    assert code == 1 and "build the blend with `pythia-data build-index" in out, out
    assert f"{d} --weights 3,1` and the same options)" in out and out.count("(build") == 1, out
    for split in ("train", "valid"):
        split_opts = ("--split", split, "--eval-interval", 2, "--eval-iters", 1)
        assert run("build-index", d, *blend_opts, *split_opts, "-q")[0] == 0
        code, out = run("batch", d, "--step", 1, "--end-step", 2, "-o", o, *blend_opts, *split_opts)
        assert code == 0, out
        blend = pythia_data.build_blended_index(
            [d / "a", d / "b"],
            [3, 1],
            name="train_0" if split == "train" else "valid_0",
            num_samples=(5 if split == "train" else (5 // 2 + 1) * 1) * 4,
            seq_length=16,
            seed=77,
            cache_dir=tmp_path / "blend",
        )
        want = pythia_data.BlendedDataset.from_blend(blend).rows(4, 12)
        np.testing.assert_array_equal(np.load(o), want.reshape(2, 4, 17))
    code, out = run("batch", d, "--step", 0, *blend_opts[:1], "1", *ARGS)
    assert code == 2 and "2 datasets" in out, out
    # A blend built before its components were named train_{i}: every one was train_0.
    for f in (tmp_path / "blend").glob("b_train_1_*"):
        f.rename(f.with_name(f.name.replace("b_train_1_", "b_train_0_")))
    code, out = run("batch", d, "--step", 0, "-o", o, *blend_opts)
    assert code == 1 and "named every component so; GPT-NeoX names this one train_1" in out, out


def test_bad_seed_and_missing_path(tmp_path):
    d = make_dir(tmp_path)
    code, out = run("build-index", d / "a", "--seed", 2**32)
    assert code == 2 and "not in the range" in out and "Traceback" not in out, out
    code, out = run("build-index", tmp_path / "nope")
    assert code == 1 and "nope.idx: no such index file" in out


def golden_args(name):
    c = CASES[name]
    return (
        "--num-samples",
        c["num_samples"],
        "--seq-length",
        c["seq_length"],
        "--seed",
        c["seed"],
        "--cache-dir",
        FIXTURES,
    )


def test_batch_npy_and_summary(tmp_path):
    from golden import golden_case

    name = "lognormal_e1"
    prefix = golden_case(name)
    ds = GPTDataset(prefix, num_samples=2000, seq_length=512, seed=1234, cache_dir=FIXTURES)
    out = tmp_path / "steps.npy"
    code, text = run(
        "batch",
        prefix,
        "--step",
        2,
        "--end-step",
        4,
        "--batch-size",
        256,
        "--output",
        out,
        *golden_args(name),
    )
    assert code == 0, text
    got = np.load(out)
    assert got.shape == (3, 256, 513) and got.dtype == np.uint16
    np.testing.assert_array_equal(got.reshape(-1, 513), ds.rows(2 * 256, 5 * 256))
    code, text = run(
        "batch",
        prefix,
        "--step",
        1,
        "--batch-size",
        256,
        "--output",
        out,
        "--int64",
        *golden_args(name),
    )
    one = np.load(out)
    assert code == 0 and one.shape == (256, 513) and one.dtype == np.int64
    code, text = run("batch", prefix, "--step", 0, "--batch-size", 256, *golden_args(name))
    assert code == 0 and f"token sum {int(ds.batch(0, 256).sum(dtype=np.int64))}" in text
    # 5,639 rows hold steps 0..21 of 256.
    code, text = run("batch", prefix, "--step", 22, "--batch-size", 256, *golden_args(name))
    assert code == 1 and "beyond the index" in text and "0..21" in text
    # A wrong argument: a usage error (status 2), as the README promises.
    code, text = run("batch", prefix, "--step", 3, "--end-step", 2, *golden_args(name))
    assert code == 2 and "--end-step" in text and "before --step 3" in text


def test_export_preshuffled_then_batch(tmp_path):
    from golden import golden_case

    name = "long_docs"
    prefix = golden_case(name)
    code, text = run(
        "export-preshuffled", prefix, tmp_path / "document", "--rows", 128, *golden_args(name), "-q"
    )
    assert code == 0, text
    pre = PreshuffledDataset(tmp_path / "document")
    # Rows with no document ends, as Pythia's document.idx: info said "documents 0".
    code, text = run("info", tmp_path / "document")
    assert code == 0 and "none recorded (doc_idx [0] alone" in text, text
    ds = GPTDataset(prefix, num_samples=150, seq_length=2048, seed=1234, cache_dir=FIXTURES)
    np.testing.assert_array_equal(pre.rows(0, 128), ds.rows(0, 128))
    out = tmp_path / "b.npy"
    code, text = run(
        "batch", tmp_path / "document", "--preshuffled", "--step", 3, "--batch-size", 32, "-o", out
    )
    assert code == 0, text
    np.testing.assert_array_equal(np.load(out), ds.batch(3, 32))


def test_help_names_only_options_the_command_has():
    # export-preshuffled's --num-samples help sent the reader to "the --split's steps", an
    # option it does not have.
    for command in ("build-index", "batch", "export-preshuffled"):
        code, text = run(command, "--help")
        assert code == 0, text
        options = set(re.findall(r"^\s+(?:-\w, )?(--[\w-]+)", text, re.M))
        mentioned = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", text))
        assert mentioned <= options, (command, mentioned - options)


def test_batch_decode(tmp_path):
    from pythia_data import tokenizer

    # Data tokenized with the bundled tokenizer, so every id is in its vocabulary.
    tok = tokenizer.Tokenizer.from_file(None)
    texts = ["The quick brown fox jumps over the lazy dog. " * 3, "Pythia\r\nrows, in order.\n"]
    with IndexedDatasetBuilder(tmp_path / "t", np.uint16) as b:
        for t in texts * 4:
            b.add_document(np.append(tok.encode(t), tok.eod_id))
    opts = ("--train-iters", 3, "--global-batch-size", 2, "--seq-length", 16, "--seed", 5)
    assert run("build-index", tmp_path / "t", *opts, "-q")[0] == 0
    ds = GPTDataset(tmp_path / "t", train_iters=3, global_batch_size=2, seq_length=16, seed=5)
    out = tmp_path / "step1.txt"
    code, text = run("batch", tmp_path / "t", "--step", 1, "--decode", "-o", out, *opts)
    assert code == 0, text
    assert text == f"wrote steps 1..1 (2 rows) as text to {out}\n"
    rows = [ds[k].astype(np.int64).tolist() for k in (2, 3)]
    want = "".join(
        f"=== step 1 row {k} ===\n{tok.decode(r, skip_special_tokens=False)}\n"
        for k, r in zip((2, 3), rows, strict=True)
    )
    # Bytes, not read_text: universal newlines would turn a decoded "\r" into "\n".
    got = out.read_bytes().decode("utf-8")
    assert got == want
    # The end of each document shows: two documents in one row no longer run together.
    eods = sum(r.count(tok.eod_id) for r in rows)
    assert eods > 0 and got.count("<|endoftext|>") == eods
    assert "<|endoftext|>" in run("batch", "--help")[1]


def test_batch_decode_writes_step_by_step(tmp_path, monkeypatch):
    # The text of the whole range was held until the end: gigabytes for a few hundred steps of
    # Pythia's shape (about 8 MB of text each), and nothing written until then.
    from pythia_data import tokenizer

    with IndexedDatasetBuilder(tmp_path / "t", np.uint16) as b:
        for n in (50, 70, 30, 90):
            b.add_document(np.arange(n) % 1000)
    opts = ("--train-iters", 4, "--global-batch-size", 2, "--seq-length", 16, "--seed", 5)
    assert run("build-index", tmp_path / "t", *opts, "-q")[0] == 0
    out = tmp_path / "steps.txt"
    row_text = "x" * 100_000  # more than a file buffer: each step reaches the disk
    on_disk = []

    def decode(self, ids, skip_special_tokens=True):
        on_disk.append(sum(p.stat().st_size for p in tmp_path.glob(".steps.txt.tmp-*")))
        return row_text

    monkeypatch.setattr(tokenizer.Tokenizer, "decode", decode)
    code, text = run(
        "batch", tmp_path / "t", "--step", 0, "--end-step", 3, "--decode", "-o", out, *opts
    )
    assert code == 0, text
    assert out.read_text().count(row_text) == 8
    # When step 3's first row is decoded, steps 0-2 (6 rows) are in the file already.
    assert on_disk[6] >= 6 * len(row_text), on_disk


def test_batch_decode_refuses_ids_outside_the_vocabulary(tmp_path):
    # decode() skips such ids: the text came out silently shortened.
    from golden import golden_case

    name = "long_docs"  # random uint16 ids, most beyond GPT-NeoX-20B's 50,277
    prefix = golden_case(name)
    ds = GPTDataset(prefix, num_samples=150, seq_length=2048, seed=1234, cache_dir=FIXTURES)
    assert (ds[2] >= 50277).any()
    out = tmp_path / "step1.txt"
    code, text = run(
        "batch", prefix, "--step", 1, "--batch-size", 2, "--decode", "-o", out, *golden_args(name)
    )
    assert code == 1 and text.count("\n") == 1 and "Traceback" not in text, text
    bad = int(ds[2][ds[2] >= 50277][0])
    assert f"row 2 (step 1) holds token id {bad}," in text
    assert "not made with this tokenizer" in text and "--tokenizer" in text
    assert not out.exists()
    # int32 data can hold negative ids.
    with IndexedDatasetBuilder(tmp_path / "neg", np.int32) as b:
        b.add_document(np.full(40, -5))
    opts = ("--num-samples", 2, "--seq-length", 8)
    assert run("build-index", tmp_path / "neg", *opts, "-q")[0] == 0
    code, text = run("batch", tmp_path / "neg", "--step", 0, "--batch-size", 1, "--decode", *opts)
    assert code == 1 and "row 0 (step 0) holds token id -5," in text, text


def test_batch_reads_the_valid_and_test_index_build_index_built(tmp_path):
    # batch sized every index as the train split's, so it never found valid_0 / test_0.
    d = make_dir(tmp_path)
    code, out = run("build-index", d / "a", "--split", "valid", "--split", "test", *VALID_OPTS)
    assert code == 0, out
    # valid: (100 // 40 + 1)·3 = 9 steps → 19 samples; test: 3 steps → 7 samples.
    for split, ns, step in (("valid", 19, 8), ("test", 7, 2)):
        ds = GPTDataset(d / "a", name=f"{split}_0", num_samples=ns, seq_length=8, seed=1234)
        o = tmp_path / f"{split}.npy"
        code, text = run("batch", d / "a", "--split", split, "--step", step, "-o", o, *VALID_OPTS)
        assert code == 0, text
        np.testing.assert_array_equal(np.load(o), ds.rows(2 * step, 2 * step + 2))


def test_build_index_num_samples_for_one_split(tmp_path):
    # --split valid ignored an explicit --num-samples, and called its rows "training rows".
    d = make_dir(tmp_path)
    code, out = run("build-index", d / "a", "--split", "valid", "--num-samples", 30, *VALID_OPTS)
    assert code == 0, out
    assert (d / "a_valid_0_indexmap_30ns_8sl_1234s_doc_idx.npy").exists()
    # 9 valid steps of 2 rows are used.
    assert "validation rows [0, 18)" in out and "training rows" not in out
    ds = GPTDataset(d / "a", name="valid_0", num_samples=30, seq_length=8, seed=1234)
    o = tmp_path / "v.npy"
    code, text = run(
        "batch", d / "a", "--split", "valid", "--num-samples", 30, "--step", 4, "-o", o, *VALID_OPTS
    )
    assert code == 0, text
    np.testing.assert_array_equal(np.load(o), ds.rows(8, 10))
    code, out = run("build-index", d / "a", "--split", "test", *VALID_OPTS)
    assert code == 0 and "test rows [0, 6)" in out, out
    # One count cannot size two splits: a usage error.
    code, out = run(
        "build-index", d / "a", "--split", "valid", "--split", "test", "--num-samples", 30
    )
    assert code == 2 and "--num-samples sizes one split" in out, out


def test_batch_with_no_full_step_says_so(tmp_path):
    d = make_dir(tmp_path)
    opts = ("--num-samples", 3, "--seq-length", 16)
    assert run("build-index", d / "b", *opts, "-q")[0] == 0
    n = len(GPTDataset(d / "b", num_samples=3, seq_length=16))
    code, text = run("batch", d / "b", *opts, "--step", 0, "--batch-size", n + 1)
    assert code == 1 and f"{n} rows hold no full step of {n + 1} rows" in text, text
    assert "0..-1" not in text


def test_batch_on_a_directory_uses_the_global_batch_size(tmp_path):
    d = tmp_path / "one"
    d.mkdir()
    with IndexedDatasetBuilder(d / "sample", np.uint16) as b:
        for i, n in enumerate([700, 90, 1500, 33, 410, 820]):
            b.add_document((np.arange(n) * 3 + i) % 50000)
    opts = ("--train-iters", 6, "--global-batch-size", 8, "--seq-length", 32)
    assert run("build-index", d, *opts, "-q")[0] == 0
    out = tmp_path / "s.npy"
    code, text = run("batch", d, *opts, "--step", 5, "-o", out)
    assert code == 0, text
    ds = GPTDataset(d / "sample", train_iters=6, global_batch_size=8, seq_length=32)
    np.testing.assert_array_equal(np.load(out), ds.rows(40, 48))
    make_dir(tmp_path)
    code, text = run("batch", tmp_path / "pile", *opts, "--step", 0)
    assert code == 1 and "holds 2 datasets" in text
    assert text.endswith(", or blend them with --weights\n"), text


@pytest.mark.parametrize(
    "sig, quiet", [(signal.SIGTERM, False), (signal.SIGTERM, True), (signal.SIGINT, True)]
)
def test_interrupted_build_index_leaves_no_file(tmp_path, sig, quiet):
    # A scheduler's SIGTERM, or Ctrl-C on a quiet (-q) run, must stop the build and remove its
    # temporary files: neither the index nor a hidden `.NAME.tmp-PID` may remain.
    prefix = tmp_path / "d"
    with IndexedDatasetBuilder(prefix, np.uint16) as b:
        for n in (500, 30, 700, 90, 1000):
            b.add_document(np.arange(n))
    cmd = [sys.executable, "-c", "from pythia_data.cli import run; run()", "build-index"]
    cmd += [str(prefix), "--num-samples", "100000000", "--seq-length", "1"] + ["-q"] * quiet
    env = {**os.environ, "PYTHONPATH": str(Path(pythia_data.__file__).resolve().parents[1])}

    def default_sigint():  # a background job's shell may have set SIGINT to ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint
    )

    def writing(p: Path) -> bool:
        # A temporary being written: the build's write probe (empty, gone at once) does not
        # count, or the signal could come too late to find the build running.
        try:
            return p.name.startswith(".") and p.stat().st_size > 0
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if any(writing(p) for p in tmp_path.iterdir()):
            break
        time.sleep(0.005)
    proc.send_signal(sig)
    _, stderr = proc.communicate()
    if proc.returncode == 0 or b"are complete" in stderr:
        pytest.skip("the build finished before it could be interrupted")
    assert proc.returncode == 128 + sig, stderr
    assert b"interrupted" in stderr and b"Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.bin", "d.idx"]


def test_blend_keeps_separate_last_epoch(tmp_path):
    # --separate-last-epoch was silently dropped when --weights was given.
    d = make_dir(tmp_path)  # b: 233 tokens = 14 samples of 16 per epoch
    args = ("--num-samples", 31, "--seq-length", 16, "--seed", 77, "--weights", "1,1", "-q")
    code, out = run("build-index", d, *args, "--separate-last-epoch")
    assert code == 0, out
    # b gets ceil(31 · 0.5 · 1.005) = 16 samples: a second epoch of 2, Megatron-LM's case.
    assert "separate-last-epoch variant" in out, out
    code, out = run("build-index", d, *args, "--overwrite")
    assert code == 0 and "separate-last-epoch variant" not in out, out


def _write(prefix: Path, sizes: list[int], shift: int = 0) -> None:
    with IndexedDatasetBuilder(prefix, np.uint16) as b:
        for i, n in enumerate(sizes):
            b.add_document((np.arange(n) + 17 * i + shift) % 50000)


def test_batch_refuses_an_index_built_for_other_documents(tmp_path):
    # build-index refused these stale indexes, but batch and GPTDataset read them silently.
    d = tmp_path / "d"
    args = ("--num-samples", 50, "--seq-length", 16, "--seed", 3)
    _write(d, [30, 41, 70, 9, 31])
    assert run("build-index", d, *args, "-q")[0] == 0
    assert run("batch", d, *args, "--step", 0, "--batch-size", 4)[0] == 0
    # One more document: the index covers the first five only.
    _write(d, [30, 41, 70, 9, 31, 12])
    code, out = run("batch", d, *args, "--step", 0, "--batch-size", 4)
    assert code == 1 and "built when" in out and "held 5 documents; it now holds 6" in out, out
    assert "--overwrite" in out
    assert run("build-index", d, *args, "-q")[0] != 0  # as build-index says
    # The same sizes, other tokens are fine (the index holds positions, not tokens); the same
    # count and total with other sizes are not.
    _write(d, [30, 41, 70, 9, 31], shift=5)
    assert run("batch", d, *args, "--step", 0, "--batch-size", 4)[0] == 0
    _write(d, [41, 30, 70, 9, 31])
    code, out = run("batch", d, *args, "--step", 0, "--batch-size", 4)
    assert code == 1 and "document sizes of" in out and "differ" in out, out
    with pytest.raises(pythia_data.PythiaDataError, match="document sizes"):
        GPTDataset(d, num_samples=50, seq_length=16, seed=3)


def test_batch_output_onto_the_dataset_subsets_or_the_index_record_is_refused(tmp_path):
    sample = tmp_path / "s"
    code, out = run("tokenize", "-q", pythia_data.data.SAMPLE_CORPUS, "-o", sample)
    assert code == 0, out
    args = ("--num-samples", 8, "--seq-length", 16, "--seed", 1)
    assert run("build-index", sample, *args, "-q")[0] == 0
    record = next(tmp_path.glob("s_*_meta.json"))
    for target in (f"{sample}.subsets.npy", f"{sample}.subsets.json", record):
        before = Path(target).read_bytes()
        text = () if str(target).endswith(".npy") else ("--decode",)  # rows go to .npy only
        code, out = run("batch", sample, *args, "--step", 0, "--batch-size", 2, *text, "-o", target)
        assert code == 1 and "would overwrite" in out, out
        assert Path(target).read_bytes() == before


def test_batch_notes_an_index_in_megatron_order(tmp_path):
    d = tmp_path / "d"
    _write(d, [120, 33, 80])  # 233 tokens = 14 samples of 16 per epoch: a 2-sample last epoch
    args = ("--num-samples", 16, "--seq-length", 16, "--seed", 3)
    code, out = run("build-index", d, *args, "--separate-last-epoch")
    assert code == 0 and "separate-last-epoch variant" in out, out
    code, out = run("batch", d, *args, "--step", 0, "--batch-size", 4)
    assert code == 0 and "note: this index was built with --separate-last-epoch" in out, out
    assert run("build-index", d, *args, "--overwrite", "-q")[0] == 0
    code, out = run("batch", d, *args, "--step", 0, "--batch-size", 4)
    assert code == 0 and "separate-last-epoch" not in out, out


def test_a_read_only_data_folder_names_cache_dir(tmp_path):
    # The error named a hidden temp file and no way out.
    import shutil

    ro = tmp_path / "ro"
    _write(ro / "d", [30, 41, 70, 9, 31])
    ro.chmod(0o555)
    cmd = [sys.executable, "-m", "pythia_data.cli", "build-index", str(ro / "d"),
           "--num-samples", "20", "--seq-length", "16", "-q"]  # fmt: skip
    if os.geteuid() == 0:  # root writes anywhere unless it drops that capability
        if shutil.which("capsh") is None:
            pytest.skip("running as root without capsh to drop CAP_DAC_OVERRIDE")
        cmd = ["capsh", "--drop=cap_dac_override,cap_dac_read_search", "--", "-c",
               " ".join(map(shlex.quote, cmd))]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    ro.chmod(0o755)
    assert r.returncode == 1, r.stderr
    assert "cannot be written beside the data; write it elsewhere with --cache-dir" in r.stderr
    code, out = run("build-index", ro / "d", "--num-samples", 20, "--seq-length", 16,
                    "--cache-dir", tmp_path / "cache", "-q")  # fmt: skip
    assert code == 0, out


def test_wrong_seed_or_weights_are_usage_errors(tmp_path):
    # They exited with status 1 like a data error; batch did not check the seed at all.
    d = make_dir(tmp_path)
    for args in (
        ("build-index", d / "a", "--seed", -1),
        ("build-index", d / "a", "--seed", 2**32),
        ("batch", d / "a", "--seed", 99999999999, "--step", 0),
        ("build-index", d, "--weights", "1,2,3", *ARGS),
        ("build-index", d, "--weights", "1,x", *ARGS),
        # These were left to the blend, which refused them as a data error (status 1).
        ("build-index", d, "--weights", "0,0", *ARGS),
        ("build-index", d, "--weights", "-1,2", *ARGS),
        ("build-index", d, "--weights", "nan,1", *ARGS),
        ("build-index", d, "--weights", "inf,1", *ARGS),
        ("build-index", d, "--weights", "1e308,1e308", *ARGS),
        ("batch", d, "--weights", "0,0", "--step", 0, *ARGS),
    ):
        code, out = run(*args)
        assert code == 2, (args, out)
        assert "--seed" in out or "--weights" in out, out


def test_an_index_of_a_document_range_opens_by_its_parameters(tmp_path):
    # Refused after the stale-index check: "built for documents [3, 5), but d now holds 5".
    from pythia_data.index import build_index

    d = tmp_path / "d"
    _write(d, [30, 41, 70, 9, 31])
    build_index(d, name="valid_0", num_samples=10, seq_length=8, seed=2, documents=(3, 5))
    ds = GPTDataset(d, name="valid_0", num_samples=10, seq_length=8, seed=2)
    assert len(ds) >= 10 and ds.record["items"] == 5 and ds.record["documents"] == [3, 5]


def _index_with_an_earlier_record(tmp_path) -> tuple[Path, tuple]:
    """An index of five documents whose record, as earlier versions wrote it, has no "items"."""
    import json

    d = tmp_path / "d"
    _write(d, [30, 41, 70, 9, 31])
    args = ("--num-samples", 20, "--seq-length", 16, "--seed", 3)
    assert run("build-index", d, *args, "-q")[0] == 0
    record = next(tmp_path.glob("d_*_meta.json"))
    meta = json.loads(record.read_text())
    del meta["items"]
    record.write_text(json.dumps(meta))
    return d, args


def test_a_record_without_items_from_an_earlier_version_is_still_reused(tmp_path):
    d, args = _index_with_an_earlier_record(tmp_path)
    code, out = run("build-index", d, *args)
    assert code == 0 and "reused" in out, out
    assert run("batch", d, *args, "--step", 0, "--batch-size", 4)[0] == 0


def test_an_array_swapped_in_from_another_build_of_the_same_shape_is_refused(tmp_path):
    # A shuffle_idx of another seed has the shape and dtype of this one: every check passed,
    # and GPTDataset and batch read other rows than the record describes, silently.
    d = tmp_path / "d"
    _write(d, [30, 41, 70, 9, 31])
    args = ("--num-samples", 20, "--seq-length", 16)
    assert run("build-index", d, *args, "--seed", 3, "-q")[0] == 0
    assert run("build-index", d, *args, "--seed", 4, "-q")[0] == 0
    mine = next(tmp_path.glob("d_*_3s_shuffle_idx.npy"))
    other = next(tmp_path.glob("d_*_4s_shuffle_idx.npy"))
    assert np.load(other).shape == np.load(mine).shape
    assert other.read_bytes() != mine.read_bytes()
    shutil.copyfile(other, mine)
    record = next(tmp_path.glob("d_*_3s_meta.json"))
    want = f"{mine}: not the array the build recorded in {record} wrote"
    with pytest.raises(pythia_data.PythiaDataError, match=re.escape(want)):
        GPTDataset(d, num_samples=20, seq_length=16, seed=3)
    for cmd in (("batch", "--step", 0, "--batch-size", 4), ("build-index",)):
        code, out = run(cmd[0], d, *args, "--seed", 3, *cmd[1:])
        assert code == 1 and want in out, out
        assert "--overwrite" in out and "put back the file" in out, out
        assert len(out.strip().splitlines()) == 1, out
    assert run("build-index", d, *args, "--seed", 3, "--overwrite", "-q")[0] == 0
    assert len(GPTDataset(d, num_samples=20, seq_length=16, seed=3)) > 0


def _built_with_a_record(tmp_path):
    """A small dataset, its index built, and the index's record."""
    d = tmp_path / "d"
    _write(d, [30, 41, 70, 9, 31])
    args = ("--num-samples", 20, "--seq-length", 16, "--seed", 3)
    assert run("build-index", d, *args, "-q")[0] == 0
    return d, args, next(tmp_path.glob("d_*_meta.json"))


def test_a_record_without_array_digests_from_an_earlier_version_still_opens(tmp_path):
    import json

    d, args, record = _built_with_a_record(tmp_path)
    meta = json.loads(record.read_text())
    del meta["sampled_sha256"]
    record.write_text(json.dumps(meta))
    before = record.read_bytes()
    assert GPTDataset(d, num_samples=20, seq_length=16, seed=3).record == meta
    assert run("batch", d, *args, "--step", 0, "--batch-size", 4)[0] == 0
    code, out = run("build-index", d, *args)
    assert code == 0 and "reused" in out, out
    assert record.read_bytes() == before


def test_the_array_digests_are_the_same_for_every_build(tmp_path):
    import json

    d, args, record = _built_with_a_record(tmp_path)
    first = record.read_text()
    digests = json.loads(first)["sampled_sha256"]
    for kind in ("doc_idx", "sample_idx", "shuffle_idx"):
        (array,) = tmp_path.glob(f"d_*_{kind}.npy")
        assert digests[kind] == pythia_data._core.sampled_digest(array)
    assert run("build-index", d, *args, "--overwrite", "-q")[0] == 0
    assert record.read_text() == first
    cache = tmp_path / "cache"
    assert run("build-index", d, *args, "--cache-dir", cache, "-q")[0] == 0
    assert next(cache.glob("d_*_meta.json")).read_text() == first


def test_a_build_killed_while_putting_files_in_place_is_rebuilt_not_reused(tmp_path):
    # The record was removed first: arrays of two builds and no record passed for an index
    # GPT-NeoX built, and the rerun reused the mix.
    d = tmp_path / "d"
    _write(d, [120, 33, 80])
    args = ("--num-samples", 16, "--seq-length", 16, "--seed", 3)
    assert run("build-index", d, *args, "-q")[0] == 0
    paths = sorted(tmp_path.glob("d_*_idx.npy"))
    clean = {p.name: p.read_bytes() for p in paths}
    assert run("build-index", d, *args, "--overwrite", "--separate-last-epoch", "-q")[0] == 0
    # As a kill after the first rename leaves it: one array of the new build, the rest old.
    other = next(p for p in paths if "shuffle" in p.name)
    other.write_bytes(clean[other.name])
    record = next(tmp_path.glob("d_*_meta.json"))
    record.write_text('{"format": "pythia-suite gpt2 index 1", "building": true}\n')
    with pytest.raises(pythia_data.PythiaDataError, match="^[^(]*stopped while putting its files"):
        GPTDataset(d, num_samples=16, seq_length=16, seed=3)
    code, out = run("build-index", d, *args)
    assert code == 0 and "reused" not in out, out
    assert {p.name: p.read_bytes() for p in paths} == clean


def test_opening_an_index_waits_while_a_build_puts_files_in_place(tmp_path):
    import fcntl
    import threading

    d = tmp_path / "d"
    _write(d, [30, 41, 70, 9, 31])
    args = ("--num-samples", 20, "--seq-length", 16, "--seed", 3)
    assert run("build-index", d, *args, "-q")[0] == 0
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as build-index holds it while renaming
    opened = threading.Event()
    t = threading.Thread(
        target=lambda: (GPTDataset(d, num_samples=20, seq_length=16, seed=3), opened.set())
    )
    t.start()
    assert not opened.wait(0.5)
    os.close(fd)
    assert opened.wait(10)
    t.join()


def test_two_threads_building_one_index_both_succeed(tmp_path):
    # They wrote the same temporaries (named by process): a missing file, or a "building"
    # record left behind.
    import threading

    d = tmp_path / "d"
    _write(d, [300, 41, 700, 5, 96] * 40)
    kw = dict(num_samples=200_000, seq_length=16, seed=7)
    errors = []

    def build():
        try:
            GPTDataset(d, build=True, **kw)
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    reference = tmp_path / "ref"
    reference.mkdir()
    for f in (d.with_suffix(".bin"), d.with_suffix(".idx")):
        (reference / f.name).write_bytes(f.read_bytes())
    GPTDataset(reference / "d", build=True, **kw)
    for f in tmp_path.glob("d_*"):
        assert f.read_bytes() == (reference / f.name).read_bytes(), f.name


def _another_host(cmd: list[str]) -> list[str]:
    """``cmd`` as a job on another host sharing the folder would run it: its own host name and
    PID namespace (it may have this process's PIDs, and cannot see them). Unchanged where user
    namespaces are not allowed."""
    wrap = ["unshare", "-Urpfu", "--mount-proc", "sh", "-c", 'hostname other-host && exec "$@"']
    try:
        subprocess.run([*wrap, "sh", "true"], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return cmd
    return [*wrap, "sh", *cmd]


def test_two_jobs_building_one_index_at_once_both_succeed(tmp_path):
    # Jobs on two hosts sharing the folder took each other's `.NAME.tmp-PID` for a killed run's
    # (that PID was not running on their host) and removed it: one failed with "No such file".
    d = tmp_path / "d"
    _write(d, [300, 41, 700, 5, 96] * 40)
    cmd = [sys.executable, "-c", "from pythia_data.cli import run; run()", "build-index", str(d)]
    cmd += ["--num-samples", "200000", "--seq-length", "16", "--seed", "7", "-q"]
    env = {**os.environ, "PYTHONPATH": str(Path(pythia_data.__file__).resolve().parents[1])}
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    single = {p.name: p.read_bytes() for p in tmp_path.glob("d_*")}
    assert len(single) == 4  # the three arrays and the record
    for _ in range(6):
        for p in tmp_path.glob("d_*"):
            p.unlink()
        jobs = [
            subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for c in (cmd, _another_host(cmd))
        ]
        for job in jobs:
            out, _ = job.communicate()
            assert job.returncode == 0, out
        assert {p.name: p.read_bytes() for p in tmp_path.glob("d_*")} == single
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_process_forked_while_an_index_is_opened_does_not_keep_the_lock(tmp_path):
    import fcntl

    from pythia_data.dataset import _shared_folder_lock

    ready_r, ready_w = os.pipe()
    with _shared_folder_lock(tmp_path):
        pid = os.fork()
        if pid == 0:  # the fork handlers have run once the child's own code runs
            os.write(ready_w, b"x")
            time.sleep(3)
            os._exit(0)
    assert os.read(ready_r, 1) == b"x"
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raised while the child lived
    finally:
        os.close(fd)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_a_dataset_reopened_after_its_index_was_rebuilt_says_so(tmp_path):
    # A spawned worker reopens by name: it read the new build's rows, silently.
    import pickle

    d = tmp_path / "d"
    _write(d, [120, 33, 80])
    kw = dict(num_samples=16, seq_length=16, seed=3)
    ds = GPTDataset(d, build=True, **kw)
    again = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(again.rows(0, 4), ds.rows(0, 4))
    code, out = run("build-index", d, "--num-samples", 16, "--seq-length", 16, "--seed", 3,
                    "--overwrite", "--separate-last-epoch", "-q")  # fmt: skip
    assert code == 0, out
    with pytest.raises(pythia_data.PythiaDataError, match="the index was rebuilt after"):
        pickle.loads(pickle.dumps(ds))


def test_an_earlier_record_without_items_still_catches_appended_documents(tmp_path):
    d, args = _index_with_an_earlier_record(tmp_path)
    _write(d, [30, 41, 70, 9, 31, 12])
    code, out = run("batch", d, *args, "--step", 0, "--batch-size", 4)
    assert code == 1 and "built for documents [0, 5), but" in out and "holds 6" in out, out


@pytest.mark.parametrize("name", ["x/../../../y", "", "..", "a/b", "/abs"])
def test_a_name_that_is_no_file_name_is_refused(tmp_path, monkeypatch, name):
    # The name is part of the cache file names: 'x/../../../y' wrote beside the working
    # directory and made a folder `PREFIX_x/`; '' was accepted.
    from pythia_data.errors import PythiaDataError
    from pythia_data.index import build_index

    base = tmp_path / "deep" / "er"  # where '../../..' from the data folder still lands
    base.mkdir(parents=True)
    d = make_dir(base)
    monkeypatch.chdir(d)
    before = sorted(tmp_path.rglob("*"))
    for cmd in ("build-index", "batch"):
        extra = ("--step", 0) if cmd == "batch" else ()
        code, out = run(cmd, d / "a", "--name", name, *ARGS, *extra)
        assert code == 2 and "--name" in out and "'/' or '..'" in out, out
    with pytest.raises(PythiaDataError, match="non-empty, without '/' or '..'"):
        build_index(d / "a", name=name, num_samples=21, seq_length=16)
    assert sorted(tmp_path.rglob("*")) == before
    code, out = run("build-index", d / "a", "--name", "my.run_0", *ARGS, "-q")
    assert code == 0 and (d / "a_my.run_0_indexmap_21ns_16sl_77s_doc_idx.npy").exists(), out


def test_batch_preshuffled_names_the_seq_length_to_pass(tmp_path):
    # It said "give seq_length 16 (--seq-length 16 …), or leave it out", but the command line
    # cannot leave it out: its default is 2048.
    d = make_dir(tmp_path)
    assert run("build-index", d / "a", *ARGS, "-q")[0] == 0
    pre = tmp_path / "pre"
    code, out = run("export-preshuffled", d / "a", pre, "--rows", 8, *ARGS, "-q")
    assert code == 0, out
    code, out = run("batch", pre, "--preshuffled", "--step", 1, "--batch-size", 4)
    assert code == 1 and out.count("\n") == 1, out
    assert "17 tokens, rows of seq_length 16, not 2048: pass --seq-length 16" in out
    assert "leave it out" not in out
    o = tmp_path / "s1.npy"
    code, out = run(
        "batch", pre, "--preshuffled", "--step", 1, "--batch-size", 4, "--seq-length", 16, "-o", o
    )
    assert code == 0, out
    np.testing.assert_array_equal(np.load(o), GPTDataset(d / "a", **ARGS_KW).rows(4, 8))
    # Without --batch-size, 1024 rows a step: the refusal says which option sets it, and
    # speaks of the rows given, not of an index they do not have.
    code, out = run("batch", pre, "--preshuffled", "--step", 0, "--seq-length", 16)
    assert code == 1 and out.count("\n") == 1, out
    assert "step 0 is beyond the preshuffled rows: 8 rows hold no full step of 1024 rows; " in out
    assert out.endswith("set the rows per step with --batch-size\n"), out
    # Given, the count is the user's choice: no advice to change what was asked for.
    code, out = run(
        "batch", pre, "--preshuffled", "--step", 2, "--seq-length", 16, "--batch-size", 4
    )
    assert code == 1 and "8 rows hold steps 0..1 of 4 rows" in out and "--batch-size" not in out


def test_build_index_on_preshuffled_rows_says_they_will_be_shuffled_again(tmp_path):
    # Allowed (GPT-NeoX would index rows as documents too), but it went without a word.
    d = make_dir(tmp_path)
    code, out = run("build-index", d / "a", *ARGS, "-q")
    assert code == 0 and "note:" not in out, out
    pre = tmp_path / "pre"
    assert run("export-preshuffled", d / "a", pre, "--rows", 8, *ARGS, "-q")[0] == 0
    code, out = run("build-index", pre, *ARGS, "-q")
    assert code == 0, out
    assert out.startswith(f"note: {pre} records no document ends (doc_idx [0] alone)"), out
    assert f"use `pythia-data batch {pre} --preshuffled` (no index)" in out


def test_batch_refuses_index_options_for_preshuffled_data_and_text_names_for_npy(tmp_path):
    # --seed, --name ... were ignored without a word with --preshuffled (as if they chose
    # rows), and -o rows.txt without --decode wrote a .npy array under a text file's name.
    d = make_dir(tmp_path)
    assert run("build-index", d / "a", *ARGS, "-q")[0] == 0
    pre = tmp_path / "pre"
    assert run("export-preshuffled", d / "a", pre, "--rows", 8, *ARGS, "-q")[0] == 0
    base = ("batch", pre, "--preshuffled", "--step", 1, "--batch-size", 4, "--seq-length", 16)
    for extra, named in [
        (("--seed", 7), "--seed chooses"),
        (("--name", "x", "--split", "valid"), "--name, --split choose"),
        (("--eval-iters", 3), "--eval-iters chooses"),
    ]:
        code, out = run(*base, *extra)
        assert code == 2 and f"{named} a raw dataset's index" in out, out
    o = tmp_path / "rows.txt"
    code, out = run(*base, "-o", o)
    assert code == 2 and "without --decode the rows are written as a .npy array" in out, out
    assert not o.exists()
    o = tmp_path / "rows.NPY"
    assert run(*base, "--global-batch-size", 4, "-o", o)[0] == 0
    np.testing.assert_array_equal(np.load(o), GPTDataset(d / "a", **ARGS_KW).rows(4, 8))


def test_batch_refuses_options_it_would_ignore_and_hides_its_bar_with_quiet(tmp_path, monkeypatch):
    # --tokenizer without --decode, and --int64 with --decode or without -o, did nothing
    # without a word; and batch, alone of the commands with a progress bar, had no -q for the
    # one its -o over several steps shows (a line in a log, even).
    from pythia_data.cli import batch as batch_cli
    from pythia_data.data import DEFAULT_TOKENIZER

    d = make_dir(tmp_path)
    assert run("build-index", d / "a", *ARGS, "-q")[0] == 0
    base = ("batch", d / "a", "--step", 0, "--end-step", 1, *ARGS)
    for extra, said in [
        (("--tokenizer", DEFAULT_TOKENIZER), "--tokenizer decodes the rows with --decode"),
        (("--int64",), "add -o ROWS.npy"),
        (("--int64", "--decode"), "it has no effect on text"),
        (("--int64", "--decode", "-o", tmp_path / "t.txt"), "it has no effect on text"),
    ]:
        code, out = run(*base, *extra)
        assert code == 2 and said in out, out
    assert not (tmp_path / "t.txt").exists()
    shown = []
    real = batch_cli.progress_bar

    def recorded(**kwargs):
        shown.append(not kwargs.get("disable"))
        return real(**kwargs)

    monkeypatch.setattr(batch_cli, "progress_bar", recorded)
    for extra in ((), ("-q",)):
        for out in (("-o", tmp_path / "r.npy"), ("--decode", "-o", tmp_path / "r.txt")):
            shown.clear()
            code, text = run(*base, *out, *extra)
            assert code == 0 and shown == [not extra], (extra, out, shown, text)
    np.testing.assert_array_equal(
        np.load(tmp_path / "r.npy"), GPTDataset(d / "a", **ARGS_KW).batches(0, 1)
    )


def test_batch_of_an_index_never_built_names_the_built_ones_and_what_differs(tmp_path):
    # It said only "index file not found": a wrong --seed or --train-iters was not told from
    # an index never built.
    d = make_dir(tmp_path)
    assert run("build-index", d / "a", *ARGS, "-q")[0] == 0
    assert run("build-index", d / "a", *ARGS, "--split", "valid", "--eval-iters", 2, "-q")[0] == 0
    code, out = run("batch", d / "a", *ARGS[:-1], 78, "--step", 0)
    assert code == 1 and out.count("\n") == 1, out
    assert "a_train_0_indexmap_21ns_16sl_78s_doc_idx.npy: index file not found" in out, out
    assert "train_0 [21 samples, seq_length 16, seed 77] needs --seed 77 (not 78);" in out, out
    assert "valid_0 [9 samples, seq_length 16, seed 77] needs --split valid, --seed 77" in out
    assert "build the one asked for with `pythia-data build-index` and these options" in out
    code, out = run("batch", d / "a", *ARGS[2:], "--train-iters", 6, "--step", 0)
    assert "needs 21 samples (not 25: --num-samples, or --train-iters × --global-batch" in out
    code, out = run("batch", d / "a", *ARGS, "--split", "test", "--step", 0)
    assert "train_0 [21 samples, seq_length 16, seed 77] needs --split train;" in out, out
    # Another dataset's index whose file name starts with a's (a_x) is not listed as a's.
    with IndexedDatasetBuilder(d / "a_x", np.uint16) as b:
        b.add_document(np.arange(900))
    assert run("build-index", d / "a_x", *ARGS, "-q")[0] == 0
    code, out = run("batch", d / "a", *ARGS, "--split", "test", "--step", 0)
    assert "x_train_0" not in out, out
    code, out = run("batch", d / "b", *ARGS, "--step", 0)
    assert code == 1 and out.endswith("not found (build it with `pythia-data build-index`)\n")
    # In Python, in GPTDataset's parameters.
    with pytest.raises(FileNotFoundError, match=r"needs seq_length=16 \(not 17\)") as e:
        GPTDataset(d / "a", **{**ARGS_KW, "seq_length": 17})
    assert "name='valid_0' (not 'train_0')" in str(e.value)


def test_batch_of_preshuffled_data_without_the_flag_says_so(tmp_path):
    # It said only "index file not found (build it with `pythia-data build-index`)", which
    # would index Pythia's rows as documents and read other rows than it trained on.
    d = make_dir(tmp_path)
    assert run("build-index", d / "a", *ARGS, "-q")[0] == 0
    pre = tmp_path / "pre"
    assert run("export-preshuffled", d / "a", pre, "--rows", 8, *ARGS, "-q")[0] == 0
    code, out = run("batch", pre, "--step", 0, "--seq-length", 16)
    assert code == 1 and out.count("\n") == 1, out
    assert "index file not found" in out and "`pythia-data batch --preshuffled` reads it" in out
    # Documents of other lengths get the plain advice.
    code, out = run("batch", d / "b", "--step", 0, "--seq-length", 16)
    assert code == 1 and "build it with" in out and "--preshuffled" not in out, out


def test_batch_end_step_always_writes_steps_batch_row(tmp_path):
    # --end-step equal to --step wrote (B, seq+1): a script reading --step N --end-step M
    # output as (steps, B, seq+1) broke on the one-step range.
    d = make_dir(tmp_path)
    assert run("build-index", d / "a", *ARGS, "-q")[0] == 0
    ds = GPTDataset(d / "a", **ARGS_KW)
    out = tmp_path / "f.npy"
    code, text = run("batch", d / "a", *ARGS, "--step", 2, "--end-step", 2, "-o", out)
    assert code == 0, text
    got = np.load(out)
    assert got.shape == (1, 4, 17)
    np.testing.assert_array_equal(got[0], ds.rows(8, 12))
    code, text = run("batch", d / "a", *ARGS, "--step", 2, "-o", out)
    assert code == 0 and np.load(out).shape == (4, 17), text


def test_export_preshuffled_of_no_rows_is_refused(tmp_path):
    # --rows 0 wrote an empty dataset that batch --preshuffled (and everything else) refuses.
    from pythia_data.errors import PythiaDataError
    from pythia_data.preshuffle import export_preshuffled

    d = make_dir(tmp_path)
    assert run("build-index", d / "a", *ARGS, "-q")[0] == 0
    out = tmp_path / "pre"
    code, text = run("export-preshuffled", d / "a", out, "--rows", 0, *ARGS, "-q")
    assert code == 2 and "--rows" in text and "0 is not in the range 1<=x" in text, text
    # --train-iters 0 asks for no rows by default (the index is still the one of 21 samples).
    no_steps = (*ARGS, "--train-iters", 0, "--num-samples", 21)
    code, text = run("export-preshuffled", d / "a", out, *no_steps, "-q")
    assert code == 2 and "no rows to write" in text, text
    with pytest.raises(PythiaDataError, match="needs at least 1"):
        export_preshuffled(GPTDataset(d / "a", **ARGS_KW), out, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pile"]


def test_a_folder_with_a_dataset_that_cannot_be_indexed_builds_nothing(tmp_path):
    # The indexes of a and b were built (and left) before the empty c failed the run.
    from pythia_data.errors import PythiaDataError
    from pythia_data.index import build_blended_index

    d = make_dir(tmp_path)
    with IndexedDatasetBuilder(d / "c", np.uint16):
        pass
    before = sorted(p.name for p in d.iterdir())
    for extra in ((), ("--split", "train", "--split", "valid"), ("--weights", "1,1,1")):
        code, out = run("build-index", d, *ARGS, *extra, "-q")
        assert code == 1 and out.count("\n") == 1, out
        assert f"{d / 'c.idx'}: the 0 documents hold no tokens: there is nothing to sample" in out
        assert sorted(p.name for p in d.iterdir()) == before
    with pytest.raises(PythiaDataError, match="hold no tokens"):
        build_blended_index([d / "a", d / "c"], [1, 1], num_samples=20, seq_length=16)
    assert sorted(p.name for p in d.iterdir()) == before


def test_a_doc_idx_beyond_int32_is_refused_as_the_engine_refuses_it(tmp_path):
    # Checked before any build, by the engine's rule: b has 3 documents of 233 tokens, and
    # 2·10^10 samples of 16 need ceil((2·10^10·16 + 1) / 233) = 1,373,390,558 epochs (the
    # engine's own refusal gives the same figures).
    d = make_dir(tmp_path)
    code, out = run("build-index", d / "b", "--num-samples", 2 * 10**10, "--seq-length", 16)
    assert code == 1 and "doc_idx would have 4,120,171,674 entries" in out, out
    assert "(1,373,390,558 epochs of 3 documents)" in out and "cannot hold that" in out


def test_an_interrupt_after_an_index_is_in_place_says_it_is_complete(tmp_path, monkeypatch):
    # A Ctrl-C just after b's index was put in place said "this run left no partial output
    # behind" (exit 130), though the complete index was there.
    from pythia_data.index import IndexInfo, index_paths

    d = make_dir(tmp_path)
    assert run("build-index", d / "a", *ARGS, "-q")[0] == 0  # reused below: not this run's
    describe = IndexInfo.describe
    calls = []

    def interrupted_after(self, *args, **kwargs):
        calls.append(self.prefix.name)
        if self.prefix.name == "b":
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, once b's index is in place
        return describe(self, *args, **kwargs)

    monkeypatch.setattr(IndexInfo, "describe", interrupted_after)
    code, out = run("build-index", d, *ARGS, "-q")
    assert code == 130 and calls == ["a", "b"], out
    paths = index_paths(d / "b", "train_0", 21, 16, 77)
    assert all(p.exists() for p in paths)
    want = ", ".join(str(p) for p in paths)
    assert f"interrupted after the index was written: {want} are complete\n" in out, out
    (line,) = [line for line in out.splitlines() if line.startswith("interrupted")]
    assert "no partial output" not in out and "a_train_0" not in line
    np.testing.assert_array_equal(
        GPTDataset(d / "b", **ARGS_KW).rows(0, 5),
        GPTDataset(d / "b", paths=paths, seq_length=16).rows(0, 5),
    )


def _can_mount_tmpfs() -> bool:
    """Whether a private tmpfs can be mounted here (root, with util-linux's unshare): a file
    system that really fills up, as /dev/full cannot show for memory-mapped writes."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs root and unshare to mount a tmpfs")
def test_batch_output_on_a_disk_that_fills_up_is_an_error_not_sigbus(tmp_path):
    # The .npy was written through a memory map of the whole array: storing rows into its
    # pages once the file system was full killed the process with SIGBUS (status 135, no
    # message) and left the hidden temporary behind.
    d = tmp_path / "pile"
    d.mkdir()
    with IndexedDatasetBuilder(d / "a", np.uint16) as b:
        for i in range(40):
            b.add_document((np.arange(500) + i) % 50000)
    args = ("--num-samples", 300, "--seq-length", 64, "--seed", 1)
    assert run("build-index", d / "a", *args, "-q")[0] == 0
    full = tmp_path / "full"
    full.mkdir()
    out = full / "rows.npy"
    batch = [sys.executable, "-m", "pythia_data.cli", "batch", d / "a", *args, "--int64"]
    batch += ["--step", 0, "--end-step", 1, "--batch-size", 100, "-o", out]
    script = (
        f"mount -t tmpfs -o size=16k tmpfs {shlex.quote(str(full))} || exit 99; "
        f"{shlex.join(str(a) for a in batch)}; echo status=$?; ls -A {shlex.quote(str(full))}"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(pythia_data.__file__).parent.parent))
    r = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=env
    )
    if "status=" not in r.stdout:
        pytest.skip(f"could not mount a tmpfs: {r.stderr}")
    assert "status=1\n" in r.stdout and r.stdout.endswith("status=1\n"), (r.stdout, r.stderr)
    assert f"{out}: No space left on device" in r.stderr, r.stderr  # the file, not its temporary
    assert "free space on that file system" in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_during_the_final_step_of_export_preshuffled_keeps_the_complete_output(
    tmp_path, monkeypatch, sig
):
    # A signal while the output was finished (its fsync and renames, in native code) was
    # raised when that returned: "interrupted; this run left no partial output behind",
    # status 130, though the complete output was in place.
    d = make_dir(tmp_path)
    assert run("build-index", d / "a", *ARGS, "-q")[0] == 0
    finish = IndexedDatasetBuilder.finish

    def signalled_while_finishing(self):
        os.kill(os.getpid(), sig)
        return finish(self)

    monkeypatch.setattr(IndexedDatasetBuilder, "finish", signalled_while_finishing)
    pre = tmp_path / "pre"
    code, out = run("export-preshuffled", d / "a", pre, "--rows", 8, *ARGS, "-q")
    assert code == 0 and "wrote 8 rows" in out and "interrupted" not in out, out
    monkeypatch.undo()
    got = PreshuffledDataset(pre, seq_length=16)
    np.testing.assert_array_equal(got.rows(0, 8), GPTDataset(d / "a", **ARGS_KW).rows(0, 8))
