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


def _set_top(key, value):
    def edit(cfg):
        cfg[key] = value

    return edit


def _drop(section, key):
    def edit(cfg):
        del cfg[section][key]

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
        # Fields the reference requires, keys it does not know, versions it does not read.
        *[
            (_drop(section, key), rf'{section} ByteLevel has no "{key}" \(a required field\)')
            for section in ("pre_tokenizer", "post_processor", "decoder")
            for key in ("add_prefix_space", "trim_offsets")
        ],
        (lambda cfg: cfg.update(version=None), r'"version": invalid type: null'),
        (lambda cfg: cfg.update(version="2.0"), r'unknown tokenizer.json version "2.0"'),
        (lambda cfg: cfg.update(vocab_extra=[]), r'unknown top-level key "vocab_extra"'),
        # Shapes the reference's untagged enums do not accept.
        (
            lambda cfg: cfg["model"]["merges"].__setitem__(3, cfg["model"]["merges"][3].split()),
            r'merge 3 is not a string but merge 0 is an "a b" string',
        ),
        (_set("model", "type", None), r'model "type" null is not a string'),
        (
            _set_top("normalizer", {"type": "Sequence", "normalizers": [None]}),
            "normalizer Sequence holds null",
        ),
        (
            _set_top("normalizer", {"type": "Sequence"}),
            r'normalizer Sequence has no "normalizers" list',
        ),
    ],
)
def test_files_the_reference_refuses_are_refused(tmp_path, edit, match):
    cfg = config()
    edit(cfg)
    with pytest.raises(Exception):  # noqa: B017 - the oracle's own error type
        tokenizers.Tokenizer.from_str(json.dumps(cfg))
    refused(cfg, tmp_path, match)


def _repeat_key(text: str, key: str, after: str, value: str) -> str:
    """``text`` with ``"key": value`` written again right after the first ``key`` that
    follows ``after``; the first copy keeps its value."""
    at = text.index(f'"{key}": ', text.index(after))
    return f'{text[:at]}"{key}": {value}, {text[at:]}'


@pytest.mark.parametrize(
    ("key", "after", "value", "reference_refuses"),
    [
        ("content", '"added_tokens"', '"<|x|>"', True),
        ("special", '"added_tokens"', "false", True),
        ("type", '"model"', '"WordPiece"', True),
        ("add_prefix_space", '"pre_tokenizer"', "false", False),
        ("version", "{", '"1.0"', False),
    ],
)
def test_a_key_written_twice_is_refused(tmp_path, key, after, value, reference_refuses):
    text = _repeat_key(json.dumps(config()), key, after, value)
    try:
        tokenizers.Tokenizer.from_str(text)
        refuses = False
    except Exception:  # noqa: BLE001 - the oracle's own error type
        refuses = True
    assert refuses == reference_refuses, "the oracle changed how it reads repeated keys"
    path = tmp_path / "tokenizer.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PythiaDataError, match=f'key "{key}" is written twice in one object'):
        Tokenizer.from_file(path)


def test_what_the_reference_reads_as_no_change_loads(tmp_path):
    cfg = config()
    cfg["model"]["dropout"] = 0.0  # no merge skipped
    cfg["model"]["merges"].insert(0, "#version: 0.2")  # skipped, as in a merges.txt
    ours, ref = load_both(cfg, tmp_path)
    assert_same(ours, ref, [*TEXTS, " the theory of everything"], [0, 12092, 50254])
    cfg["model"]["dropout"] = 0.1
    refused(cfg, tmp_path, "BPE dropout is not supported")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_set_top("pre_tokenizer", None), r"no pre_tokenizer \(this family needs the ByteLevel"),
        (_set_top("decoder", None), r"no decoder \(this family needs the ByteLevel decoder\)"),
        (lambda cfg: cfg.pop("decoder"), r"no decoder \(this family needs"),
        (
            lambda cfg: cfg["model"]["vocab"].update(zz=1 << 24),
            r'vocab token "zz" has id 16777216, above 16777215, the largest id supported here',
        ),
        (
            lambda cfg: cfg["model"]["vocab"].update(zz=-1),
            r'vocab token "zz" has id -1, not a non-negative integer',
        ),
    ],
)
def test_refusals_name_their_cause(tmp_path, edit, match):
    cfg = config()
    edit(cfg)
    refused(cfg, tmp_path, match)


def test_a_file_without_a_version_loads_as_the_reference_loads_it(tmp_path):
    cfg = config()
    del cfg["version"]
    ours, ref = load_both(cfg, tmp_path)
    assert_same(ours, ref, TEXTS)


def test_null_where_the_reference_allows_it(tmp_path):
    cfg = config()
    cfg["model"]["ignore_merges"] = None
    cfg["model"]["end_of_word_suffix"] = None
    ours, ref = load_both(cfg, tmp_path)
    assert_same(ours, ref, TEXTS)


