"""The Rust tokenizer against the reference: Hugging Face ``tokenizers`` loading the same file.

Every expected value here comes from the oracle at test time (or, for the spec's examples, from
shared/spec/tokenizer.md), never from our own output.
"""

from __future__ import annotations

import io
import json
import os
import sys

import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pythia_data import PythiaDataError, Tokenizer
from pythia_data.data import DEFAULT_TOKENIZER, SAMPLE_CORPUS

tokenizers = pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def ours() -> Tokenizer:
    return Tokenizer.from_file()


@pytest.fixture(scope="module")
def ref():
    return tokenizers.Tokenizer.from_file(str(DEFAULT_TOKENIZER))


def gpt2_style_json() -> str:
    """The NeoX file reshaped like GPT-2's: no added space tokens, merges as [a, b] pairs."""
    cfg = json.loads(DEFAULT_TOKENIZER.read_text(encoding="utf-8"))
    cfg["added_tokens"] = [t for t in cfg["added_tokens"] if t["special"]]
    cfg["normalizer"] = None
    cfg["model"]["merges"] = [m.split(" ") for m in cfg["model"]["merges"]]
    return json.dumps(cfg)


@pytest.fixture(scope="module")
def gpt2_pair():
    text = gpt2_style_json()
    return Tokenizer.from_str(text), tokenizers.Tokenizer.from_str(text)


def sample_texts() -> list[str]:
    with open(SAMPLE_CORPUS, "rb") as f:
        raw = zstandard.ZstdDecompressor().stream_reader(f).read()
    return [json.loads(line)["text"] for line in io.StringIO(raw.decode("utf-8"))]


def check(ours: Tokenizer, ref, text: str) -> None:
    got = ours.encode(text)
    assert got.dtype == np.uint32
    want = ref.encode(text).ids
    assert got.tolist() == want, f"ids differ for {text!r}"
    assert ours.decode(got) == ref.decode(want), f"decode differs for {text!r}"


