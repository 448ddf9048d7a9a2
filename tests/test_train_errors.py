"""pythia-train's refusals: bad data, configs, checkpoints and outputs give one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from train_fixtures import random_rows, write_rows

import pythia_data
import pythia_train
from pythia_data import IndexedDatasetBuilder
from pythia_train.cli import main
from pythia_train.neox_config import read_neox_config
from pythia_train.optim import pythia_lr

SEQ = 16


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("rows")
    return {
        "a": write_rows(d / "a", random_rows(64, SEQ, 512, seed=1)),
        "b": write_rows(d / "b", random_rows(64, SEQ, 512, seed=2)),
    }


def cli(*args, data=None, **kw):
    base = [
        "--num-layers",
        "2",
        "--hidden-size",
        "64",
        "--num-attention-heads",
        "4",
        "--vocab-size",
        "512",
        "--seq-length",
        str(SEQ),
        "--global-batch",
        "8",
        "--micro-batch",
        "4",
        "--train-iters",
        "2",
        "--lr",
        "1e-2",
        "--save-steps",
        "1,2",
        "--device",
        "cpu",
        "--no-progress",
    ]
    if data is not None:
        base += ["--data", str(data)]
    return CliRunner().invoke(main, [*base, *map(str, args)], **kw)


def one_line_error(result, *fragments: str) -> str:
    out = result.output
    assert result.exit_code == 1, out
    assert "Traceback" not in out and out.count("\n") == 1, out
    assert out.startswith("pythia-train: error: "), out
    for f in fragments:
        assert f in out, out
    return out


def usage_error(result, *fragments: str) -> str:
    """A wrong option value: click's usage error, status 2, naming what is wrong."""
    out = result.output
    assert result.exit_code == 2, out
    assert "Traceback" not in out and "\nError: " in out, out
    for f in fragments:
        assert f in out, out
    return out


def test_token_ids_outside_the_vocabulary_are_a_one_line_error(data):
    out = one_line_error(cli("--vocab-size", "256", data=data["a"]), "--vocab-size", "256")
    assert str(data["a"]) in out and "token id" in out


def test_negative_token_ids_are_not_a_vocabulary_problem(tmp_path):
    # Data read as a signed dtype (here a uint16 dataset whose .idx says int16): the advice
    # was to pass a --vocab-size above the data's largest id, which cannot fix it.
    rows = random_rows(64, SEQ, 512, seed=1)
    rows[3, 5] = 40_000
    with IndexedDatasetBuilder(tmp_path / "signed", dtype=np.int16) as b:
        for row in rows:
            b.add_item(row.view(np.int16))
    out = one_line_error(
        cli(data=tmp_path / "signed"), "row 3 has the negative token id -25536", "read as int16"
    )
    assert "dtype is wrong" in out and "a larger --vocab-size cannot help" in out


def test_a_directory_as_data_lists_the_datasets_in_it(data, tmp_path):
    # It said "DIR.idx: No such file or directory", as if the directory's name were wrong.
    folder = data["a"].parent
    for given in (str(folder), f"{folder}/"):
        one_line_error(
            cli(data=given),
            f"{given}: a directory; --data takes a dataset prefix",
            f"the datasets in it: {folder / 'a'}, {folder / 'b'}",
        )
    one_line_error(cli(data=tmp_path), "it holds no dataset (no *.idx)")


def test_a_zero_length_cosine_is_one_step_as_in_gpt_neox(data):
    # GPT-NeoX v1.0 takes max(1, lr_decay_iters): the peak (or, with a warmup, 0) for the
    # first step, then min_lr.
    assert pythia_lr(0, 1.0, 0.1, 0.0, 0) == 1.0
    assert pythia_lr(1, 1.0, 0.1, 0.0, 0) == pythia_lr(5, 1.0, 0.1, 0.0, 0) == 0.1
    assert pythia_lr(0, 1.0, 0.1, 0.01, 1) == 0.0
    assert pythia_lr(1, 1.0, 0.1, 0.01, 1) == 0.1
    # Half the decay is warmup: the cosine is capped at its start, so the peak stays.
    assert pythia_lr(1, 1.0, 0.1, 1.0, 2) == pythia_lr(3, 1.0, 0.1, 1.0, 2) == 1.0
    result = cli("--lr-decay-iters", "0", data=data["a"])
    assert result.exit_code == 0, result.output
    result = cli("--lr-decay-iters", "-1", data=data["a"])
    usage_error(result, "lr-decay-iters")


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s.pop("data"),
        lambda s: s.update(iteration="3"),
        lambda s: s["data"].pop("global_batch"),
        lambda s: s.update(optimizer=[1, 2]),
    ],
)
def test_a_damaged_trainer_state_is_a_one_line_error(data, tmp_path, damage):
    assert cli("--save", tmp_path / "ck", "--train-iters", "1", data=data["a"]).exit_code == 0
    f = tmp_path / "ck" / "step1" / "trainer_state.pt"
    state = torch.load(f, weights_only=False)
    damage(state)
    torch.save(state, f)
    one_line_error(cli("--resume", tmp_path / "ck", data=data["a"]), str(f))


YML_ERRORS = [
    ('{"num-layers": "2"}', "num-layers must be an integer"),
    ('{"optimizer": {"type": "Adam", "params": {"betas": 0.9}}}', "betas must be a list"),
    ('{"optimizer": {"type": "Adam", "params": {"lr": "fast"}}}', "lr must be a number"),
    ('{"extra-save-iters": 5}', "extra-save-iters must be a list of integers"),
    ('{"train-data-paths": "/data/x"}', "train-data-paths must be a list"),
    ('{"gpt-j-residual": "false"}', "gpt-j-residual must be true or false"),
    ('{"train-iters": true}', "train-iters must be an integer"),
    ('{"fp16": {"enabled": true}, "bf16": {"enabled": true}}', "both fp16 and bf16"),
    ('{"rotary-pct": 2.0}', "rotary-pct must be in [0, 1]"),
    ('{"rotary-pct": -0.5}', "rotary-pct must be in [0, 1]"),
    ('{"warmup": -1}', "warmup must be"),
    ('{"optimizer": {"type": "Adam", "params": {"lr": 1e-3}}, "min_lr": 0.01}', "above"),
    # Keys that would train something else were ignored; now they are refused.
    ('{"hidden-dropout": 0.1}', "hidden-dropout 0.1 is not supported"),
    ('{"attention_dropout": 0.1}', "attention-dropout 0.1 is not supported"),
    ('{"no-weight-tying": false}', "no-weight-tying False is not supported"),
    ('{"pos-emb": "learned"}', "pos-emb 'learned' is not supported"),
    ('{"norm": "rmsnorm"}', "norm 'rmsnorm' is not supported"),
    ('{"precision": "bf16"}', "precision 'bf16' is not one of GPT-NeoX's: fp32, fp16, bfloat16"),
    ('{"train-iters": 5, "train_iters": 6}', "train-iters is given twice, as 5 and 6"),
    ("train-iters: 10\ntrain-iters: 5\n", "the key 'train-iters' is given twice"),
    ('{"precision": "fp32", "fp16": {"enabled": true}}', "disagree"),
    ('{"precision": "bfloat16", "bf16": {"enabled": false}}', "disagree"),
    ('{"save-interval": 500, "checkpoint-factor": 1000}', "disagree"),
    # A static loss scale (DeepSpeed's loss_scale above 0) was ignored: the run scaled
    # dynamically from 2^12.
    ('{"fp16": {"enabled": true, "loss_scale": 128}}', "fp16 loss_scale 128 (a static"),
    # Keys that change the run and were ignored: local/sparse attention, log-spaced saves.
    ('{"attention-config": [[["global", "local"], 6]]}', "attention-config local is not"),
    ('{"attention_config": [[["sparse_fixed"], 2]]}', "sparse_fixed is not supported"),
    ('{"attention-config": "flash"}', "attention-config must be a list like"),
    ('{"attention-config": ["flash", "local"]}', "attention-config local is not"),
    ('{"checkpoint-scale": "log"}', "checkpoint-scale 'log' is not supported"),
    (
        '{"train_batch_size": 16, "train_micro_batch_size_per_gpu": 4, "gas": 2}',
        "train-batch-size 16 is not train-micro-batch-size-per-gpu 4 × "
        "gradient-accumulation-steps 2 × 1 data-parallel ranks (8)",
    ),
]


@pytest.mark.parametrize("text, message", YML_ERRORS)
def test_yml_values_of_the_wrong_type_are_refused(tmp_path, text, message):
    p = tmp_path / "bad.yml"
    p.write_text(text)
    with pytest.raises(ValueError, match="bad.yml: ") as e:
        read_neox_config(p)
    assert message in str(e.value)


def test_yml_numbers_are_read_as_gpt_neox_means_them(tmp_path):
    p = tmp_path / "ok.yml"
    p.write_text(
        '{"optimizer": {"params": {"lr": 1e-3, "eps": 1.0e-8, "betas": [0.9, 1]}},'
        ' "min_lr": 1e-4, "warmup": 0, "gpt-j-residual": false, "seq-length": 16}'
    )
    conf = read_neox_config(p)
    assert conf["lr"] == 1e-3 and conf["min_lr"] == 1e-4 and conf["betas"] == (0.9, 1.0)
    assert conf["warmup"] == 0.0 and conf["parallel_residual"] is False