def test_bundled_and_gpt2_style_files_still_load(tmp_path):
    cfg = config()
    ours, ref = load_both(cfg, tmp_path)
    assert_same(ours, ref, TEXTS, [0, 1, 12092, 50254, 50276])
    cfg["added_tokens"] = [t for t in cfg["added_tokens"] if t["special"]]
    cfg["normalizer"] = None
    cfg["model"]["merges"] = [m.split(" ") for m in cfg["model"]["merges"]]
    ours, ref = load_both(cfg, tmp_path)
    assert_same(ours, ref, TEXTS, [0, 1, 12092, 50254, 50276])


def test_gpt2_post_processor_and_decoder_flags_load(tmp_path):
    # GPT-2's own tokenizer.json sets add_prefix_space=true on its ByteLevel post-processor and
    # decoder (the pre-tokenizer's is false): there the flag touches offsets only, never ids or
    # decoded text, so such a file loads and matches the reference.
    cfg = config()
    cfg["added_tokens"] = [t for t in cfg["added_tokens"] if t["special"]]
    cfg["normalizer"] = None
    cfg["post_processor"] = {
        "type": "ByteLevel",
        "add_prefix_space": True,
        "trim_offsets": False,
        "use_regex": True,
    }
    cfg["decoder"] = {
        "type": "ByteLevel",
        "add_prefix_space": True,
        "trim_offsets": True,
        "use_regex": False,
    }
    ours, ref = load_both(cfg, tmp_path)
    assert_same(ours, ref, [*TEXTS, " leading", "Hello"], [12092, 1533, 0, 50253, 15])
    # In the pre-tokenizer the flag changes ids, and stays refused.
    cfg["pre_tokenizer"]["add_prefix_space"] = True
    refused(cfg, tmp_path, "pre_tokenizer ByteLevel with add_prefix_space=true")


def test_a_template_post_processor_that_adds_nothing_loads(tmp_path):
    # transformers' GPTNeoXTokenizerFast installs TemplateProcessing("$A:0", "$A:0 $B:1") when
    # it adds neither BOS nor EOS, so a Pythia tokenizer saved with save_pretrained holds one:
    # such files were refused ("only ByteLevel is supported").
    from tokenizers import processors

    ref = tokenizers.Tokenizer.from_file(str(DEFAULT_TOKENIZER))
    plain = processors.TemplateProcessing(single="$A:0", pair="$A:0 $B:1", special_tokens=[])
    byte_level = processors.ByteLevel(trim_offsets=False)
    # A pair template that adds tokens is never used by encode (one text at a time).
    pair = processors.TemplateProcessing(
        single="$A:0", pair="$A:0 <|endoftext|>:0 $B:1", special_tokens=[("<|endoftext|>", 0)]
    )
    nested = processors.Sequence([processors.Sequence([plain]), byte_level])
    for post in (plain, processors.Sequence([byte_level, plain]), pair, nested):
        ref.post_processor = post
        cfg = json.loads(ref.to_str())
        ours, loaded = load_both(cfg, tmp_path)
        assert_same(ours, loaded, TEXTS, [12092, 1533, 0])
    # One that adds EOS changes encode's ids: refused, rather than followed without it.
    ref.post_processor = processors.TemplateProcessing(
        single="$A:0 <|endoftext|>:0", pair="$A:0 $B:1", special_tokens=[("<|endoftext|>", 0)]
    )
    cfg = json.loads(ref.to_str())
    assert ref.encode("Hello world").ids == [12092, 1533, 0]
    refused(cfg, tmp_path, "TemplateProcessing adds special tokens, which is not supported")
    ref.post_processor = processors.BertProcessing(("[SEP]", 1), ("[CLS]", 2))
    cfg = json.loads(ref.to_str())
    refused(cfg, tmp_path, "or a TemplateProcessing that adds no tokens, is supported")


def test_a_normalizer_sequence_of_nfc_loads(tmp_path):
    # [NFC, NFC] was refused ("only NFC is supported"); NFC twice is NFC, as the reference finds.
    nfc = {"type": "NFC"}
    for normalizers in ([nfc, nfc], [nfc, {"type": "Sequence", "normalizers": [nfc]}], []):
        cfg = config()
        cfg["normalizer"] = {"type": "Sequence", "normalizers": normalizers}
        ours, ref = load_both(cfg, tmp_path)
        assert_same(ours, ref, [*TEXTS, "e\u0301 A\u030a\u0323"], [12092])
    cfg["normalizer"] = {"type": "Sequence", "normalizers": [nfc, {"type": "Lowercase"}]}
    refused(cfg, tmp_path, 'unsupported normalizer "Lowercase"')


