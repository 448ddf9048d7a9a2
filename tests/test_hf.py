"""Hugging Face checkpoint directories: our saves load in transformers, and theirs load in ours."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from pathlib import Path

import pytest
import torch
from train_fixtures import tiny_config

from pythia_train.hf import CheckpointError, config_from_hf, load_hf, load_hf_state_dict, save_hf
from pythia_train.model import build_model

transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")


def rel_err(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max())


def tokens_for(cfg, seed=0):
    return torch.randint(0, cfg.vocab_size, (2, 29), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "cfg, kwargs",
    [
        (tiny_config(), {}),
        (tiny_config(gelu_approximate="tanh", rotary_pct=0.5), {"safe_serialization": False}),
        (tiny_config(num_layers=3, hidden_size=96, num_heads=6), {"max_shard_bytes": 60_000}),
        (tiny_config(), {"max_shard_bytes": 60_000, "safe_serialization": False}),
        (tiny_config(rotary_pct=0.0), {}),
    ],
    ids=["safetensors", "pytorch_model.bin", "sharded-safetensors", "sharded-bin", "no-rotary"],
)
def test_our_checkpoint_loads_in_transformers_with_equal_logits(tmp_path, cfg, kwargs):
    model = build_model(cfg, seed=7).eval()
    out = save_hf(model, tmp_path / "ckpt", **kwargs)
    names = sorted(p.name for p in out.iterdir())
    if "max_shard_bytes" in kwargs:
        index = (
            "model.safetensors.index.json"
            if kwargs.get("safe_serialization", True)
            else ("pytorch_model.bin.index.json")
        )
        assert index in names and len(names) > 3
    hf = transformers.GPTNeoXForCausalLM.from_pretrained(out, local_files_only=True).eval()
    x = tokens_for(cfg)
    with torch.no_grad():
        assert rel_err(model(x), hf(x).logits) < 1e-5
    # And back: our loader gives the very same tensors.
    again = load_hf(out)
    for (n, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), n
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_a_compiled_model_saves_under_the_names_transformers_reads(tmp_path):
    model = build_model(tiny_config(), seed=4).eval()
    out = save_hf(torch.compile(model), tmp_path / "ckpt")  # compiles nothing: never called
    names = set(safetensors_torch.load_file(str(out / "model.safetensors")))
    assert names == set(model.state_dict())
    hf = transformers.GPTNeoXForCausalLM.from_pretrained(out, local_files_only=True).eval()
    x = tokens_for(tiny_config())
    with torch.no_grad():
        assert rel_err(model(x), hf(x).logits) < 1e-5


def tiny_hf_config(**settings):
    """transformers' GPT-NeoX config of ``tiny_config``'s shape, with ``settings``."""
    return transformers.GPTNeoXConfig(
        vocab_size=512,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        max_position_embeddings=64,
        **settings,
    )


def test_transformers_checkpoint_loads_in_ours(tmp_path):
    cfg = tiny_config()
    conf = tiny_hf_config(
        rotary_pct=0.25,
        rotary_emb_base=10000,
        use_parallel_residual=True,
        hidden_act="gelu",
        tie_word_embeddings=False,
    )
    torch.manual_seed(11)
    hf = transformers.GPTNeoXForCausalLM(conf).eval()
    with torch.no_grad():  # transformers' init leaves biases at 0; make them count
        for name, p in hf.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    hf.save_pretrained(tmp_path / "theirs", max_shard_size="100KB")
    ours = load_hf(tmp_path / "theirs")
    assert ours.cfg.num_layers == cfg.num_layers and ours.cfg.rotary_dim == 4
    x = tokens_for(cfg, 1)
    with torch.no_grad():
        assert rel_err(ours(x), hf(x).logits) < 1e-5


def test_a_tied_checkpoint_is_refused_with_a_way_to_untie_it_that_works(tmp_path):
    conf = tiny_hf_config(tie_word_embeddings=True)
    torch.manual_seed(5)
    model = transformers.GPTNeoXForCausalLM(conf).eval()
    model.save_pretrained(tmp_path / "tied")
    with pytest.raises(CheckpointError, match="tie_word_embeddings is true") as e:
        load_hf(tmp_path / "tied")
    assert "save_pretrained" in str(e.value)
    # The recipe the message gives.
    model.config.tie_word_embeddings = False
    model.get_output_embeddings().weight = torch.nn.Parameter(
        model.get_input_embeddings().weight.clone()
    )
    model.save_pretrained(tmp_path / "untied")
    x = tokens_for(tiny_config(), 2)
    with torch.no_grad():
        assert rel_err(load_hf(tmp_path / "untied")(x), model(x).logits) < 1e-5


def test_legacy_buffers_are_ignored(tmp_path):
    cfg = tiny_config()
    model = build_model(cfg, seed=3)
    d = save_hf(model, tmp_path / "old")
    state = safetensors_torch.load_file(str(d / "model.safetensors"))
    for i in range(cfg.num_layers):  # what pre-2023 Pythia checkpoints carry
        state[f"gpt_neox.layers.{i}.attention.bias"] = torch.ones(1, 1, 64, 64, dtype=torch.bool)
        state[f"gpt_neox.layers.{i}.attention.masked_bias"] = torch.tensor(-1e9)
        state[f"gpt_neox.layers.{i}.attention.rotary_emb.inv_freq"] = torch.ones(2)
    (d / "model.safetensors").unlink()
    torch.save(state, d / "pytorch_model.bin")
    assert set(load_hf_state_dict(d)) == set(model.state_dict())
    x = tokens_for(cfg)
    with torch.no_grad():
        assert torch.equal(load_hf(d)(x), model(x))


def test_bad_checkpoints_name_the_file_and_problem(tmp_path):
    with pytest.raises(CheckpointError, match=r"not a checkpoint directory \(no such file or"):
        load_hf(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match=r"not a checkpoint directory \(a file, not a dir"):
        load_hf_state_dict(tmp_path / "file")
    model = build_model(tiny_config(), seed=0)
    d = save_hf(model, tmp_path / "ck")
    conf = json.loads((d / "config.json").read_text())

    conf["num_hidden_layers"] = 3
    (d / "config.json").write_text(json.dumps(conf))
    with pytest.raises(CheckpointError, match="missing.*layers.2"):
        load_hf(d)

    conf["num_hidden_layers"], conf["hidden_size"], conf["intermediate_size"] = 2, 128, 512
    (d / "config.json").write_text(json.dumps(conf))
    with pytest.raises(CheckpointError, match="has shape"):
        load_hf(d)

    conf["model_type"] = "llama"
    (d / "config.json").write_text(json.dumps(conf))
    with pytest.raises(CheckpointError, match="config.json: model_type is 'llama'"):
        load_hf(d)

    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        load_hf(d)

    (d / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="model.safetensors: cannot read weights"):
        load_hf_state_dict(d)
    (d / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_hf_state_dict(d)


_TINY_HF = {
    "model_type": "gpt_neox",
    "vocab_size": 512,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 256,
}


def test_a_checkpoint_without_attention_biases_is_refused_with_what_to_use(tmp_path):
    # A real transformers model of that kind: the refusal said only "not supported".
    model = transformers.GPTNeoXForCausalLM(tiny_hf_config(attention_bias=False))
    model.save_pretrained(tmp_path / "nobias")
    with pytest.raises(CheckpointError, match="attention_bias is false") as e:
        load_hf(tmp_path / "nobias")
    assert "Load it with transformers' GPTNeoXForCausalLM" in str(e.value)


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda c: [c], "config.json: not a JSON object"),
        (lambda c: {**c, "layer_norm_eps": None}, "config.json: layer_norm_eps is null"),
        (lambda c: {**c, "max_position_embeddings": None}, "max_position_embeddings is null"),
        (lambda c: {**c, "hidden_size": "64"}, 'config.json: hidden_size is "64", not an'),
        (lambda c: {**c, "vocab_size": 511.5}, "config.json: vocab_size is 511.5, not an"),
        (lambda c: {**c, "rotary_pct": "0.25"}, 'config.json: rotary_pct is "0.25"'),
        (lambda c: {**c, "rope_scaling": "linear"}, "rope_scaling / rope_parameters is"),
        (lambda c: {**c, "hidden_act": ["gelu"]}, "unsupported hidden_act"),
        (lambda c: {**c, "num_attention_heads": 5}, "config.json: hidden_size 64 is not div"),
        # Python's json reads Infinity and NaN: an OverflowError traceback, a model of NaNs.
        (lambda c: {**c, "hidden_size": float("inf")}, "config.json: hidden_size is Infinity"),
        (lambda c: {**c, "layer_norm_eps": float("nan")}, "config.json: layer_norm_eps is NaN"),
        # An integer past float's range (json reads any length): isfinite raised OverflowError.
        (lambda c: {**c, "vocab_size": 10**400}, "config.json: vocab_size is 1000"),
        (lambda c: {**c, "layer_norm_eps": 10**400}, "config.json: layer_norm_eps is 1000"),
    ],
)
def test_a_malformed_config_is_one_clear_error(tmp_path, edit, problem):
    # Such values ended in an AttributeError or TypeError traceback (a null, a string, a list).
    d = save_hf(build_model(tiny_config(), seed=0), tmp_path / "ck")
    conf = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps(edit(conf)))
    with pytest.raises(CheckpointError, match=re.escape(problem)):
        load_hf(d)


def test_malformed_weights_are_one_clear_error(tmp_path):
    d = save_hf(build_model(tiny_config(), seed=0), tmp_path / "ck", max_shard_bytes=60_000)
    index = d / "model.safetensors.index.json"
    weight_map = json.loads(index.read_text())["weight_map"]
    index.write_text(json.dumps(list(weight_map)))
    with pytest.raises(CheckpointError, match="index.json: no weight_map"):
        load_hf(d)
    index.write_text(json.dumps({"weight_map": weight_map}))
    # Integer tensors were cast to float by --init-from and trained without a word.
    shard = d / weight_map["embed_out.weight"]
    state = safetensors_torch.load_file(shard)
    state["embed_out.weight"] = state["embed_out.weight"].to(torch.int32)
    safetensors_torch.save_file(state, shard)
    with pytest.raises(CheckpointError, match="embed_out.weight is stored as torch.int32"):
        load_hf(d, dtype=torch.float32)


@pytest.mark.parametrize(
    "rope, accepted",
    [
        ({"rotary_pct": 0.5, "rotary_emb_base": 500}, True),
        ({"rope_parameters": {"rope_type": "default", "partial_rotary_factor": 1.0}}, True),
        ({"rotary_pct": 0.5, "rope_scaling": None, "rope_parameters": {"rope_theta": 500}}, True),
        ({"rope_scaling": {"type": "default"}, "rotary_pct": 0.5}, True),
        # transformers before 4.45 wrote the scaling's type as "type"
        ({"rope_scaling": {"type": "linear", "factor": 4.0}}, False),
        ({"rope_scaling": {"type": "dynamic", "factor": 2.0}}, False),
        ({"rope_parameters": {"rope_type": "linear", "factor": 2.0}}, False),
        ({"rotary_pct": 0.5, "rope_parameters": {"partial_rotary_factor": 1.0}}, False),
        ({"rotary_emb_base": 77, "rope_parameters": {"rope_theta": 500}}, False),
    ],
)
def test_rope_settings_are_read_as_transformers_reads_them(rope, accepted):
    conf = {**_TINY_HF, **rope}
    if not accepted:
        with pytest.raises(CheckpointError, match="rope type|disagree"):
            config_from_hf(json.loads(json.dumps(conf)))
        return
    ours = config_from_hf(json.loads(json.dumps(conf)))
    theirs = transformers.GPTNeoXConfig.from_dict(json.loads(json.dumps(conf))).rope_parameters
    assert theirs["rope_type"] == "default"
    assert (ours.rotary_pct, ours.rotary_base) == (
        theirs["partial_rotary_factor"],
        theirs["rope_theta"],
    )


def test_a_directory_of_checkpoints_names_them(tmp_path):
    # Such as a training run's --save directory given to --init-from.
    model = build_model(tiny_config(), seed=0)
    for step in (2, 10, 9):
        save_hf(model, tmp_path / "run" / f"step{step}")
    with pytest.raises(CheckpointError, match=r"no config.json.*\(step2, step9, step10\).*step10$"):
        load_hf(tmp_path / "run")
    # A checkpoint still being written (or left by a kill) is none to pass: it was named, and
    # was the one suggested when it was the only one.
    shutil.copytree(tmp_path / "run" / "step10", tmp_path / "run" / ".step20.partial")
    with pytest.raises(CheckpointError, match=r"\(step2, step9, step10\).*step10$"):
        load_hf(tmp_path / "run")
    for step in (2, 9, 10):
        shutil.rmtree(tmp_path / "run" / f"step{step}")
    with pytest.raises(CheckpointError) as e:
        load_hf(tmp_path / "run")
    assert "partial" not in str(e.value)


def test_save_replaces_an_existing_checkpoint_atomically(tmp_path):
    a, b = build_model(tiny_config(), seed=1), build_model(tiny_config(), seed=2)
    save_hf(a, tmp_path / "ck")
    save_hf(b, tmp_path / "ck")
    loaded = load_hf(tmp_path / "ck")
    assert torch.equal(loaded.embed_out.weight, b.embed_out.weight)
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


def test_the_replaced_directory_is_swapped_or_comes_back_after_a_kill(tmp_path, monkeypatch):
    import pythia_train.hf as hf

    final, new = tmp_path / "step10", tmp_path / ".step10.partial"
    for d, text in ((final, "old"), (new, "new")):
        d.mkdir()
        (d / "f").write_text(text)
    hf.replace_dir(new, final)  # one renameat2 swap on Linux
    assert (final / "f").read_text() == "new" and sorted(tmp_path.iterdir()) == [final]
    # Where the file system cannot swap, the old directory is parked first; a kill between the
    # two renames left no step10 at all, so resuming from SAVE (latest: step10) failed.
    monkeypatch.setattr(hf, "_exchange", lambda a, b: False)
    new.mkdir()
    real_rename = os.rename

    def killed_after_parking(src, dst):
        real_rename(src, dst)
        if Path(dst) == hf.old_dir(final):
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "rename", killed_after_parking)
    with pytest.raises(KeyboardInterrupt):
        hf.replace_dir(new, final)
    monkeypatch.setattr(os, "rename", real_rename)
    assert not final.exists()
    (tmp_path / "latest").write_text("step10\n")
    (final.with_name(".step10.old") / "trainer_state.pt").write_bytes(b"")
    from pythia_train.checkpoint import resolve_checkpoint

    assert resolve_checkpoint(tmp_path) == final and (final / "f").read_text() == "new"


def test_checkpoint_files_are_readable_as_the_umask_allows(tmp_path):
    # Temp directories are 0700 and safetensors writes 0600: colleagues could not read them.
    old = os.umask(0o022)
    try:
        save_hf(build_model(tiny_config(), seed=1), tmp_path / "ck")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "ck").stat().st_mode) == 0o755
    assert {stat.S_IMODE(f.stat().st_mode) for f in (tmp_path / "ck").iterdir()} == {0o644}


def test_save_refuses_to_replace_what_is_not_a_checkpoint(tmp_path):
    # save_hf swaps the whole directory: it deleted a notebook's other files beside the
    # target, and replaced a file of that name with a directory.
    model = build_model(tiny_config(), seed=1)
    mine = tmp_path / "runs"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="not empty"):
        save_hf(model, mine)
    assert (mine / "notes.txt").read_text() == "keep me"
    (mine / "config.json").write_text("{}")  # a project's own config.json is no checkpoint
    with pytest.raises(CheckpointError, match="not empty"):
        save_hf(model, mine)
    assert (mine / "notes.txt").read_text() == "keep me"
    a_file = tmp_path / "weights"
    a_file.write_text("keep me too")
    with pytest.raises(CheckpointError, match="not a directory"):
        save_hf(model, a_file)
    assert a_file.read_text() == "keep me too"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "weights"]  # no temp left
    empty = tmp_path / "empty"
    empty.mkdir()
    save_hf(model, empty)
    assert torch.equal(load_hf(empty).embed_out.weight, model.embed_out.weight)


def test_dtype_may_be_named_and_a_wrong_one_is_a_type_error(tmp_path):
    # load_hf(dtype="bfloat16") failed with "Invalid device string: 'bfloat16'" (Tensor.to).
    d = save_hf(build_model(tiny_config(), seed=1), tmp_path / "ck", dtype="float16")
    assert {p.dtype for p in load_hf(d).parameters()} == {torch.float16}
    assert {p.dtype for p in load_hf(d, dtype="torch.bfloat16").parameters()} == {torch.bfloat16}
    for bad in ("bf16", "int64", 16):
        with pytest.raises(TypeError, match="dtype must be a floating-point torch.dtype"):
            load_hf(d, dtype=bad)