def test_yml_keys_of_the_pythia_configs(tmp_path):
    # The published Pythia configs say "save-interval" (GPT-NeoX v1.0), and Pythia's values of
    # the architecture keys are accepted; "bfloat16" is GPT-NeoX's name for bf16.
    p = tmp_path / "pythia.yml"
    p.write_text(
        '{"save-interval": 500, "hidden-dropout": 0, "attention-dropout": 0.0,'
        ' "no-weight-tying": true, "pos-emb": "rotary", "norm": "layernorm",'
        ' "precision": "bfloat16", "train_batch_size": 16,'
        ' "train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 2}'
    )
    conf = read_neox_config(p, world_size=2)
    assert conf["checkpoint_factor"] == 500 and conf["precision"] == "bf16"
    assert conf["global_batch"] == 16 and conf["micro_batch"] == 4


def test_an_expanded_attention_config_is_read_as_gpt_neox_reads_it(tmp_path):
    # GPT-NeoX's expand_attention_types takes a list of strings as one type per layer: such a
    # full-attention config was refused as malformed.
    p = tmp_path / "attn.yml"
    p.write_text('{"attention-config": ["flash", "global"]}')
    read_neox_config(p)
    p.write_text('{"attention-config": [[["flash"], "all"]]}')
    read_neox_config(p)


def test_a_model_config_silent_on_an_architecture_key_is_what_gpt_neox_builds(tmp_path):
    # GPT-NeoX's own configs/125M.yml names no rotary-pct (GPT-NeoX: 1.0): the base --model's
    # 0.25 was trained. Its sequential residual is GPT-NeoX's default too.
    p = tmp_path / "model.yml"
    p.write_text('{"num-layers": 2, "hidden-size": 64, "num-attention-heads": 4}')
    conf = read_neox_config(p)
    assert conf["rotary_pct"] == 1.0 and conf["parallel_residual"] is False
    # GPT-NeoX's bias-gelu-fusion defaults to false: F.gelu, the exact GELU (tanh was trained).
    assert conf["gelu"] == "exact"
    # What pythia-train cannot build (learned positions, tied embeddings, dropout) is said.
    notes = " ".join(conf["notes"])
    for key in ("pos-emb", "no-weight-tying", "hidden-dropout", "attention-dropout"):
        assert f"{key} is not given, so GPT-NeoX would build" in notes
    # Pythia's configs give them all: nothing to note, their values kept.
    p.write_text(
        '{"num-layers": 2, "hidden-size": 64, "num-attention-heads": 4, "rotary-pct": 0.25,'
        ' "gpt-j-residual": true, "pos-emb": "rotary", "no-weight-tying": true,'
        ' "hidden-dropout": 0, "attention-dropout": 0, "bias-gelu-fusion": true}'
    )
    conf = read_neox_config(p)
    assert conf["rotary_pct"] == 0.25 and conf["parallel_residual"] is True
    assert conf["gelu"] == "tanh"  # GPT-NeoX's fused bias+GELU is the tanh approximation
    assert "notes" not in conf


def test_a_config_s_bias_gelu_fusion_picks_the_gelu_trained(data, tmp_path):
    # It was ignored as a fusion switch: "bias-gelu-fusion": false (GPT-NeoX: F.gelu, exact)
    # trained the --gelu default, tanh.
    p = tmp_path / "gelu.yml"
    p.write_text('{"bias-gelu-fusion": false}')
    assert read_neox_config(p)["gelu"] == "exact"
    p.write_text('{"bias-gelu-fusion": true}')
    assert read_neox_config(p)["gelu"] == "tanh"
    p.write_text('{"bias-gelu-fusion": false}')
    result = cli("--config", p, "--save", tmp_path / "ck", "--train-iters", "1", data=data["a"])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "ck" / "step1" / "config.json").read_text())
    assert config["hidden_act"] == "gelu"  # the exact GELU
    # The command line wins over the file.
    result = cli(
        "--config",
        p,
        "--gelu",
        "tanh",
        "--save",
        tmp_path / "ck2",
        "--train-iters",
        "1",
        data=data["a"],
    )
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "ck2" / "step1" / "config.json").read_text())
    assert config["hidden_act"] == "gelu_new"  # tanh


def test_a_yml_fp16_hysteresis_is_noted(data, tmp_path):
    # Pythia's configs (and DeepSpeed's default) say hysteresis 2, which GradScaler does not
    # follow: it was ignored without a word.
    p = tmp_path / "fp16.yml"
    p.write_text('{"fp16": {"enabled": true, "loss_scale": 0, "hysteresis": 2}}')
    assert "fp16 hysteresis 2 is not followed" in read_neox_config(p)["fp16_hysteresis_note"]
    result = cli("--config", p, "--precision", "fp32", data=data["a"])
    assert result.exit_code == 0, result.output
    assert "hysteresis" not in result.output  # not an fp16 run: nothing to note
    result = cli("--config", p, data=data["a"])
    assert result.exit_code == 0, result.output
    assert "note: " in result.output and "fp16 hysteresis 2 is not followed" in result.output
    p.write_text('{"fp16": {"enabled": true, "hysteresis": 1}}')
    assert "fp16_hysteresis_note" not in read_neox_config(p)


def test_a_yml_static_loss_scale_is_refused_only_for_an_fp16_run(data, tmp_path):
    # --precision on the command line wins over the config's fp16: a bf16 or fp32 run scales
    # no loss, and was refused for the config's static scale all the same.
    p = tmp_path / "static.yml"
    p.write_text('{"fp16": {"enabled": true, "loss_scale": 128}}')
    result = cli("--config", p, "--precision", "fp32", data=data["a"])
    assert result.exit_code == 0, result.output
    one_line_error(cli("--config", p, data=data["a"]), "fp16 loss_scale 128 (a static")
    one_line_error(cli("--config", p, "--precision", "fp16", data=data["a"]), "fp16 loss_scale 128")