def test_added_tokens_numbered_as_the_reference_does_load(tmp_path):
    cfg = config()
    # Content already in the vocab takes its vocab id; new content the next id after the vocab
    # and the earlier new added tokens, special or not.
    cfg["added_tokens"] += [
        added(N_VOCAB + 23, "<|b|>"),
        added(25521, "hello", special=True),
        added(N_VOCAB + 24, "<|a|>", special=False),
    ]
    ours, ref = load_both(cfg, tmp_path)
    assert [ref.token_to_id(t) for t in ["<|b|>", "hello", "<|a|>"]] == [50277, 25521, 50278]
    ids = [25521, 50277, 50278, 12092, 0]
    assert_same(ours, ref, [*TEXTS, "<|a|><|b|>hello  hello"], ids)
    assert ours.vocab_size == ref.get_vocab_size() == 50279


@pytest.mark.parametrize(
    ("tokens", "match"),
    [
        # Listed out of id order: the reference numbers them in listing order.
        ([added(50278, "<|b|>"), added(50277, "<|a|>")], r'"<\|b\|>" has id 50278 .* id 50277'),
        # A gap after the vocab: the reference closes it.
        ([added(60000, "<|a|>")], r'"<\|a\|>" has id 60000 .* id 50277'),
        # Content in the vocab under another id: the reference uses the vocab id.
        ([added(50277, "hello")], r'"hello" has id 50277 .* id 25521'),
        # The id of another vocab token ("Hello"): the reference gives a new id.
        ([added(12092, "<|a|>")], r'"<\|a\|>" has id 12092 .* id 50277'),
        ([added(50277, "")], r"added token 50277 has empty content"),
        ([added(50277, "<|a|>"), added(50277, "<|a|>")], r'"<\|a\|>" is listed twice'),
    ],
)
def test_added_token_ids_the_reference_would_not_use_are_refused(tmp_path, tokens, match):
    cfg = config()
    cfg["added_tokens"] += tokens
    refused(cfg, tmp_path, match)


def test_vocab_id_shared_by_two_tokens_is_refused(tmp_path):
    cfg = config()
    cfg["model"]["vocab"]["zzqq"] = 7  # "&" has id 7; the reference decodes 7 to either
    refused(cfg, tmp_path, r'vocab tokens "&" and "zzqq" share id 7')


def test_vocab_id_gap_shifts_added_ids_and_is_refused(tmp_path):
    cfg = config()
    del cfg["model"]["vocab"]["ĠPlaying"]  # id 50000: the vocab has one entry fewer
    cfg["model"]["merges"] = [m for m in cfg["model"]["merges"] if m != "ĠPlay ing"]
    ref = tokenizers.Tokenizer.from_str(json.dumps(cfg))
    assert ref.token_to_id("  ") == 50275  # not the 50276 written in the file
    refused(cfg, tmp_path, r'"                        " has id 50254 .* id 50253')


def test_vocab_id_gap_with_the_reference_numbering_matches_it(tmp_path):
    cfg = config()
    del cfg["model"]["vocab"]["ĠPlaying"]
    cfg["model"]["merges"] = [m for m in cfg["model"]["merges"] if m != "ĠPlay ing"]
    for t in cfg["added_tokens"][2:]:
        t["id"] -= 1  # the first space run now shares 50253 with the vocab's "ĠOutcomes"
    ours, ref = load_both(cfg, tmp_path)
    ids = [50253, 50252, 50275, 49999, 1]
    assert_same(ours, ref, [*TEXTS, " Outcomes  Playing", "a" + " " * 24 + "b"], ids)


@pytest.mark.parametrize("special", [True, False])
def test_normalized_added_token_not_in_nfc_is_refused(tmp_path, special):
    cfg = config()
    cfg["added_tokens"].append(added(N_VOCAB + 23, "A\u030a", special=special, normalized=True))
    ref = tokenizers.Tokenizer.from_str(json.dumps(cfg))
    assert ref.decode([N_VOCAB + 23]) == "\ufffd"  # its NFC form "Å", as byte-level text
    refused(cfg, tmp_path, r"normalized=true with content not in NFC is not supported")


def test_added_tokens_whose_nfc_form_does_not_matter_load(tmp_path):
    cfg = config()
    cfg["added_tokens"] += [
        added(N_VOCAB + 23, "A\u030a", special=True, normalized=False),  # matched as written
        added(N_VOCAB + 24, "\u00c5x", special=True, normalized=True),  # NFC already
    ]
    ours, ref = load_both(cfg, tmp_path)
    assert_same(ours, ref, [*TEXTS, "A\u030a \u00c5x A\u030ax"], [N_VOCAB + 23, N_VOCAB + 24, 5])
    # Without a normalizer the content is the text as written.
    cfg["added_tokens"][-1] = added(N_VOCAB + 24, "B\u030a", special=True, normalized=True)
    cfg["normalizer"] = None
    ours, ref = load_both(cfg, tmp_path)
    assert_same(ours, ref, [*TEXTS, "A\u030a B\u030a"], [N_VOCAB + 23, N_VOCAB + 24, 5])