# Edge cases named by shared/spec/tokenizer.md.
EDGE_CASES = [
    "",
    "Hello world",
    # NFC: composition, reordering, singletons, Hangul, exclusions...
    "e\u0301 cafe\u0301 \u212b \u2126 \u1100\u1161\u11a8 \u0958 a\u0328\u0301 a\u0301\u0328",
    "\u1e9b\u0323 \u0071\u0307\u0323 \u00c5\u0301 \u0041\u030a\u0301",
    # ...and marks added after Unicode 9.0, where 9.0 tables differ from today's.
    "a\u1dfa\u0301 a\u0301\u1dfa e\u08d3\u0301 o\u0d00 a\U0001e94a\u0301 \u0d3b\u0d3c",
    "x\u0323\u1dfa\u0307 \u0915\u093c\u1cf8 a\u10f46\u0301",
    # runs of spaces, alone and mixed with other white space
    *[f"a{' ' * n}b" for n in range(1, 52)],
    *[" " * n for n in (1, 2, 3, 23, 24, 25, 48, 49, 100)],
    "  leading",
    "trailing  ",
    " \t  \n   x",
    "a \n b",
    "a  \n  b",
    "x \u3000 y",
    # the special-token strings inside text
    "<|endoftext|>",
    "a<|endoftext|>b",
    "<|endoftext|><|endoftext|><|padding|>",
    "<|endoftext|",
    "< |endoftext|>",
    "x <|padding|> y",
    "<|endoftext|>  <|padding|>",
    "<<|endoftext|>>",
    "e\u0301<|endoftext|>e\u0301",
    # contractions, also after tabs, newlines and spaces
    "don't I'm we're they've I'll he'd it's",
    "DON'T I'M",
    "\t's \n'll \r\n'd  've",
    "''s 's's ' s '",
    "x\t'm",
    "x \t're",
    "l'\u00e9t\u00e9",
    "'S",
    "'ll'll",
    # CRLF and other line ends
    "line one\r\nline two\r\n\r\n  indented\r\n",
    "\r\r\n\n\u2028\u2029\x85",
    # emoji with joiners, flags, skin tones, variation selectors
    "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 family",
    "\U0001f3f3\ufe0f\u200d\U0001f308 \U0001f1eb\U0001f1f7 \U0001f44d\U0001f3fd",
    # NBSP and other non-ASCII white space
    "a\u00a0b",
    "\u00a0\u00a0x",
    "a \u00a0 b",
    "100\u00a0000",
    "\u2009\u202f\u205f",
    # numbers, scripts, symbols, control characters
    "\u00bd \u0663\u0664 \u2167 12345678901234567890 3.14e-10",
    "\u4e2d\u6587\u6d4b\u8bd5 \u65e5\u672c\u8a9e \ud55c\uad6d\uc5b4 \u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    "\x00\x01\x7f\x1b[0m \ufeff\ufffd",
    "def f(x):\n\treturn x**2  # comment\n",
]


@pytest.mark.parametrize("text", EDGE_CASES)
def test_edge_cases_match_reference(ours, ref, text):
    check(ours, ref, text)


def test_bundled_sample_matches_reference(ours, ref):
    texts = sample_texts()
    assert len(texts) == 297
    got = ours.encode_batch(texts)
    want = ref.encode_batch(texts)
    for text, g, w in zip(texts, got, want, strict=True):
        assert g.tolist() == w.ids, f"ids differ for document starting {text[:60]!r}"
    assert ours.decode(got[0]) == ref.decode(want[0].ids)


@pytest.mark.parametrize("unit", ["a", "7", "\n"])
def test_one_megabyte_pieces_match_reference(ours, ref, unit):
    # One pre-token of 1 MB: a quadratic BPE would take hours here.
    text = unit * (1 << 20)
    assert ours.encode(text).tolist() == ref.encode(text).ids


def test_spec_examples(ours):
    # Values written in shared/spec/tokenizer.md.
    assert ours.encode("Hello world").tolist() == [12092, 1533]
    assert ours.encode("hello  world").tolist() == [25521, 50276, 10186]
    assert ours.encode("a" + " " * 25 + "b").tolist() == [66, 50254, 270]
    assert ours.vocab_size == 50277
    assert ours.eod_id == 0


def test_vocab_size_and_eod_match_reference(ours, ref):
    assert ours.vocab_size == ref.get_vocab_size()
    assert ours.eod_id == ref.token_to_id("<|endoftext|>")


# Characters that exercise every branch: classes, specials, marks, white space, surrogate pairs.
TRICKY = list(
    "aZé\u00df\u4e2d7\u0663\u00bd '\"!?.,-_\t\n\r\u00a0\u3000\u2028\u0301\u0323\u1dfa\u08d3"
    "\u1100\u1161\u11a8\U0001f600\u200d\ufe0f<|>sltrevmd"
) + ["<|endoftext|>", "<|padding|>", "'s", "'ll", "  ", "     "]

texts = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(TRICKY), max_size=60).map("".join),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts)
def test_random_strings_match_reference(ours, ref, text):
    check(ours, ref, text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=-5, max_value=50400), max_size=40), st.booleans())
def test_decode_random_ids_matches_reference(ours, ref, ids, skip):
    # Random ids split UTF-8 sequences, mix in specials and ids past the vocabulary.
    want = ref.decode([i for i in ids if i >= 0], skip_special_tokens=skip)
    assert ours.decode(ids, skip_special_tokens=skip) == want


def test_decode_keeps_special_tokens_when_asked(ours, ref):
    ids = ours.encode("a<|endoftext|>b<|padding|>")
    assert ours.decode(ids, skip_special_tokens=False) == "a<|endoftext|>b<|padding|>"
    assert ours.decode(ids) == ref.decode(ids.tolist()) == "ab"


@settings(max_examples=150, deadline=None)
@given(texts)
def test_gpt2_style_file_matches_reference(gpt2_pair, text):
    ours, ref = gpt2_pair
    check(ours, ref, text)


def test_gpt2_style_file_has_no_space_tokens(gpt2_pair):
    ours, ref = gpt2_pair
    text = "a" + " " * 30 + "b  c"
    assert ours.encode(text).tolist() == ref.encode(text).ids
    assert max(ours.encode(text).tolist()) < 50254


def test_batch_apis_agree_with_encode(ours):
    texts = sample_texts()[:40] + ["", "x", "<|endoftext|>"]
    single = [ours.encode(t) for t in texts]
    batch = ours.encode_batch(texts)
    assert [b.tolist() for b in batch] == [s.tolist() for s in single]
    flat, offsets = ours.encode_batch_flat(texts)
    assert flat.dtype == np.uint32 and offsets.dtype == np.int64
    assert offsets[0] == 0 and len(offsets) == len(texts) + 1
    for i, s in enumerate(single):
        assert flat[offsets[i] : offsets[i + 1]].tolist() == s.tolist()
    empty_flat, empty_offsets = ours.encode_batch_flat([])
    assert len(empty_flat) == 0 and empty_offsets.tolist() == [0]
    assert ours.encode_batch(()) == []