def test_a_yml_optimizer_without_the_run_s_other_settings_is_noted(data, tmp_path):
    # GPT-NeoX decays to min_lr 0 with weight decay 0.01, no clipping and a linear decay where
    # a config names none of them (Pythia's 6.7b and 13b-deduped configs give no min_lr):
    # pythia-train's Pythia defaults trained another run without a word.
    p = tmp_path / "opt.yml"
    p.write_text('{"optimizer": {"type": "Adam", "params": {"lr": 0.001}}}')
    result = cli("--config", p, data=data["a"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    for key, theirs in (
        ("min-lr", "0 (the lr decays to 0)"),
        ("weight-decay", "0.01"),
        ("gradient-clipping", "none"),
        ("lr-decay-style", "linear"),
    ):
        assert f"sets the optimizer but not {key}: GPT-NeoX would use {theirs}" in out, out
    # What the command line sets, or the config gives, is not noted.
    result = cli("--config", p, "--min-lr", "0", "--clip-grad", "0.5", data=data["a"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "not min-lr" not in out and "not gradient-clipping" not in out, out
    assert "not weight-decay" in out
    p.write_text(
        '{"optimizer": {"type": "Adam", "params": {"lr": 0.001}}, "min_lr": 0.0001,'
        ' "weight-decay": 0.1, "gradient_clipping": 1.0, "lr-decay-style": "cosine"}'
    )
    result = cli("--config", p, data=data["a"])
    assert result.exit_code == 0 and "sets the optimizer but" not in result.output, result.output


def test_a_misspelt_yml_key_is_noted(data, tmp_path):
    # "train-iter" was ignored without a word, and the run trained the default length.
    p = tmp_path / "typo.yml"
    p.write_text('{"train-iter": 1, "eval-interval": 1000, "pipe-parallel-size": 1}')
    assert read_neox_config(p)["notes"] == [
        f"{p}: train-iter is no key pythia-train reads, so it is ignored; did you mean train-iters?"
    ]
    result = cli("--config", p, data=data["a"])
    assert result.exit_code == 0, result.output
    assert result.output.count("note:") == 1 and "did you mean train-iters?" in result.output
    # GPT-NeoX's own keys near ours (eval-interval, pipe-parallel-size) are not noted.
    p.write_text('{"eval-interval": 1000, "pipe-parallel-size": 1, "test-data-paths": []}')
    assert "notes" not in read_neox_config(p)


def test_a_cli_yml_error_is_one_line(data, tmp_path):
    p = tmp_path / "bad.yml"
    p.write_text('{"gpt-j-residual": "false"}')
    one_line_error(cli("--config", p, data=data["a"]), "gpt-j-residual")


def test_a_new_run_refuses_another_runs_save_directory_and_log(data, tmp_path):
    ck, log = tmp_path / "ck", tmp_path / "log.jsonl"
    assert cli("--save", ck, "--log-file", log, data=data["a"]).exit_code == 0
    before = sorted(p.name for p in ck.iterdir())
    one_line_error(cli("--save", ck, data=data["a"]), str(ck), "--resume")
    one_line_error(cli("--log-file", log, data=data["a"]), str(log), "--resume")
    assert sorted(p.name for p in ck.iterdir()) == before
    assert len(log.read_text().splitlines()) == 2
    (tmp_path / "empty").mkdir()
    assert cli("--save", tmp_path / "empty", data=data["a"]).exit_code == 0


@pytest.mark.parametrize("below", ["x.jsonl", "sub/x.jsonl"])
def test_a_log_file_below_a_file_is_a_one_line_error(data, tmp_path, below):
    # It was a bare "[Errno 17] File exists: '.../afile'".
    (tmp_path / "afile").write_text("")
    log = tmp_path / "afile" / below
    for resume in ([], ["--save", tmp_path / "ck", "--resume", tmp_path / "ck"]):
        one_line_error(
            cli("--log-file", log, *resume, data=data["a"]),
            f"--log-file: cannot write {log}",
            f"{tmp_path / 'afile'}",
            "not a folder",
        )
    assert not (tmp_path / "ck").exists()


def test_an_unwritable_save_or_log_folder_is_a_one_line_error(data, tmp_path, monkeypatch):
    # --save failed at the first checkpoint due (after the steps before it, unless step 0),
    # naming the hidden folder the checkpoint is written in; --log-file named the temporary of
    # its hidden owner file: "[Errno 13] Permission denied: '.../..log.jsonl.owner.tmp-1234'".
    # Refused here as a read-only folder refuses them, so that root sees it too.
    import tempfile

    import pythia_train.checkpoint as checkpoint

    def refused(*args, dir=None, **kw):
        raise PermissionError(13, "Permission denied", str(Path(dir) / ".probe-x"))

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    save = tmp_path / "ck"
    one_line_error(
        cli("--save", save, data=data["a"]),
        f"--save: cannot write checkpoints to {save}: {tmp_path}: Permission denied",
    )
    assert not save.exists()
    monkeypatch.undo()
    log = tmp_path / "sub" / "log.jsonl"

    def refusing_the_owner(path, text):
        raise PermissionError(13, "Permission denied", str(path.with_name(f".{path.name}.tmp-1")))

    monkeypatch.setattr(checkpoint, "_write_atomic_text", refusing_the_owner)
    out = one_line_error(
        cli("--log-file", log, data=data["a"]),
        f"--log-file: {tmp_path / 'sub'}: Permission denied (writing {log})",
    )
    assert ".owner" not in out and ".tmp" not in out


@pytest.mark.parametrize("failure", ["full disk", "torch.save on a full disk", "read-only"])
def test_a_checkpoint_that_cannot_be_written_mid_run_names_it_and_how_to_continue(
    data, tmp_path, monkeypatch, failure
):
    # A full disk, or a --save folder made read-only after the start's check, at step 2: the
    # error named a file in the hidden folder the checkpoint is written in ("[Errno 28] No
    # space left on device: '.../.step2.partial/model.safetensors'", or torch.save's "[enforce
    # fail at inline_container.cc:672] . unexpected pos 704 vs 598") and said nothing of the
    # run's state. It names the checkpoint, the folder and the reason, and how to continue.
    import pythia_train.checkpoint as checkpoint

    save = tmp_path / "ck"
    if failure == "read-only":
        real_mkdir = Path.mkdir

        def refusing(self, *args, **kwargs):
            if self.name == ".step2.partial":
                raise PermissionError(13, "Permission denied", str(self))
            return real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", refusing)
        reason = "Permission denied"
    else:
        real_write = checkpoint.write_hf_files

        def filling_the_disk(directory, *args, **kwargs):
            if directory.name != ".step2.partial":
                return real_write(directory, *args, **kwargs)
            (directory / "model.safetensors").write_bytes(b"half a checkpoint")
            if failure == "full disk":
                raise OSError(28, "No space left on device", str(directory / "model.safetensors"))
            monkeypatch.setattr(checkpoint, "_no_space_left", lambda folder: folder == save)
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704")

        monkeypatch.setattr(checkpoint, "write_hf_files", filling_the_disk)
        reason = "No space left on device"
    out = one_line_error(
        cli("--save", save, data=data["a"]),
        f"pythia-train: error: {save}: {reason} (writing {save / 'step2'}); the last checkpoint "
        f"is {save / 'step1'}: --resume {save} --save {save} continues from it\n",
    )
    assert ".partial" not in out and "Errno" not in out
    # Nothing of step 2 is left, and 'latest' names step 1, from which the run continues.
    assert sorted(p.name for p in save.iterdir()) == ["latest", "step1"]
    monkeypatch.undo()
    resumed = cli("--save", save, "--resume", save, data=data["a"])
    assert resumed.exit_code == 0, resumed.output
    assert (save / "latest").read_text() == "step2\n"


def test_an_error_while_saving_that_is_no_write_failure_keeps_its_own_words(
    data, tmp_path, monkeypatch
):
    # Every RuntimeError raised while a checkpoint was written became "SAVE: <its first
    # line> (writing SAVE/stepN)", a CUDA assert reported late among them.
    import pythia_train.checkpoint as checkpoint

    real_write = checkpoint.write_hf_files

    def failing(directory, *args, **kwargs):
        if directory.name == ".step2.partial":
            raise RuntimeError("CUDA error: device-side assert triggered\nmore detail")
        return real_write(directory, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "write_hf_files", failing)
    result = cli("--save", tmp_path / "ck", data=data["a"])
    assert result.exit_code == 1, result.output
    assert "error: CUDA error: device-side assert triggered\nmore detail" in result.output
    assert "writing" not in result.output and ".partial" not in result.output


def test_a_resume_refuses_a_read_only_log_file(data, tmp_path):
    # The resume cut the log through a temporary and a rename, which its writable folder
    # allows: a log made read-only was silently replaced by a writable one.
    from test_bad_input import _enforcing_permissions

    save, log = tmp_path / "ck", tmp_path / "log.jsonl"
    assert cli("--save", save, "--log-file", log, data=data["a"]).exit_code == 0
    log.chmod(0o444)
    before = log.read_bytes()
    args = ["--num-layers", "2", "--hidden-size", "64", "--num-attention-heads", "4",
            "--vocab-size", "512", "--seq-length", str(SEQ), "--global-batch", "8",
            "--micro-batch", "4", "--train-iters", "3", "--lr", "1e-2", "--device", "cpu",
            "--no-progress", "--data", str(data["a"]), "--save", str(save), "--resume",
            str(save), "--log-file", str(log)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = [sys.executable, "-m", "pythia_train.cli", *args]
    r = subprocess.run(
        _enforcing_permissions(run), capture_output=True, text=True, env=env, timeout=300
    )
    assert r.returncode == 1, r.stderr
    assert r.stderr == (
        f"pythia-train: error: --log-file: {log}: Permission denied (the run appends its "
        "metrics to it): make it writable, or pass another --log-file\n"
    ), r.stderr
    assert log.read_bytes() == before and log.stat().st_mode & 0o777 == 0o444
    assert not (save / "step3").exists()


@pytest.mark.parametrize("below", ["ck", "sub/ck"])
def test_a_save_folder_below_a_file_is_a_one_line_error(data, tmp_path, below):
    # It failed when the first checkpoint was due, after the steps before it, with a bare
    # "[Errno 20] Not a directory".
    (tmp_path / "afile").write_text("")
    save = tmp_path / "afile" / below
    one_line_error(
        cli("--save", save, data=data["a"]),
        f"--save: cannot make the folder {save}",
        f"{tmp_path / 'afile'} is a file, not a folder",
    )


@pytest.mark.parametrize(
    "change, fragment",
    [
        (["--seq-length", "8"], "seq_length 16, this run has 8"),
        (["--seed", "7"], "seed 1234, this run has 7"),
        (["--data-b"], "the rows of step 0 differ from those the run trained on"),
        (["--num-layers", "3"], "num_layers 2 (this run: 3)"),
        (["--hidden-size", "128"], "hidden_size 64 (this run: 128)"),
    ],
)
def test_resume_refuses_a_different_run(data, tmp_path, change, fragment):
    assert cli("--save", tmp_path, "--train-iters", "1", data=data["a"]).exit_code == 0
    prefix = data["b"] if change == ["--data-b"] else data["a"]
    args = [] if change == ["--data-b"] else change
    if change[0] == "--seq-length":  # data with rows of 8 + 1 tokens
        prefix = write_rows(tmp_path.parent / "short", random_rows(64, 8, 512))
    one_line_error(cli("--resume", tmp_path, *args, data=prefix), fragment)


def test_resume_follows_the_rows_not_the_path(data, tmp_path):
    # The same rows elsewhere (moved, copied, linked) continue the run; it used to be refused.
    assert cli("--save", tmp_path / "ck", "--train-iters", "1", data=data["a"]).exit_code == 0
    moved = tmp_path / "moved"
    moved.mkdir()
    for ext in (".bin", ".idx"):
        (moved / f"a{ext}").write_bytes(data["a"].with_suffix(ext).read_bytes())
    result = cli("--resume", tmp_path / "ck", data=moved / "a")
    assert result.exit_code == 0, result.output
    # Other rows at the same path do not.
    (moved / "a.bin").write_bytes(data["b"].with_suffix(".bin").read_bytes())
    one_line_error(
        cli("--resume", tmp_path / "ck" / "step1", data=moved / "a"),
        "the rows of step 0 differ",
    )


def test_resume_keeps_the_checkpoints_lr_schedule(data, tmp_path):
    log = tmp_path / "log.jsonl"
    ck = tmp_path / "ck"
    assert (
        cli(
            "--save",
            ck,
            "--train-iters",
            "4",
            "--warmup",
            "0",
            "--save-steps",
            "2",
            "--log-file",
            log,
            data=data["a"],
        ).exit_code
        == 0
    )
    full = [json.loads(line) for line in log.read_text().splitlines()]
    result = cli(
        "--resume",
        ck / "step2",
        "--save",
        ck,
        "--train-iters",
        "4",
        "--lr",
        "0.5",
        "--warmup",
        "0",
        "--weight-decay",
        "0",
        "--save-steps",
        "4",
        "--log-file",
        log,
        data=data["a"],
    )
    assert result.exit_code == 0, result.output
    assert (
        "note: resuming with the checkpoint's learning-rate schedule and optimizer settings: "
        "lr 0.01 (asked 0.5), min_lr 0.001 (asked 0.05), weight_decay 0.1 (asked 0)"
    ) in " ".join(result.output.split())
    # The new checkpoint records what was trained, not what was asked.
    state = torch.load(ck / "step4" / "trainer_state.pt", weights_only=False)
    assert state["train_config"]["lr"] == 0.01 and state["train_config"]["weight_decay"] == 0.1
    again = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["step"] for r in again] == [1, 2, 3, 4]  # steps 3, 4 replaced, not repeated
    assert [r["lr"] for r in again] == [r["lr"] for r in full]
    assert [r["loss"] for r in again] == [r["loss"] for r in full]


def test_resume_at_or_past_the_last_step(data, tmp_path):
    assert cli("--save", tmp_path, "--train-iters", "2", data=data["a"]).exit_code == 0
    result = cli("--resume", tmp_path, "--train-iters", "2", data=data["a"])
    assert result.exit_code == 0
    assert result.output == (
        "step 2: the run is already complete (train-iters 2); nothing to train "
        "(pass a larger --train-iters to continue it)\n"
    )
    one_line_error(
        cli("--resume", tmp_path, "--train-iters", "1", data=data["a"]),
        "at step 2",
        "--train-iters 2 or more",
    )


def test_seq_length_beyond_the_models_context_is_refused(data, tmp_path):
    usage_error(
        cli("--max-position-embeddings", "8", data=data["a"]),
        "seq-length 16 exceeds the model's context 8; pass --max-position-embeddings 16",
    )
    p = tmp_path / "ctx.yml"
    p.write_text('{"max-position-embeddings": 8}')
    usage_error(cli("--config", p, data=data["a"]), "context 8")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--micro-batch", "3"], "pass a micro batch that divides 8, such as 2"),
        (["--warmup", "100"], "warmup must be a fraction of lr-decay-iters in [0, 0.5]"),
        (["--warmup", "0.6"], "warmup must be a fraction of lr-decay-iters in [0, 0.5]"),
        (["--clip-grad", "-1"], "clip-grad must be >= 0 (0: no clipping)"),
        (["--log-interval", "0"], "log-interval must be at least 1"),
        (["--exit-interval", "0"], "exit-interval must be at least 1"),
        (["--seed", str(2**40)], "seed must be in [0, 2^32)"),
        (["--device", "foo"], "--device must be cpu, cuda or cuda:N"),
        (["--model", "pythia-99m"], "unknown model 'pythia-99m'"),
        (["--hidden-size", "0"], "sizes must be positive, got hidden_size 0"),
        (["--save-steps", "-1"], "save steps must be >= 0"),
        (["--clip-grad", "nan"], "clip-grad must be a finite number"),
        (["--lr", "nan"], "lr must be a finite number"),
        (["--weight-decay", "-1"], "weight-decay must be >= 0"),
        (["--checkpoint-factor", "-3"], "checkpoint-factor must be >= 0"),
        (["--peak-tflops", "-1"], "peak-tflops must be positive"),
    ],
)
def test_wrong_option_values_are_usage_errors(data, args, fragment):
    # They exited with status 1, some with a traceback-like repr or no hint.
    usage_error(cli(*args, data=data["a"]), fragment)


def test_clip_grad_0_turns_clipping_off(data, tmp_path):
    # It scaled every gradient by 0: nothing was learnt. DeepSpeed's 0 means no clipping.
    logs = {}
    for clip in ("0", "1e9", "1e-3"):
        log = tmp_path / f"{clip}.jsonl"
        result = cli("--clip-grad", clip, "--train-iters", "4", "--log-file", log, data=data["a"])
        assert result.exit_code == 0, result.output
        logs[clip] = [json.loads(line)["loss"] for line in log.read_text().splitlines()]
    assert logs["0"] == logs["1e9"] != logs["1e-3"]


def test_an_explicit_model_overrides_the_configs_shape(data, tmp_path):
    yml = tmp_path / "shape.yml"
    yml.write_text('{"num-layers": 3, "hidden-size": 96, "num-attention-heads": 6}\n')
    log = tmp_path / "log.jsonl"
    result = CliRunner().invoke(
        main,
        [
            *("--config", str(yml), "--model", "pythia-14m", "--vocab-size", "512"),
            *("--seq-length", str(SEQ), "--global-batch", "8", "--micro-batch", "4"),
            *("--train-iters", "1", "--device", "cpu", "--no-progress", "--data", str(data["a"])),
            *("--save", str(tmp_path / "ck")),
        ],
    )
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "ck" / "step1" / "config.json").read_text())
    # pythia-14m: 6 layers of 128 with 4 heads (the config said 3 × 96 × 6), its tanh GELU
    # (the config, silent on bias-gelu-fusion, said GPT-NeoX's exact one).
    assert (config["num_hidden_layers"], config["hidden_size"]) == (6, 128)
    assert config["num_attention_heads"] == 4 and config["hidden_act"] == "gelu_new"
    assert not log.exists()