def without_byte_b() -> dict:
    """The bundled file with the byte "b" (and every merge using it) removed, renumbered."""
    cfg = config()
    vocab = cfg["model"]["vocab"]
    gone = vocab.pop("b")
    for token, id in vocab.items():
        if id > gone:
            vocab[token] = id - 1
    cfg["model"]["merges"] = [m for m in cfg["model"]["merges"] if "b" not in m]
    for t in cfg["added_tokens"]:
        if t["id"] > gone:
            t["id"] -= 1
    return cfg


def test_missing_byte_without_unk_token_is_dropped_like_the_reference(tmp_path):
    ours, ref = load_both(without_byte_b(), tmp_path)
    assert ref.encode("abc").ids == ref.encode("ac").ids
    assert_same(ours, ref, [*TEXTS, "abc", "bbb", " b b", "about  a bbq"], [65, 66, 67])


@pytest.mark.parametrize("key", ["unk_token", "byte_fallback"])
def test_missing_byte_with_unk_token_or_byte_fallback_is_refused(tmp_path, key):
    cfg = without_byte_b()
    cfg["model"][key] = "<|padding|>" if key == "unk_token" else True
    if key == "unk_token":
        # The reference emits the unknown token where the byte is.
        ref = tokenizers.Tokenizer.from_str(json.dumps(cfg))
        assert ref.encode("ab").ids == [66, 1]
    refused(cfg, tmp_path, rf'no token for byte 0x62 \("b"\) and the model sets {key}')


def test_unk_token_is_harmless_when_every_byte_has_a_token(tmp_path):
    cfg = config()
    cfg["model"]["unk_token"] = "<|padding|>"
    cfg["model"]["fuse_unk"] = True
    cfg["model"]["byte_fallback"] = True
    ours, ref = load_both(cfg, tmp_path)
    assert_same(ours, ref, [*TEXTS, "\x00\x7f\u00ff\U0001f600"], [1, 12092])


def test_eod_id_from_the_model_vocab(tmp_path):
    cfg = config()
    cfg["added_tokens"] = []  # "<|endoftext|>" is still in the model vocab, id 0
    ours, ref = load_both(cfg, tmp_path)
    assert ours.eod_id == ref.token_to_id("<|endoftext|>") == 0
    assert_same(ours, ref, TEXTS, [0, 12092])


def test_eod_id_from_a_new_added_token(tmp_path):
    cfg = config()
    del cfg["model"]["vocab"]["<|endoftext|>"]
    cfg["model"]["vocab"]["<|unused|>"] = 0
    cfg["added_tokens"] = [added(N_VOCAB, "<|endoftext|>")]
    ours, ref = load_both(cfg, tmp_path)
    assert ours.eod_id == ref.token_to_id("<|endoftext|>") == N_VOCAB


def test_no_eod_id(tmp_path):
    cfg = config()
    del cfg["model"]["vocab"]["<|endoftext|>"]
    cfg["model"]["vocab"]["<|unused|>"] = 0
    cfg["added_tokens"] = []
    ours, ref = load_both(cfg, tmp_path)
    assert ref.token_to_id("<|endoftext|>") is None
    with pytest.raises(ValueError, match="no <\\|endoftext\\|> token"):
        _ = ours.eod_id


@pytest.mark.parametrize("vocab_token_first", [True, False])
def test_two_added_tokens_with_one_id_are_refused(tmp_path, vocab_token_first):
    # A vocab gap makes the first new added token take len(vocab) = 50253, the id of the vocab's
    # "ĠOutcomes"; listed as an added token too, "ĠOutcomes" shares it. The reference keeps only
    # the later of the two in its id -> token map and no longer cuts the earlier out of the text;
    # this crate matched both, and gave other ids for the earlier one's text.
    cfg = config()
    del cfg["model"]["vocab"]["ĠPlaying"]
    cfg["model"]["merges"] = [m for m in cfg["model"]["merges"] if m != "ĠPlay ing"]
    for t in cfg["added_tokens"][2:]:
        t["id"] -= 1
    outcomes = added(50253, "ĠOutcomes", special=False)
    if vocab_token_first:
        cfg["added_tokens"].insert(2, outcomes)
        earlier = "ĠOutcomes"
    else:
        cfg["added_tokens"].append(outcomes)
        earlier = " " * 24
    ref = tokenizers.Tokenizer.from_str(json.dumps(cfg))
    assert ref.token_to_id(earlier) == 50253
    assert 50253 not in ref.encode(earlier).ids, "the oracle matches both tokens again"
    refused(cfg, tmp_path, rf'added tokens "{earlier}" and ".*" both get id 50253')