def test_decode_takes_integer_ids_numpy_cannot_hold_in_one_dtype(ours, ref):
    # numpy turns signed and unsigned integer scalars together into float64, and Python ints
    # past int64 into an object array; both were refused as "not integer ids".
    want = ref.decode([15, 16, 50276])
    assert ours.decode([np.int64(15), np.uint64(16), 50276]) == want
    assert ours.decode(np.array([15, 16, 50276], dtype=object)) == want
    assert ours.decode([np.int32(15), np.uint32(16), np.uint64(50276)]) == want
    # Ids past int64 are out of range like any other: ignored.
    assert ours.decode([15, 2**70, 16, -(2**70), 50276]) == want
    for not_ids in ([15, 1.5], np.array([15, "x"], dtype=object), [np.uint64(15), np.float64(1)]):
        with pytest.raises(TypeError, match="integer ids"):
            ours.decode(not_ids)


def test_decode_reads_contiguous_and_strided_arrays_of_every_width_alike(ours, ref):
    # Contiguous int64 ids are read in place without the GIL; others through a copy: one text.
    ids = ours.encode(sample_texts()[3])
    want = ref.decode(ids.tolist())
    wide = np.empty(2 * len(ids), np.int64)
    wide[::2], wide[1::2] = ids, -1  # every other id out of range: ignored
    for form in (ids, ids.astype(np.int64), ids.astype(np.uint16), wide[::2], wide):
        assert ours.decode(form) == want
    # Ids at and past u32's range are out of the vocabulary, not wrapped into it.
    assert ours.decode(np.array([2**32 + 15, 15, 2**33], np.int64)) == ref.decode([15])


@pytest.mark.parametrize("not_a_sequence", [None, 15, "15", b"\x0f", np.int64(15)])
def test_decode_of_a_non_sequence_is_a_type_error(ours, not_a_sequence):
    with pytest.raises(TypeError, match="1-D sequence of ids"):
        ours.decode(not_a_sequence)


def test_a_single_str_given_to_a_batch_call_names_that_call(ours):
    for name in ("encode_batch", "encode_batch_flat"):
        with pytest.raises(TypeError, match=f"^{name} takes a sequence of texts"):
            getattr(ours, name)("one text")


def test_bytes_given_to_a_batch_call_say_texts_are_str(ours):
    for name in ("encode_batch", "encode_batch_flat"):
        for texts in (b"abc", bytearray(b"abc")):
            with pytest.raises(TypeError, match=f"^{name} takes a sequence of str texts"):
                getattr(ours, name)(texts)


def test_encode_of_a_non_str_and_a_batch_of_a_non_sequence_name_the_call(ours):
    # They said "argument 'text': 'bytes' object cannot be cast as 'str'" and "'NoneType'
    # object is not iterable", the second naming no call.
    for text in (b"abc", bytearray(b"abc"), memoryview(b"abc")):
        with pytest.raises(TypeError, match=r"^encode takes a str, not .*; decode bytes first"):
            ours.encode(text)
    with pytest.raises(TypeError, match="^encode takes one text as a str, not list; use encode_b"):
        ours.encode(["a", "b"])
    with pytest.raises(TypeError, match="^encode takes one text as a str, not NoneType$"):
        ours.encode(None)
    for name in ("encode_batch", "encode_batch_flat"):
        for texts in (None, 5):
            with pytest.raises(TypeError, match=f"^{name} takes a sequence of texts, not "):
                getattr(ours, name)(texts)


def test_a_batch_call_refuses_unordered_texts_and_names_a_bad_one(ours):
    # A dict encoded its keys and a set in no fixed order; a None among the texts was
    # "argument 'texts': 'NoneType' object cannot be cast as 'str'", at no position.
    for name in ("encode_batch", "encode_batch_flat"):
        call = getattr(ours, name)
        for texts, kind in (({"a": 1}, "dict"), ({"a", "b"}, "set"), (frozenset("a"), "frozen")):
            with pytest.raises(
                TypeError, match=f"^{name} takes a sequence of texts in order .*{kind}"
            ):
                call(texts)
        with pytest.raises(TypeError, match=f"^{name}: text 2 is a NoneType, not a str$"):
            call(["a", "b", None, 5])
        assert [list(x) for x in ours.encode_batch(("Hello", "world"))] == [[12092], [10186]]
        # A dict's keys and values keep their order: they are sequences of texts.
        assert call({"Hello": 0}.keys())[0].tolist() == [12092]
        assert ours.encode_batch_flat(iter(["Hello"]))[0].tolist() == [12092]