def test_init_from_refuses_an_explicit_shape_that_is_not_the_checkpoints(data, tmp_path):
    # --model pythia-160m trained the checkpoint's shape without a word.
    assert cli("--save", tmp_path / "ck", "--train-iters", "1", data=data["a"]).exit_code == 0
    hf = tmp_path / "ck" / "step1"
    run = ("--seq-length", str(SEQ), "--global-batch", "8", "--micro-batch", "4")
    run += ("--train-iters", "1", "--device", "cpu", "--no-progress", "--data", str(data["a"]))
    result = CliRunner().invoke(main, [*run, "--init-from", str(hf), "--model", "pythia-160m"])
    usage_error(
        result,
        f"checkpoint {hf} has the shape num_layers 2, hidden_size 64, num_heads 4, vocab_size 512",
        "asks for num_layers 12, hidden_size 768, num_heads 12",
        "drop --model",
    )
    usage_error(
        cli("--init-from", hf, "--hidden-size", "128", data=data["a"]),
        "asks for hidden_size 128. The checkpoint decides the shape: drop --hidden-size, or",
    )
    # Only the options that set a differing field are named: --model's layers are overridden
    # by --num-layers here, so dropping --model would change nothing.
    shape = ("--hidden-size", "64", "--num-attention-heads", "4", "--vocab-size", "512")
    result = CliRunner().invoke(
        main, [*run, *shape, "--init-from", str(hf), "--model", "pythia-160m", "--num-layers", "3"]
    )
    out = usage_error(result, "asks for num_layers 3. The checkpoint decides the shape: drop")
    assert "drop --num-layers, or" in out and "--model" not in out.split("drop")[1], out
    # The checkpoint's own shape, or none asked for, trains from it.
    assert cli("--init-from", hf, data=data["a"]).exit_code == 0
    result = CliRunner().invoke(main, [*run, "--init-from", str(hf)])
    assert result.exit_code == 0, result.output


def test_init_from_shape_and_tokenizer_are_the_checkpoints(data, tmp_path):
    # With --init-from, the default model (pythia-160m) stood in for the checkpoint: a width
    # that was the checkpoint's own was refused for the default's 12 heads, a wrong one named
    # them, and its vocabulary of 50304 put GPT-NeoX-20B's tokenizer into the checkpoints of
    # a 512-id model.
    assert cli("--save", tmp_path / "ck", "--train-iters", "1", data=data["a"]).exit_code == 0
    hf = tmp_path / "ck" / "step1"
    assert not (hf / "tokenizer.json").exists()
    run = ("--seq-length", str(SEQ), "--global-batch", "8", "--micro-batch", "4")
    run += ("--train-iters", "1", "--device", "cpu", "--no-progress", "--data", str(data["a"]))
    out = tmp_path / "from"
    result = CliRunner().invoke(
        main, [*run, "--init-from", str(hf), "--hidden-size", "64", "--save", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert (out / "step1" / "model.safetensors").is_file()
    assert not (out / "step1" / "tokenizer.json").exists()
    result = CliRunner().invoke(main, [*run, "--init-from", str(hf), "--num-attention-heads", "5"])
    out = usage_error(
        result, "has the shape num_layers 2, hidden_size 64, num_heads 4", "num_heads 5"
    )
    assert "num_heads 12" not in out and "768" not in out, out


def test_init_from_notes_a_config_shape_it_does_not_use(data, tmp_path):
    # A config taken for its recipe, with another model's shape: the checkpoint's shape was
    # trained and the config's went unused without a word.
    assert cli("--save", tmp_path / "ck", "--train-iters", "1", data=data["a"]).exit_code == 0
    hf = tmp_path / "ck" / "step1"
    yml = tmp_path / "recipe.yml"
    yml.write_text('{"num-layers": 6, "hidden-size": 64, "num-attention-heads": 4}')
    run = ("--seq-length", str(SEQ), "--global-batch", "8", "--micro-batch", "4")
    run += ("--train-iters", "1", "--device", "cpu", "--no-progress", "--data", str(data["a"]))
    out = tmp_path / "from"
    result = CliRunner().invoke(
        main, [*run, "--config", str(yml), "--init-from", str(hf), "--save", str(out)]
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "the --config file's num-layers 6 is not used: the --init-from checkpoint" in text
    assert "decides the shape (2 layers of 64, 4 heads)" in text
    # The config's GELU (silent: GPT-NeoX's exact one) is not the checkpoint's tanh.
    assert "the --config file's GELU (exact) is not used" in text
    assert "declares the tanh one (pass --gelu exact to train with the config's)" in text
    config = json.loads((out / "step1" / "config.json").read_text())
    assert config["num_hidden_layers"] == 2


def test_init_from_notes_the_dropout_it_does_not_apply(data, tmp_path):
    # A checkpoint declaring dropout (a fine-tune's) was trained without it, without a word.
    assert cli("--save", tmp_path / "ck", "--train-iters", "1", data=data["a"]).exit_code == 0
    hf = tmp_path / "ck" / "step1"
    result = cli("--init-from", hf, "--save", tmp_path / "plain", data=data["a"])
    assert result.exit_code == 0 and "dropout" not in result.output, result.output
    conf = json.loads((hf / "config.json").read_text())
    (hf / "config.json").write_text(json.dumps({**conf, "hidden_dropout": 0.1}))
    result = cli("--init-from", hf, "--save", tmp_path / "from", data=data["a"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "config.json asks for hidden_dropout 0.1; pythia-train trains without dropout" in text
    saved = json.loads((tmp_path / "from" / "step2" / "config.json").read_text())
    assert not saved.get("hidden_dropout") and not saved.get("attention_dropout")


def test_init_from_takes_an_explicit_gelu_and_context(data, tmp_path):
    # Pythia's HF checkpoints declare the exact GELU and Pythia trained with tanh: --gelu tanh
    # was ignored without a word, and --max-position-embeddings was refused with the advice
    # to pass --max-position-embeddings.
    from train_fixtures import tiny_config

    from pythia_train import build_model, save_hf

    hf = tmp_path / "hf"
    save_hf(build_model(tiny_config(gelu_approximate="none", max_seq_len=SEQ // 2), seed=1), hf)
    ck = tmp_path / "ck"
    result = cli(
        *("--init-from", hf, "--gelu", "tanh", "--max-position-embeddings", SEQ, "--save", ck),
        data=data["a"],
    )
    assert result.exit_code == 0, result.output
    config = json.loads((ck / "step2" / "config.json").read_text())
    assert (config["hidden_act"], config["max_position_embeddings"]) == ("gelu_new", SEQ)
    # Not given, they are the checkpoint's (the context then refuses this run's rows).
    one_line_error(cli("--init-from", hf, data=data["a"]), f"context {SEQ // 2}")
    result = cli("--init-from", ck / "step2", "--save", tmp_path / "again", data=data["a"])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "again" / "step2" / "config.json").read_text())
    assert config["hidden_act"] == "gelu_new"


def test_other_ranks_leave_a_requeues_log_in_the_save_directory_to_the_main_one(
    tmp_path, monkeypatch
):
    # A torchrun requeue (--resume SAVE before its first checkpoint) with the --log-file in
    # SAVE: rank 0 cuts the killed launch's records, and a rank that looked first refused
    # "the --save directory is not empty (it holds 'log.jsonl'); pass --resume".
    from pythia_train.train import _check_fresh_outputs

    save = tmp_path / "ck"
    save.mkdir()
    log = save / "log.jsonl"
    log.write_text('{"step": 1, "loss": 1.0}\n')
    monkeypatch.setenv("RANK", "1")
    _check_fresh_outputs(save, log)
    (save / "step1").mkdir()  # another run's checkpoint is still refused
    with pytest.raises(ValueError, match="not empty .it holds 'step1'"):
        _check_fresh_outputs(save, log)
    (save / "step1").rmdir()
    # The main rank, which cuts its own run's log first, still refuses another run's.
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ValueError, match="not empty .it holds 'log.jsonl'"):
        _check_fresh_outputs(save, log)


def test_a_save_directory_of_other_files_is_not_sent_to_resume(data, tmp_path):
    # A folder holding no checkpoint said "pass --resume DIR to continue that run", and that
    # command (which starts a run whose --save has none yet) refused it with the same advice.
    save = tmp_path / "notes"
    save.mkdir()
    (save / "notes.txt").write_text("mine\n")
    for extra in ((), ("--resume", save)):
        out = one_line_error(cli("--save", save, *extra, data=data["a"]), "holds 'notes.txt'")
        assert "--resume" not in out and "no checkpoint" in out, out
    assert sorted(p.name for p in save.iterdir()) == ["notes.txt"]


def test_a_resume_does_not_cut_a_log_file_that_is_no_log(data, tmp_path):
    # Resuming cuts the --log-file back to the checkpoint's records: a file named by mistake
    # (here a config) kept none of its lines, and a new run called it another run's metrics.
    ck = tmp_path / "ck"
    assert cli("--save", ck, data=data["a"]).exit_code == 0
    config = tmp_path / "run.yml"
    config.write_text('{"train-iters": 2,\n "seq-length": 16}\n')
    again = cli("--save", ck, "--resume", ck / "step1", "--log-file", config, data=data["a"])
    one_line_error(again, "run.yml: not a pythia-train --log-file (line 1")
    assert config.read_text() == '{"train-iters": 2,\n "seq-length": 16}\n'
    assert not (tmp_path / ".run.yml.owner").exists()
    new = cli("--save", tmp_path / "new", "--log-file", config, data=data["a"])
    one_line_error(new, "holds no pythia-train metrics; pass a new or empty --log-file")
    # A log whose last record a kill cut short is still the run's: resumed and cut back.
    log = tmp_path / "log.jsonl"
    assert cli("--save", tmp_path / "b", "--log-file", log, data=data["a"]).exit_code == 0
    with open(log, "a") as f:
        f.write('{"step": 3, "lo')
    b = tmp_path / "b"
    again = cli("--save", b, "--resume", b / "step1", "--log-file", log, data=data["a"])
    assert again.exit_code == 0, again.output
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2]


def test_ids_outside_the_vocabulary_leave_no_step0_checkpoint(data, tmp_path):
    # A --vocab-size too small failed step 1 after step 0 was saved: the corrected command
    # then found its --save not empty.
    save = tmp_path / "ck"
    bad = cli("--save", save, "--vocab-size", "64", "--save-steps", "0,1", data=data["a"])
    one_line_error(bad, "outside the model's vocabulary of 64", "--vocab-size")
    assert not save.exists() or not any(save.iterdir()), sorted(save.iterdir())
    assert cli("--save", save, "--save-steps", "0,1", data=data["a"]).exit_code == 0


def test_a_log_file_that_is_no_regular_file_is_refused(data, tmp_path):
    # A device (/dev/full) or a pipe as --log-file: the run wrote its hidden owner file beside
    # it (into /dev) and then failed, or went on, on writes it cannot cut back on a resume.
    fifo = tmp_path / "metrics"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # so that opening it to write can't block
    try:
        result = cli("--log-file", fifo, data=data["a"])
    finally:
        os.close(reader)
    one_line_error(result, f"--log-file: {fifo} is not a regular file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics"]


def test_resuming_a_hugging_face_model_names_init_from(data, tmp_path):
    # A released Pythia checkpoint (config.json and weights, no training state) given to
    # --resume: the error named the missing files, not --init-from, which trains from it.
    ck = tmp_path / "ck"
    assert cli("--save", ck, data=data["a"]).exit_code == 0
    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(ck / "step2" / name, model / name)
    out = one_line_error(cli("--resume", model, "--save", tmp_path / "new", data=data["a"]))
    assert "not a training checkpoint" in out and "pass it as --init-from" in out, out
    assert not (tmp_path / "new").exists()
    out = one_line_error(cli("--resume", tmp_path / "nowhere", data=data["a"]))
    assert "no such file or directory" in out, out


def test_device_cuda_without_a_gpu_names_the_way_out(data, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = ["--save", tmp_path / "ck", "--device", "cuda:0"]
    one_line_error(cli(*args, data=data["a"]), "--device cuda:0: ", "pass --device cpu")
    assert not (tmp_path / "ck").exists()


def test_exit_interval_trains_a_long_run_in_shares(data, tmp_path):
    whole = tmp_path / "whole.jsonl"
    assert cli("--train-iters", "6", "--log-file", whole, data=data["a"]).exit_code == 0
    log, ck = tmp_path / "parts.jsonl", tmp_path / "ck"
    # One command for the first launch and every requeue: --resume names the --save directory.
    command = ["--train-iters", "6", "--exit-interval", "4", "--save", ck, "--resume", ck]
    first = cli(*command, "--log-file", log, "--save-steps", "1", data=data["a"])
    assert first.exit_code == 0, first.output
    assert "stopped at step 4 of 6 (exit-interval 4)" in first.output
    assert sorted(p.name for p in ck.iterdir()) == ["latest", "step1", "step4"]
    second = cli(*command, "--log-file", log, "--save-steps", "1", data=data["a"])
    assert second.exit_code == 0, second.output
    assert "stopped" not in second.output and second.output.startswith("step 6: loss")
    parts = [json.loads(line) for line in log.read_text().splitlines()]
    full = [json.loads(line) for line in whole.read_text().splitlines()]
    assert [r["step"] for r in parts] == [1, 2, 3, 4, 5, 6]
    assert [(r["loss"], r["lr"]) for r in parts] == [(r["loss"], r["lr"]) for r in full]


def test_saying_where_checkpoints_went(data, tmp_path):
    # --save-steps past the run saved nothing, not even the trained model, yet said it had.
    result = cli("--save", tmp_path / "ck", "--save-steps", "9", data=data["a"])
    assert result.exit_code == 0, result.output
    assert f"checkpoints in {tmp_path / 'ck'}" in result.output
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["latest", "step2"]
    ck = tmp_path / "ck"
    result = cli(
        "--save", ck, "--resume", ck, "--train-iters", "3", "--save-steps", "", data=data["a"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in ck.iterdir()) == ["latest", "step2", "step3"]
    result = cli("--save", ck, "--resume", ck, "--train-iters", "3", data=data["a"])
    assert "the run is already complete" in result.output


def test_save_steps_past_train_iters_are_noted(data, tmp_path):
    # They were dropped without a word (a typo for --train-iters, say, went unseen). A run
    # resumed with a larger --train-iters saves at them.
    ck = tmp_path / "ck"
    args = ("--save", ck, "--resume", ck, "--save-steps", "1,3,5")
    result = cli(*args, data=data["a"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "note: --save-steps 3, 5 are past --train-iters 2: this run saves no checkpoint" in out
    result = cli(*args, "--train-iters", "4", data=data["a"])
    assert result.exit_code == 0, result.output
    assert "note: --save-steps 5 is past --train-iters 4" in " ".join(result.output.split())
    assert sorted(p.name for p in ck.iterdir()) == ["latest", "step1", "step2", "step3", "step4"]
    # Without --save there is nothing to note.
    assert "note" not in cli("--save-steps", "9", data=data["a"]).output


def test_resume_keeps_the_checkpoints_context_and_notes_later_checkpoints(data, tmp_path):
    ck = tmp_path / "ck"
    args = ("--save", ck, "--train-iters", "4", "--save-steps", "2,4")
    assert cli(*args, "--max-position-embeddings", "32", data=data["a"]).exit_code == 0
    # Without the option, the run's context would be the default 2048 (config.json changed).
    result = cli(*args, "--resume", ck / "step2", data=data["a"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "resuming with the checkpoint's context: max-position-embeddings 32 (asked" in out
    assert "holds checkpoints past step 2 from a run that went further (step4)" in out
    assert json.loads((ck / "step4" / "config.json").read_text())["max_position_embeddings"] == 32


def test_a_config_s_global_batch_is_explained(data, tmp_path):
    yml = tmp_path / "batch.yml"
    yml.write_text('{"train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 2}')
    args = [
        *("--num-layers", "2", "--hidden-size", "64", "--num-attention-heads", "4"),
        *("--vocab-size", "512", "--seq-length", str(SEQ), "--train-iters", "1"),
        *("--device", "cpu", "--no-progress", "--data", str(data["a"]), "--config", str(yml)),
    ]

    def said(*extra) -> str:
        """What a successful run printed, on one line."""
        result = CliRunner().invoke(main, [*args, *extra])
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())

    assert "global batch 8 = micro batch 4 × gradient-accumulation-steps 2" in said()
    # A micro batch given here counts: the config's accumulation steps are kept (it was 4 × 2).
    assert "global batch 4 = micro batch 2 × gradient-accumulation-steps 2" in said(
        "--micro-batch", "2"
    )
    # --global-batch wins over the config's accumulation steps (the note above advises it to
    # keep a run's batch on fewer ranks; it was refused): 16 = micro batch 4 × 4 steps.
    assert "--global-batch 16 replaces the config's gradient-accumulation-steps 2" in said(
        "--global-batch", "16"
    )
    # A micro batch given alone is DeepSpeed's accumulation of 1, not 1024 rows accumulated.
    yml.write_text('{"train_micro_batch_size_per_gpu": 4}')
    assert "global batch 4 = micro batch 4 × gradient-accumulation-steps 1" in said()
    # With --global-batch beside it, nothing is replaced (the config gave no accumulation):
    # the note said it replaced "the config's gradient-accumulation-steps 1".
    out = said("--global-batch", "8")
    assert "replaces" not in out and "global batch 8" not in out


def documents(prefix: Path, seed: int) -> None:
    """A document dataset of 20 random documents of 10-49 tokens below 512."""
    rng = np.random.default_rng(seed)
    with IndexedDatasetBuilder(prefix, dtype=np.uint16) as b:
        for _ in range(20):
            b.add_item(rng.integers(1, 512, size=int(rng.integers(10, 50)), dtype=np.uint16))


def test_a_document_dataset_read_as_preshuffled_names_data_format_gpt_neox(tmp_path):
    # Pythia's configs name a document dataset in train-data-paths, but --data-format defaults
    # to preshuffled: the error said only that item 0 is not one row long.
    documents(tmp_path / "docs", seed=5)
    yml = tmp_path / "run.yml"
    yml.write_text(json.dumps({"train-data-paths": [str(tmp_path / "docs")]}))
    for result in (cli(data=tmp_path / "docs"), cli("--config", yml)):
        one_line_error(result, "every item of a preshuffled dataset", "--data-format gpt-neox")


def test_gpt_neox_data_resumes_only_on_its_own_index(tmp_path):
    # A document dataset read through GPT-NeoX's index, whose shuffle depends on how many
    # samples the run asks for: more train-iters re-shuffles, so the rows at the checkpoint
    # change and the resume is refused; a share of the longer run uses --exit-interval.
    documents(tmp_path / "docs", seed=3)
    ck = tmp_path / "ck"
    neox = ("--data-format", "gpt-neox", "--save", ck)
    first = cli(*neox, "--train-iters", "2", data=tmp_path / "docs")
    assert first.exit_code == 0, first.output
    longer = cli(*neox, "--train-iters", "10", "--resume", ck, data=tmp_path / "docs")
    one_line_error(longer, "the rows of step", "--exit-interval")
    again = cli(
        *neox, "--train-iters", "3", "--resume", ck, "--save-steps", "3", data=tmp_path / "docs"
    )
    assert again.exit_code == 0, again.output  # 17 → 25 samples: still one epoch, same order


def test_gpt_neox_data_reads_an_index_built_with_a_cache_dir(tmp_path):
    # `pythia-data build-index --cache-dir` put the index where the trainer could not look: it
    # built another beside the data (or failed on read-only data).
    from pythia_data.cli import main as data_main

    documents(tmp_path / "docs", seed=4)
    cache = tmp_path / "cache"
    shape = ["--train-iters", "2", "--global-batch-size", "8", "--seq-length", str(SEQ)]
    built = CliRunner().invoke(data_main, ["build-index", str(tmp_path / "docs"), *shape,
                                           "--cache-dir", str(cache), "-q"])  # fmt: skip
    assert built.exit_code == 0, built.output
    index_files = sorted(p.name for p in cache.iterdir())
    beside = sorted(p.name for p in tmp_path.iterdir())
    ck = tmp_path / "ck"
    result = cli("--data-format", "gpt-neox", "--cache-dir", cache, "--save", ck,
                 data=tmp_path / "docs")  # fmt: skip
    assert result.exit_code == 0, result.output
    # The index found and used as it was: none built beside the data, nor another in the cache.
    assert sorted(p.name for p in cache.iterdir()) == index_files
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*beside, "ck"])
    usage_error(cli("--cache-dir", cache, data=tmp_path / "docs"), "--data-format gpt-neox")


def test_a_read_only_data_folder_refuses_the_index_at_once_naming_cache_dir(tmp_path):
    # The run's own index build failed only once doc_idx was built and shuffled (minutes to an
    # hour at Pythia's size): the timing laps of that work came before the error.
    from test_bad_input import run_with_read_only

    ro = tmp_path / "ro"
    documents(ro / "docs", seed=4)
    args = ["--num-layers", "2", "--hidden-size", "64", "--num-attention-heads", "4",
            "--vocab-size", "512", "--seq-length", str(SEQ), "--global-batch", "8",
            "--micro-batch", "4", "--train-iters", "2", "--device", "cpu", "--no-progress",
            "--data", str(ro / "docs"), "--data-format", "gpt-neox"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHIA_INDEX_TIMING": "1"}
    run = [sys.executable, "-m", "pythia_train.cli", *args]
    r = run_with_read_only(ro, run, env, 300)
    out = ro / "docs_train_0_indexmap_17ns_16sl_1234s_doc_idx.npy"
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith(f"pythia-train: error: {ro}: Permission denied (writing {out})"), (
        r.stderr
    )
    assert len(r.stderr.splitlines()) == 1, r.stderr  # no "[build-index] ... doc_idx shuffled"
    assert sorted(p.name for p in ro.iterdir()) == ["docs.bin", "docs.idx"]
    # And names the way out, as `pythia-data build-index` does (it named none), which works.
    assert r.stderr.rstrip().endswith(
        "the index cannot be written beside the data; write it elsewhere with --cache-dir DIR "
        "(and give each --resume of the run the same --cache-dir)"
    ), r.stderr
    result = cli("--data-format", "gpt-neox", "--cache-dir", tmp_path / "cache",
                 data=ro / "docs")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in ro.iterdir()) == ["docs.bin", "docs.idx"]


def test_a_requeue_after_a_kill_before_the_first_checkpoint_starts_over(
    data, tmp_path, monkeypatch
):
    # The killed launch left log records and no checkpoint: the requeue was refused ("the
    # --log-file already holds another run's metrics; pass --resume", which it had).
    import pythia_train.train as train_module

    ck, whole = tmp_path / "ck", tmp_path / "whole.jsonl"
    assert cli("--log-file", whole, data=data["a"]).exit_code == 0
    log = ck / "log.jsonl"  # inside the --save directory, as scripts/sample.sh puts it
    command = ("--save", ck, "--resume", ck, "--log-file", log, "--save-steps", "")
    real = train_module.micro_batch

    def killed_at_step_1(source, step, *a, **k):
        if step == 1:
            raise KeyboardInterrupt
        return real(source, step, *a, **k)

    monkeypatch.setattr(train_module, "micro_batch", killed_at_step_1)
    assert cli(*command, data=data["a"]).exit_code != 0
    monkeypatch.setattr(train_module, "micro_batch", real)
    assert [json.loads(x)["step"] for x in log.read_text().splitlines()] == [1]
    (ck / ".latest.tmp-4242").write_text("step0\n")  # a kill's leftover
    result = cli(*command, data=data["a"])
    assert result.exit_code == 0, result.output
    losses = [json.loads(x)["loss"] for x in log.read_text().splitlines()]
    assert losses == [json.loads(x)["loss"] for x in whole.read_text().splitlines()]
    # A log that is not the save directory's own (another run's) is never reset.
    other_ck, other_log = tmp_path / "ck2", tmp_path / "other.jsonl"
    other_log.write_text(whole.read_text())
    result = cli("--save", other_ck, "--resume", other_ck, "--log-file", other_log, data=data["a"])
    one_line_error(result, "already holds another run's metrics")
    assert other_log.read_text() == whole.read_text()
    # The same requeue through a GPT-NeoX config whose "load" is its "save".
    yml, other = tmp_path / "run.yml", tmp_path / "other"
    yml.write_text(json.dumps({"save": str(other), "load": str(other)}))
    result = cli("--config", yml, data=data["a"])
    assert result.exit_code == 0, result.output
    assert (other / "latest").read_text() == "step2\n"


def test_a_kill_between_a_first_checkpoint_and_latest_resumes_from_it(data, tmp_path):
    ck = tmp_path / "ck"
    args = ("--save", ck, "--resume", ck, "--train-iters", "3", "--save-steps", "1")
    assert cli(*args, data=data["a"]).exit_code == 0
    full = torch.load(ck / "step3" / "trainer_state.pt", weights_only=False)["iteration"]
    assert full == 3
    # As a kill right after step1's rename, before 'latest' was written, leaves it.
    shutil.rmtree(ck / "step3")
    (ck / "latest").unlink()
    result = cli(*args, data=data["a"])
    assert result.exit_code == 0, result.output  # was: "the --save directory is not empty"
    assert (ck / "latest").read_text() == "step3\n"


def test_a_rewind_points_latest_at_its_checkpoint_at_once(data, tmp_path, monkeypatch):
    import pythia_train.train as train_module

    ck = tmp_path / "ck"
    assert (
        cli("--save", ck, "--train-iters", "3", "--save-steps", "1,2", data=data["a"]).exit_code
        == 0
    )
    assert (ck / "latest").read_text() == "step3\n"

    def killed(*a, **k):
        raise KeyboardInterrupt  # the job dies before the rewound run's first save

    monkeypatch.setattr(train_module, "micro_batch", killed)
    result = cli("--save", ck, "--resume", ck / "step1", "--train-iters", "3", data=data["a"])
    assert result.exit_code != 0
    # A requeue (--resume SAVE) now continues the rewound run, not the abandoned step3.
    assert (ck / "latest").read_text() == "step1\n"


def test_a_latest_naming_a_removed_step(data, tmp_path):
    ck, log = tmp_path / "ck", tmp_path / "log.jsonl"
    args = ("--save", ck, "--log-file", log, "--train-iters", "4", "--save-steps", "1,2")
    assert cli(*args, data=data["a"]).exit_code == 0
    shutil.rmtree(ck / "step4")  # 'latest' still names it
    before = log.read_text()
    # A requeue says what is wrong; it used to take this for a first launch, empty the log,
    # then refuse the non-empty directory.
    one_line_error(cli(*args, "--resume", ck, data=data["a"]), "names 'step4'", "stepN")
    assert log.read_text() == before
    # A rewind to a step that is there works (it used to stop at the broken 'latest').
    result = cli(*args, "--resume", ck / "step2", data=data["a"])
    assert result.exit_code == 0, result.output
    assert (ck / "latest").read_text() == "step4\n"


def test_a_parked_checkpoint_comes_back_without_latest(data, tmp_path):
    # Where no swap is possible, a replace parks the old step at .stepN.old; a kill then,
    # before any 'latest', left every later launch refused ("it holds '.step1.old'").
    ck = tmp_path / "ck"
    assert cli("--save", ck, "--train-iters", "1", data=data["a"]).exit_code == 0
    (ck / "latest").unlink()
    (ck / "step1").rename(ck / ".step1.old")
    result = cli("--save", ck, "--resume", ck, "--train-iters", "2", data=data["a"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in ck.iterdir()) == ["latest", "step1", "step2"]


def test_a_rewind_says_which_later_checkpoints_stay(data, tmp_path):
    ck = tmp_path / "ck"
    args = ("--save", ck, "--train-iters", "4")
    assert cli(*args, "--save-steps", "1,3", data=data["a"]).exit_code == 0
    result = cli(*args, "--save-steps", "2", "--resume", ck / "step1", data=data["a"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "past step 1 from a run that went further (step3, step4)" in out
    assert "except step3, which stays from the other run (remove it," in out


def test_a_log_is_reset_only_for_the_run_that_owns_it(data, tmp_path, monkeypatch):
    import pythia_train.train as train_module

    ref = tmp_path / "ref.jsonl"
    assert cli("--save", tmp_path / "ref", "--log-file", ref, data=data["a"]).exit_code == 0
    ref_text = ref.read_text()
    # A resume or requeue with a checkpoint truncated whichever log it was given.
    ra = tmp_path / "ra"
    assert cli("--save", ra, "--log-file", tmp_path / "la.jsonl", data=data["a"]).exit_code == 0
    one_line_error(
        cli("--save", ra, "--resume", ra, "--log-file", ref, "--train-iters", "3", data=data["a"]),
        "is the log of the run saved in",
    )
    assert ref.read_text() == ref_text
    # A run killed before its first record, whose log another run then took over.
    shared, r1, r2 = tmp_path / "shared.jsonl", tmp_path / "r1", tmp_path / "r2"

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "micro_batch", killed)
    assert cli("--save", r1, "--resume", r1, "--log-file", shared, data=data["a"]).exit_code
    monkeypatch.undo()
    assert cli("--save", r2, "--log-file", shared, data=data["a"]).exit_code == 0
    taken = shared.read_text()
    assert taken
    one_line_error(
        cli("--save", r1, "--resume", r1, "--log-file", shared, data=data["a"]),
        "already holds another run's metrics",
    )
    assert shared.read_text() == taken


def test_a_linked_log_stays_a_link(data, tmp_path):
    real, link, ck = tmp_path / "real.jsonl", tmp_path / "link.jsonl", tmp_path / "ck"
    real.touch()
    link.symlink_to(real)
    args = ("--save", ck, "--resume", ck, "--log-file", link, "--train-iters", "4")
    for _ in range(2):
        assert cli(*args, "--exit-interval", "2", data=data["a"]).exit_code == 0
    assert link.is_symlink()
    assert [json.loads(x)["step"] for x in real.read_text().splitlines()] == [1, 2, 3, 4]


def test_a_config_load_with_a_broken_latest_is_reported(data, tmp_path):
    a = tmp_path / "a"
    assert (
        cli("--save", a, "--train-iters", "2", "--save-steps", "1", data=data["a"]).exit_code == 0
    )
    shutil.rmtree(a / "step2")
    yml = tmp_path / "c.yml"
    yml.write_text(json.dumps({"load": str(a), "save": str(tmp_path / "b")}))
    # It started a new run from scratch.
    one_line_error(cli("--config", yml, data=data["a"]), "names 'step2'")


def test_runs_without_save_own_their_logs_too(data, tmp_path, monkeypatch):
    import pythia_train.train as train_module

    a, log = tmp_path / "a", tmp_path / "a.jsonl"
    assert cli("--save", a, "--log-file", log, "--train-iters", "3", data=data["a"]).exit_code == 0
    text = log.read_text()
    # A resume without --save cut A's log and appended its own records.
    one_line_error(
        cli("--resume", a / "step3", "--log-file", log, "--train-iters", "4", data=data["a"]),
        "is the log of the run saved in",
    )
    assert log.read_text() == text
    # A no-save run took over a log whose owner file still named a killed run: that run's
    # requeue emptied the no-save run's records.
    r, shared = tmp_path / "r", tmp_path / "shared.jsonl"

    def killed(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "micro_batch", killed)
    assert cli("--save", r, "--resume", r, "--log-file", shared, data=data["a"]).exit_code
    monkeypatch.undo()
    assert cli("--log-file", shared, data=data["a"]).exit_code == 0
    taken = shared.read_text()
    one_line_error(
        cli("--save", r, "--resume", r, "--log-file", shared, data=data["a"]),
        "already holds another run's metrics",
    )
    assert shared.read_text() == taken


@pytest.mark.parametrize(
    "sig, status, said",
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated (SIGTERM)")],
)
def test_ctrl_c_says_where_the_last_checkpoint_is_and_exits_130(tmp_path, sig, status, said):
    # It printed click's "Aborted!" and exited 1, unlike pythia-data (a one-line "interrupted;
    # ..." and the shell's status for SIGINT). SIGTERM (a SLURM time limit or preemption)
    # printed nothing and left the checkpoint being written as a hidden .stepN.partial.
    prefix = write_rows(tmp_path / "rows", random_rows(20_000, SEQ, 512))
    ck, log = tmp_path / "ck", tmp_path / "log.jsonl"
    shape = ("--num-layers", "2", "--hidden-size", "64", "--num-attention-heads", "4")
    run = (*shape, "--vocab-size", "512", "--seq-length", str(SEQ), "--global-batch", "1")
    run += ("--micro-batch", "1", "--device", "cpu", "--data", str(prefix), "--save", str(ck))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    roots = {str(Path(m.__file__).resolve().parents[1]) for m in (pythia_data, pythia_train)}
    env["PYTHONPATH"] = os.pathsep.join([*sorted(roots), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "pythia_train.cli", *run, "--train-iters", "20000"]
    cmd += ["--save-steps", "1,2", "--log-file", str(log), "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        # Step 3 logged: the checkpoint of step 2 is complete.
        while not (log.is_file() and len(log.read_text().splitlines()) >= 3):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == status, err
    assert out == "" and err == (
        f"pythia-train: {said}; the last checkpoint is {ck / 'step2'}: --resume {ck} "
        f"--save {ck} continues from it\n"
    )
    # What a SIGKILL during a save leaves; the next save of the run removes it.
    (ck / ".step9.partial" / "rng").mkdir(parents=True)
    result = CliRunner().invoke(main, [*run, "--resume", str(ck), "--train-iters", "3"])
    assert result.exit_code == 0, result.output
    assert "step 3: loss" in result.output
    assert not (ck / ".step9.partial").exists() and (ck / "step3").is_dir()


def test_the_command_runs_in_a_thread_other_than_the_main_one(data, tmp_path):
    # Setting the SIGTERM handler, which only the main thread may, failed every in-process
    # run from another thread: "signal only works in main thread of the main interpreter".
    import threading

    before = signal.getsignal(signal.SIGTERM)
    results = []
    thread = threading.Thread(target=lambda: results.append(cli(data=data["a"])))
    thread.start()
    thread.join()
    assert results[0].exit_code == 0, results[0].output
    assert "step 2: loss" in results[0].output
    assert signal.getsignal(signal.SIGTERM) is before


def test_checkpoints_hold_the_tokenizer_transformers_loads(data, tmp_path):
    # A checkpoint held config.json and weights only: AutoTokenizer.from_pretrained(step) failed,
    # where Pythia's own repositories ship tokenizer.json and its two small files.
    transformers = pytest.importorskip("transformers")
    from pythia_data import Tokenizer

    ck = tmp_path / "ck"
    result = cli("--vocab-size", "50304", "--save", ck, data=data["a"])
    assert result.exit_code == 0, result.output
    step = ck / "step2"
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= {
        p.name for p in step.iterdir()
    }
    hf = transformers.AutoTokenizer.from_pretrained(step)
    ours = Tokenizer()
    text = "Hello  world\r\n<|endoftext|> café\t 😀"
    assert hf(text)["input_ids"] == ours.encode(text).tolist()
    assert hf.eos_token == hf.bos_token == "<|endoftext|>" and hf.eos_token_id == ours.eod_id
    # A model whose vocabulary cannot hold the tokenizer's ids gets none (its data had other
    # ids), and asking for one is refused; 'none' writes none.
    result = cli("--save", tmp_path / "small", data=data["a"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "small" / "step2" / "tokenizer.json").exists()
    one_line_error(
        cli("--tokenizer", ours.path, "--save", tmp_path / "refused", data=data["a"]),
        "ids do not fit the model's vocabulary of 512",
    )
    result = cli(
        "--vocab-size", "50304", "--tokenizer", "none", "--save", tmp_path / "no", data=data["a"]
    )
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "no" / "step2" / "tokenizer.json").exists()


def test_a_resumed_run_keeps_its_checkpoints_tokenizer(data, tmp_path):
    # A requeue without --tokenizer wrote the bundled tokenizer into a run that had another one,
    # or none.
    from pythia_data.data import DEFAULT_TOKENIZER

    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps(json.loads(DEFAULT_TOKENIZER.read_text()), indent=1))
    big = ("--vocab-size", "50304")
    for given, want in ((str(mine), mine.read_bytes()), ("none", None)):
        ck = tmp_path / f"ck-{given == 'none'}"
        assert cli(*big, "--tokenizer", given, "--save", ck, data=data["a"]).exit_code == 0
        result = cli(*big, "--save", ck, "--resume", ck, "--train-iters", 4, data=data["a"])
        assert result.exit_code == 0, result.output
        held = ck / "step4" / "tokenizer.json"
        assert (held.read_bytes() if held.exists() else None) == want


def test_the_checkpoint_tokenizer_is_the_file_as_given_at_the_start(data, tmp_path, monkeypatch):
    # The file was copied at each checkpoint: one moved or deleted during the run (such as a
    # checkpoint's own tokenizer.json, replaced by a later save) failed the first save after it.
    import pythia_train.train as train_module
    from pythia_data.data import DEFAULT_TOKENIZER

    tok = tmp_path / "tokenizer.json"
    shutil.copyfile(DEFAULT_TOKENIZER, tok)
    started = train_module.train

    def train(*args, **kw):
        tok.unlink()
        return started(*args, **kw)

    monkeypatch.setattr(train_module, "train", train)
    ck = tmp_path / "ck"
    result = cli("--vocab-size", "50304", "--tokenizer", tok, "--save", ck, data=data["a"])
    assert result.exit_code == 0, result.output
    for step in ("step1", "step2"):
        assert (ck / step / "tokenizer.json").read_bytes() == DEFAULT_TOKENIZER.read_bytes()


def test_a_checkpoint_tokenizer_without_an_end_of_document_token_names_the_option(data, tmp_path):
    from pythia_data.data import DEFAULT_TOKENIZER

    tok = tmp_path / "other.json"
    tok.write_text(DEFAULT_TOKENIZER.read_text().replace("<|endoftext|>", "<|end|>"))
    one_line_error(
        cli("--vocab-size", "50304", "--tokenizer", tok, "--save", tmp_path / "ck", data=data["a"]),
        f"--tokenizer {tok}: this tokenizer has no <|endoftext|> token",
        "--tokenizer none",
    )


def test_checkpoints_name_the_tokenizers_end_of_document_id_as_eos(data, tmp_path):
    # config.json said eos_token_id 0 whatever the tokenizer: with one whose <|endoftext|> is
    # not id 0, transformers' generate stopped at another token and never at the document end.
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(["a tiny corpus for a tiny tokenizer"] * 8, vocab_size=300)
    bpe.add_special_tokens(["<|endoftext|>"])
    tok = tmp_path / "tokenizer.json"
    bpe.save(str(tok))
    eod = bpe.token_to_id("<|endoftext|>")
    assert eod > 0
    ck = tmp_path / "ck"
    result = cli("--tokenizer", tok, "--save", ck, data=data["a"])
    assert result.exit_code == 0, result.output
    conf = json.loads((ck / "step2" / "config.json").read_text())
    assert (conf["bos_token_id"], conf["eos_token_id"]) == (eod, eod)
    loaded = transformers.AutoTokenizer.from_pretrained(ck / "step2")
    assert loaded.eos_token_id == loaded.bos_token_id == eod


def test_init_from_keeps_the_checkpoints_own_tokenizer(data, tmp_path):
    # The bundled GPT-NeoX-20B tokenizer (or none, for a vocabulary it does not fit) replaced
    # the --init-from checkpoint's own in every checkpoint of a fine-tuning run.
    tokenizers = pytest.importorskip("tokenizers")
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(["a tiny corpus for a tiny tokenizer"] * 8, vocab_size=300)
    bpe.add_special_tokens(["<|endoftext|>", "<|prompter|>"])
    tok = tmp_path / "tokenizer.json"
    bpe.save(str(tok))
    ck = tmp_path / "ck"
    assert (
        cli("--tokenizer", tok, "--save", ck, "--train-iters", "1", data=data["a"]).exit_code == 0
    )
    hf = ck / "step1"
    out = tmp_path / "from"
    result = cli("--init-from", hf, "--save", out, data=data["a"])
    assert result.exit_code == 0, result.output
    assert (out / "step2" / "tokenizer.json").read_bytes() == tok.read_bytes()
    eod = bpe.token_to_id("<|endoftext|>")
    assert json.loads((out / "step2" / "config.json").read_text())["eos_token_id"] == eod
    none = tmp_path / "none"
    result = cli("--init-from", hf, "--tokenizer", "none", "--save", none, data=data["a"])
    assert result.exit_code == 0, result.output
    assert not (none / "step2" / "tokenizer.json").exists()


def test_an_init_from_tokenizer_that_cannot_be_read_names_its_source_and_the_options(
    data, tmp_path
):
    # A GPT-NeoX checkpoint whose tokenizer.json pythia-data cannot read (another
    # pre-tokenizer) failed the run with "--tokenizer: ...", an option it was not given, and
    # no way out.
    tokenizers = pytest.importorskip("tokenizers")
    assert cli("--save", tmp_path / "ck", "--train-iters", "1", data=data["a"]).exit_code == 0
    hf = tmp_path / "ck" / "step1"
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=100, special_tokens=["<|endoftext|>"])
    tok.train_from_iterator(["a tiny corpus for a tiny tokenizer"] * 8, trainer)
    tok.save(str(hf / "tokenizer.json"))
    run = ("--seq-length", str(SEQ), "--global-batch", "8", "--micro-batch", "4")
    run += ("--train-iters", "1", "--device", "cpu", "--no-progress", "--data", str(data["a"]))
    result = CliRunner().invoke(main, [*run, "--init-from", str(hf)])
    out = one_line_error(
        result, "the --init-from checkpoint's tokenizer: ", "--tokenizer PATH, or --tokenizer none"
    )
    assert "error: --tokenizer" not in out, out
    result = CliRunner().invoke(main, [*run, "--init-from", str(hf), "--tokenizer", "none"])
    assert result.exit_code == 0, result.output


def test_a_resume_refused_for_a_config_only_setting_names_the_config_key(data, tmp_path):
    # A run started from a config silent on rotary-pct trained the base --model's 0.25, and
    # resumes with GPT-NeoX's 1.0: the refusal advised options, none of which sets it.
    ck = tmp_path / "run"
    assert cli("--save", ck, "--train-iters", "1", data=data["a"]).exit_code == 0
    model = '"num-layers": 2, "hidden-size": 64, "num-attention-heads": 4, "pos-emb": "rotary"'
    model += ', "no-weight-tying": true, "hidden-dropout": 0, "attention-dropout": 0'
    p = tmp_path / "model.yml"
    p.write_text(f"{{{model}}}")
    result = cli("--config", p, "--resume", ck, "--save", ck, data=data["a"])
    one_line_error(
        result,
        "rotary_pct 0.25 (this run: 1.0)",
        "rotary-pct: 0.25 in the --config file, gpt-j-residual: true in the --config file",
    )
    # Silent on bias-gelu-fusion, GPT-NeoX trains the exact GELU; --gelu sets it too.
    p.write_text(f'{{{model}, "rotary-pct": 0.25, "gpt-j-residual": true}}')
    result = cli("--config", p, "--resume", ck, "--save", ck, data=data["a"])
    one_line_error(result, "gelu_approximate tanh (this run: none)", "--gelu tanh")
    p.write_text(
        f'{{{model}, "rotary-pct": 0.25, "gpt-j-residual": true, "bias-gelu-fusion": true}}'
    )
    result = cli("--config", p, "--resume", ck, "--save", ck, data=data["a"])
    assert result.exit_code == 0, result.output