def test_a_batch_call_names_the_text_with_a_lone_surrogate(ours):
    # It said "can't encode character '\udc80' in position 3", the position within a text
    # it did not name, readable as the text's position in the batch.
    for name in ("encode_batch", "encode_batch_flat"):
        with pytest.raises(UnicodeEncodeError, match=rf"in position 3: .*\(in {name}'s text 1\)$"):
            getattr(ours, name)(["ok", "bad\udc80", "x", "y"])


def test_an_empty_path_or_a_path_given_to_from_str_is_a_clear_error():
    with pytest.raises(ValueError, match="not an empty path"):
        Tokenizer("")
    with pytest.raises(ValueError, match="for a file use Tokenizer.from_file"):
        Tokenizer.from_str(str(DEFAULT_TOKENIZER))


def test_from_str_of_bytes_is_a_type_error():
    with pytest.raises(TypeError, match="from_str takes the JSON text as a str"):
        Tokenizer.from_str(DEFAULT_TOKENIZER.read_bytes())


def test_tokenizers_pickle(ours, gpt2_pair):
    # DataLoader and multiprocessing workers started with spawn receive the tokenizer pickled.
    import pickle

    text = "Hello  world<|endoftext|>"
    for tok in (ours, gpt2_pair[0]):
        again = pickle.loads(pickle.dumps(tok))
        assert again.encode(text).tolist() == tok.encode(text).tolist()
        assert again.vocab_size == tok.vocab_size and again.path == tok.path


def test_tokenizer_from_a_relative_path_unpickles_in_another_directory(tmp_path, monkeypatch):
    import pickle
    import shutil

    shutil.copy(DEFAULT_TOKENIZER, tmp_path / "tok.json")
    monkeypatch.chdir(tmp_path)
    data = pickle.dumps(Tokenizer.from_file("tok.json"))
    monkeypatch.chdir(tmp_path.parent)
    again = pickle.loads(data)
    assert (
        again.encode("Hello world").tolist() == Tokenizer.from_file().encode("Hello world").tolist()
    )


def test_a_tokenizer_file_changed_after_pickling_is_refused_in_the_worker(tmp_path):
    # The worker reloaded whatever the file then held, and encoded with another tokenizer.
    import pickle

    path = tmp_path / "tok.json"
    path.write_bytes(DEFAULT_TOKENIZER.read_bytes())
    data = pickle.dumps(Tokenizer.from_file(path))
    cfg = json.loads(DEFAULT_TOKENIZER.read_text(encoding="utf-8"))
    cfg["added_tokens"] = [t for t in cfg["added_tokens"] if t["special"]]
    path.write_text(json.dumps(cfg))
    with pytest.raises(PythiaDataError, match="changed since this tokenizer was loaded from it"):
        pickle.loads(data)


def test_a_signal_during_the_first_encode_raises_its_exception(tmp_path):
    # numpy's C API was looked up by the first array built, running Python code where a
    # pending signal's handler raised: the module panicked (PanicException, a Rust backtrace)
    # instead of raising the handler's exception.
    import subprocess

    script = """
import signal, sys
from pythia_data import Tokenizer
def timeout(*_):
    raise TimeoutError
signal.signal(signal.SIGALRM, timeout)
tok = Tokenizer()
signal.setitimer(signal.ITIMER_REAL, 0.05)
try:
    text = "a" * int(sys.argv[2])
    getattr(tok, sys.argv[1])(text if sys.argv[1] == "encode" else [text] * 4)
except TimeoutError:
    print("TimeoutError")
"""
    for method in ("encode", "encode_batch", "encode_batch_flat"):
        done = subprocess.run(
            [sys.executable, "-c", script, method, "2000000"],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(pythia_file()))},
        )
        assert done.stdout == "TimeoutError\n", (method, done.stdout, done.stderr[-500:])
        assert "Panic" not in done.stderr


def test_an_interrupt_while_numpy_loads_at_import_is_raised_not_a_panic():
    # Ctrl-C while `import pythia_data` loaded numpy (from the native module's start) made the
    # numpy crate panic: a PanicException and a Rust backtrace instead of KeyboardInterrupt.
    import subprocess

    script = """
import sys
class Interrupted:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy":
            raise KeyboardInterrupt
sys.meta_path.insert(0, Interrupted())
try:
    import pythia_data._core
except KeyboardInterrupt:
    print("KeyboardInterrupt")
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(pythia_file()))},
    )
    assert done.stdout == "KeyboardInterrupt\n", done.stderr[-500:]
    assert "Panic" not in done.stderr


def pythia_file() -> str:
    import pythia_data

    return pythia_data.__file__


@pytest.mark.parametrize(
    "ids",
    [np.ma.array([12092, 1533], mask=[0, 1]), np.array([12092, 1533], "m8[s]")],
    ids=["masked", "timedelta"],
)
def test_decode_refuses_arrays_that_are_not_ids(ours, ids):
    # Both decoded to "Hello world": the mask dropped, the durations read as ids. The refusal
    # itself, not any TypeError on the way (such as one from reading the array).
    with pytest.raises(TypeError, match=r"^decode takes (ids, not a masked|integer ids, got)"):
        ours.decode(ids)


def test_lone_surrogate_is_an_error_like_the_reference(ours, ref):
    # The reference refuses such a str (TypeError); ours names the encoding problem.
    with pytest.raises(TypeError):
        ref.encode("a\ud800b")
    with pytest.raises(UnicodeEncodeError):
        ours.encode("a\ud800b")


def test_bad_tokenizer_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        Tokenizer.from_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PythiaDataError, match="bad.json.*not a valid tokenizer.json"):
        Tokenizer.from_file(bad)
    cfg = json.loads(DEFAULT_TOKENIZER.read_text(encoding="utf-8"))
    cfg["model"]["type"] = "WordPiece"
    wp = tmp_path / "wp.json"
    wp.write_text(json.dumps(cfg))
    with pytest.raises(PythiaDataError, match="unsupported model type"):
        Tokenizer.from_file(wp)
    cfg = json.loads(DEFAULT_TOKENIZER.read_text(encoding="utf-8"))
    cfg["pre_tokenizer"]["add_prefix_space"] = True
    with pytest.raises(PythiaDataError, match="add_prefix_space"):
        Tokenizer.from_str(json.dumps(cfg))


def test_a_large_file_that_is_no_json_object_is_refused_from_its_first_bytes(tmp_path):
    # Read whole first, a dataset's .bin given by mistake took its size in memory, and one
    # larger than memory (here a sparse 1 TiB file) failed as "OSError: out of memory".
    data = tmp_path / "data.bin"
    with open(data, "wb") as f:
        f.write(b"\x1f\x8b")
        f.truncate(64 << 20)
    with pytest.raises(PythiaDataError, match=r"data.bin: not a tokenizer.json: .*start with"):
        Tokenizer.from_file(data)
    # A JSON-lines corpus starts with "{" too: one past any tokenizer.json is refused by size.
    corpus = tmp_path / "corpus.jsonl"
    try:
        with open(corpus, "wb") as f:
            f.write(b'{"text": "a"}\n')
            f.truncate(1 << 40)
    except OSError:
        pytest.skip("no sparse 1 TiB file here")
    with pytest.raises(
        PythiaDataError,
        match=r"corpus.jsonl: not a tokenizer.json: 1099511627776 bytes, past the 1 GiB read",
    ):
        Tokenizer.from_file(corpus)
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + DEFAULT_TOKENIZER.read_bytes())
    with pytest.raises(PythiaDataError, match="byte order mark, which the reference refuses too"):
        Tokenizer.from_file(bom)


@pytest.mark.parametrize("where", ["vocab", "added"])
def test_absurd_token_id_is_an_error_not_an_abort(where):
    # Ids index dense tables: an id of 4e9 asked for 64 GB and the process aborted.
    cfg = json.loads(DEFAULT_TOKENIZER.read_text(encoding="utf-8"))
    if where == "vocab":
        cfg["model"]["vocab"]["hello"] = 4_000_000_000
    else:
        cfg["added_tokens"][0]["id"] = 4_000_000_000
    with pytest.raises(
        PythiaDataError, match="has id 4000000000, above 16777215, the largest id supported here"
    ):
        Tokenizer.from_str(json.dumps(cfg))


def test_every_16th_code_point_in_context_matches_reference(ours, ref):
    # The full sweep over all 1,112,064 code points (a minute here) also matched; this stride
    # keeps the test fast while touching every Unicode block's letter, number and space classes.
    texts = []
    for c in range(0, 0x110000, 16):
        if 0xD800 <= c <= 0xDFFF:
            continue
        ch = chr(c)
        texts.append(f"{ch}a{ch}1{ch} {ch}\u0301 x{ch}{ch}'s {ch}\n{ch}")
    got = ours.encode_batch(texts)
    want = ref.encode_batch(texts)
    mismatches = [t for t, g, w in zip(texts, got, want, strict=True) if g.tolist() != w.ids]
    assert not mismatches, f"{len(mismatches)} differ, e.g. {mismatches[0]!r}"


def _child_uses_rayon(queue) -> None:
    from pythia_data import GPTDataset

    from golden import CASES, FIXTURES, golden_case

    c = CASES["lognormal_e1"]
    ds = GPTDataset(
        golden_case("lognormal_e1"),
        num_samples=c["num_samples"],
        seq_length=c["seq_length"],
        seed=c["seed"],
        cache_dir=FIXTURES,
    )
    flat, _ = Tokenizer.from_file().encode_batch_flat(["hello world"] * 2000)
    queue.put((int(ds.rows(0, 1000).sum()), int(flat.sum())))


@pytest.mark.skipif(sys.platform != "linux", reason="fork")
def test_forked_child_after_batch_encoding_does_not_hang(ours):
    # The batch APIs start rayon's global pool; its threads do not exist in a forked child
    # (a DataLoader worker), which then waited for ever on its first parallel call.
    import multiprocessing

    ours.encode_batch_flat(["warm the pool"] * 2000)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_uses_rayon, args=(queue,))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung on rayon's pool")
    assert child.exitcode == 0
    _, ids_sum = queue.get(timeout=5)
    assert ids_sum == int(ours.encode_batch_flat(["hello world"] * 2000)[0].sum())


def test_repr_says_where_the_tokenizer_came_from():
    from_file = Tokenizer.from_file()
    assert repr(from_file) == f"Tokenizer({os.path.abspath(DEFAULT_TOKENIZER)!r}, vocab_size=50277)"
    assert repr(Tokenizer.from_str(DEFAULT_TOKENIZER.read_text())) == (
        "Tokenizer(<JSON text>, vocab_size=50277)"
    )


def test_the_constructor_loads_a_path_or_the_bundled_file(tmp_path, ours, ref):
    text = "Hello world, it's 2024!"
    want = ref.encode(text).ids
    copy = tmp_path / "tok.json"
    copy.write_bytes(DEFAULT_TOKENIZER.read_bytes())
    for tok in [Tokenizer(), Tokenizer(copy), Tokenizer(str(copy)), Tokenizer(os.fsencode(copy))]:
        assert tok.encode(text).tolist() == want
    assert Tokenizer(os.fsencode(copy)).path == str(copy)
    assert Tokenizer.from_file(os.fsencode(copy)).path == str(copy)
    with pytest.raises(TypeError, match="takes the path of a tokenizer.json"):
        Tokenizer(ours)  # a Tokenizer is no path
    with pytest.raises(FileNotFoundError, match="missing.json"):
        Tokenizer(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="for the JSON text itself use Tokenizer.from_str"):
        Tokenizer(DEFAULT_TOKENIZER.read_text())


def test_a_file_whose_name_starts_with_a_brace_is_a_path(tmp_path, monkeypatch, ref):
    # Only text that names no file is taken for JSON given by mistake.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "{neox}.json").write_bytes(DEFAULT_TOKENIZER.read_bytes())
    assert Tokenizer("{neox}.json").encode("a {b}").tolist() == ref.encode("a {b}").ids


def test_decode_of_a_float_tensor_names_its_dtype(ours):
    torch = pytest.importorskip("torch")
    assert ours.decode(torch.tensor([12092, 1533])) == "Hello world"
    with pytest.raises(TypeError, match="^decode takes integer ids, got dtype float32$"):
        ours.decode(torch.tensor([12092.0, 1533.0]))


def test_bool_ids_decode_as_0_and_1_like_ints(ours, ref):
    for ids in ([True, False], [True, 15], np.array([True, False]), [np.int64(15), True]):
        as_ints = [int(i) for i in ids]
        assert ours.decode(ids, skip_special_tokens=False) == ref.decode(
            as_ints, skip_special_tokens=False
        )
