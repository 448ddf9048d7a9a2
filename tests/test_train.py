"""The trainer on CPU: data order, learning, exact resume, checkpoints, precisions, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from train_fixtures import pack_rows, random_rows, sample_tokens, tiny_config, write_rows

from pythia_data import PreshuffledDataset
from pythia_train.checkpoint import resolve_checkpoint
from pythia_train.cli import main
from pythia_train.configs import TrainConfig
from pythia_train.data import ArrayRows, RowSource, micro_batch, micro_batch_range
from pythia_train.hf import load_hf
from pythia_train.neox_config import read_neox_config
from pythia_train.train import train

SEQ = 16


@pytest.fixture(scope="module")
def rows_prefix(tmp_path_factory):
    d = tmp_path_factory.mktemp("rows")
    return write_rows(d / "rows", random_rows(256, SEQ, 512, seed=1))


def small_run(**kw) -> TrainConfig:
    base = dict(
        lr=1e-2,
        train_iters=6,
        global_batch=8,
        micro_batch=4,
        seq_length=SEQ,
        warmup=0.2,
        save_steps=[],
    )
    base.update(kw)
    return TrainConfig(**base)


def test_micro_batches_follow_gpt_neox_order():
    # GPT-NeoX's DistributedBatchSampler: chunks of mb·world rows, rank r takes [r·mb, (r+1)·mb).
    assert micro_batch_range(0, 0, 0, 2, 2, 8) == (0, 2)
    assert micro_batch_range(0, 0, 1, 2, 2, 8) == (2, 4)
    assert micro_batch_range(0, 1, 0, 2, 2, 8) == (4, 6)
    assert micro_batch_range(1, 1, 1, 2, 2, 8) == (14, 16)
    seen = sorted(
        i
        for r in range(4)
        for m in range(2)
        for i in range(*micro_batch_range(3, m, r, 4, 16, 128))
    )
    assert seen == list(range(3 * 128, 4 * 128))  # step s covers rows [s·G, (s+1)·G) once
    with pytest.raises(ValueError, match="not a multiple"):
        micro_batch_range(0, 0, 0, 3, 2, 8)


def test_preshuffled_rows_and_micro_batch_tensors(rows_prefix, tmp_path):
    src = PreshuffledDataset(rows_prefix)
    assert isinstance(src, RowSource) and src.seq_length == SEQ and len(src) == 256
    expected = random_rows(256, SEQ, 512, seed=1)
    x, y = micro_batch(src, 2, 1, 1, 2, 3, 12)  # rows 24 + 6 + 3 = [33, 36)
    assert x.dtype == torch.int64 and x.shape == (3, SEQ)
    assert np.array_equal(x.numpy(), expected[33:36, :-1])
    assert np.array_equal(y.numpy(), expected[33:36, 1:])
    with pytest.raises(ValueError, match="needs rows up to 264"):
        micro_batch(src, 21, 0, 0, 1, 12, 12)
    with pytest.raises(ValueError, match="item 0 has 17 tokens.*seq_length \\+ 1 = 9"):
        PreshuffledDataset(rows_prefix, seq_length=8)
    ragged = tmp_path / "ragged"
    from pythia_data import IndexedDatasetBuilder

    with IndexedDatasetBuilder(ragged) as b:
        b.add_item([1, 2, 3])
        b.add_item([1, 2])
    with pytest.raises(ValueError, match="ragged.idx: item 1 has 2 tokens"):
        PreshuffledDataset(ragged)


def test_loss_falls_on_the_bundled_sample(tmp_path):
    rows = pack_rows(sample_tokens(max_docs=12), 32)
    prefix = write_rows(tmp_path / "sample", rows)
    cfg = TrainConfig(
        lr=5e-3,
        train_iters=12,
        global_batch=4,
        micro_batch=4,
        seq_length=32,
        warmup=0.1,
        save_steps=[],
    )
    records = train(
        tiny_config(vocab_size=50304, max_seq_len=32),
        cfg,
        PreshuffledDataset(prefix),
        progress=False,
    )
    losses = [r["loss"] for r in records]
    assert losses[0] == pytest.approx(np.log(50304), abs=0.3)  # uniform at init
    assert np.mean(losses[-3:]) < losses[0] - 1.5


def test_gradient_accumulation_equals_one_big_micro_batch(rows_prefix):
    src = PreshuffledDataset(rows_prefix)
    a = train(tiny_config(), small_run(micro_batch=2), src, progress=False)
    b = train(tiny_config(), small_run(micro_batch=8), src, progress=False)
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-5)


def test_resume_reproduces_the_uninterrupted_run_exactly(rows_prefix, tmp_path):
    src = PreshuffledDataset(rows_prefix)
    full = train(
        tiny_config(),
        small_run(save_steps=[3, 6]),
        src,
        save=tmp_path / "a",
        log_path=tmp_path / "a.jsonl",
        progress=False,
    )
    resumed = train(
        tiny_config(),
        small_run(save_steps=[6]),
        src,
        save=tmp_path / "b",
        resume=tmp_path / "a" / "step3",
        progress=False,
    )
    assert [r["step"] for r in resumed] == [4, 5, 6]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in full[3:]]  # bit-identical
    assert [r["grad_norm"] for r in resumed] == [r["grad_norm"] for r in full[3:]]
    a, b = load_hf(tmp_path / "a" / "step6"), load_hf(tmp_path / "b" / "step6")
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    # The checkpoints: HF model + trainer state, 'latest' names the last, no partial leftovers.
    assert resolve_checkpoint(tmp_path / "a") == tmp_path / "a" / "step6"
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "latest",
        "step3",
        "step6",
    ]
    state = torch.load(tmp_path / "a" / "step3" / "trainer_state.pt", weights_only=False)
    assert state["iteration"] == 3 and state["data"]["consumed_rows"] == 24
    log = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "mfu"} <= set(log[0])
    assert log[0]["lr"] == 0.0 and log[1]["lr"] == pytest.approx(1e-2 * 1 / 1.2)


def test_a_resume_on_another_micro_batch_says_it_is_not_bit_identical(
    rows_prefix, tmp_path, capsys
):
    # The same rows each step, but the gradients summed in another order: the continuation
    # differs from the uninterrupted run by rounding, which "continues a run exactly" hid.
    src = PreshuffledDataset(rows_prefix)
    train(tiny_config(), small_run(save_steps=[3]), src, save=tmp_path / "a", progress=False)
    capsys.readouterr()
    ckpt = tmp_path / "a" / "step3"
    train(tiny_config(), small_run(), src, save=tmp_path / "b", resume=ckpt, progress=False)
    assert "note: resuming" not in capsys.readouterr().err
    layout = small_run(micro_batch=2)
    train(tiny_config(), layout, src, save=tmp_path / "c", resume=ckpt, progress=False)
    err = " ".join(capsys.readouterr().err.split())
    assert (
        f"note: resuming on 1 process with micro batch 2; {ckpt} was trained on 1 process with "
        "micro batch 4. Each step trains on the same rows" in err
    )
    assert "equal up to rounding, not bit for bit" in err


def test_a_checkpoint_of_the_earlier_cosine_resumes_with_its_warmup_past_half(
    rows_prefix, tmp_path
):
    # Before the v1.0 cosine, a warmup up to the whole decay was allowed. Such a checkpoint
    # keeps its schedule, but the resume (the requeue's same command, --warmup 0.6 included)
    # was refused: "warmup must be a fraction of lr-decay-iters in [0, 0.5]".
    from pythia_train.optim import cosine_to_min_lr

    src = PreshuffledDataset(rows_prefix)
    train(tiny_config(), small_run(save_steps=[3]), src, save=tmp_path / "a", progress=False)
    path = tmp_path / "a" / "step3" / "trainer_state.pt"
    state = torch.load(path, weights_only=False)
    del state["schedule"]["style"]
    state["schedule"]["warmup_iters"] = 0.6 * 6
    torch.save(state, path)
    for warmup in (0.6, 0.2):
        resumed = train(
            tiny_config(),
            small_run(warmup=warmup),
            src,
            resume=tmp_path / "a" / "step3",
            progress=False,
        )
        want = [cosine_to_min_lr(i, 1e-2, 1e-3, 3.6, 6) for i in (3, 4, 5)]
        assert [r["lr"] for r in resumed] == pytest.approx(want)
    # A new run cannot follow it: v1.0's lr would never reach its peak.
    with pytest.raises(ValueError, match=r"lr-decay-iters in \[0, 0.5\], got 0.6"):
        train(tiny_config(), small_run(warmup=0.6), src, progress=False)


def test_a_step_0_checkpoint_changes_nothing(rows_prefix, tmp_path):
    # Saving before the first step once ran a hidden optimizer step (torch fills an empty
    # optimizer's state that way): Adam's step count, and so every later update, was off by one.
    src = PreshuffledDataset(rows_prefix)
    plain = train(tiny_config(), small_run(), src, progress=False)
    saved = train(
        tiny_config(), small_run(save_steps=[0, 6]), src, save=tmp_path / "a", progress=False
    )
    assert [r["loss"] for r in saved] == [r["loss"] for r in plain]
    state = torch.load(tmp_path / "a" / "step0" / "trainer_state.pt", weights_only=False)
    assert state["optimizer"]["state"] == {}
    state = torch.load(tmp_path / "a" / "step6" / "trainer_state.pt", weights_only=False)
    assert {float(s["step"]) for s in state["optimizer"]["state"].values()} == {6.0}
    resumed = train(
        tiny_config(),
        small_run(save_steps=[6]),
        src,
        save=tmp_path / "b",
        resume=tmp_path / "a" / "step0",
        progress=False,
    )
    assert [r["loss"] for r in resumed] == [r["loss"] for r in plain]
    a, b = load_hf(tmp_path / "a" / "step6"), load_hf(tmp_path / "b" / "step6")
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_an_fp16_overflow_skips_the_step_and_its_learning_rate(rows_prefix):
    # As DeepSpeed under GPT-NeoX: the schedule advanced on skipped steps too.
    src = PreshuffledDataset(rows_prefix)
    run = dict(train_iters=12, warmup=0.5)
    fp16 = train(
        tiny_config(),
        small_run(precision="fp16", initial_scale_power=24, **run),
        src,
        progress=False,
    )
    fp32 = train(tiny_config(), small_run(**run), src, progress=False)
    # 2^24 overflows fp16 gradients here (each overflow halves it); a few halvings later it fits.
    n = [r["skipped"] for r in fp16].index(False)
    assert 1 <= n <= 8
    assert [r["skipped"] for r in fp16] == [True] * n + [False] * (12 - n)
    assert [r["lr"] for r in fp16] == [fp32[0]["lr"]] * n + [r["lr"] for r in fp32[: 12 - n]]
    assert not any(r["skipped"] for r in fp32)


def test_a_failed_save_leaves_the_previous_checkpoint_intact(rows_prefix, tmp_path, monkeypatch):
    import pythia_train.checkpoint as ckpt

    src = PreshuffledDataset(rows_prefix)
    train(
        tiny_config(), small_run(train_iters=1, save_steps=[1]), src, save=tmp_path, progress=False
    )
    real = ckpt.write_hf_files

    def disk_full(directory, *args, **kwargs):
        real(directory, *args, **kwargs)  # the weights are written, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt, "write_hf_files", disk_full)
    with pytest.raises(OSError, match="No space left"):
        train(
            tiny_config(),
            small_run(train_iters=2, save_steps=[2]),
            src,
            save=tmp_path,
            resume=tmp_path,
            progress=False,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step1"]
    assert resolve_checkpoint(tmp_path) == tmp_path / "step1"


def test_init_from_a_hf_checkpoint_starts_from_its_weights(rows_prefix, tmp_path):
    from pythia_train.hf import save_hf
    from pythia_train.model import build_model

    src = PreshuffledDataset(rows_prefix)
    start = build_model(tiny_config(num_layers=3), seed=99)
    save_hf(start, tmp_path / "hf")
    records = train(
        tiny_config(),
        small_run(train_iters=1, save_steps=[1]),
        src,
        init_from=tmp_path / "hf",
        save=tmp_path / "run",
        progress=False,
    )
    x, y = micro_batch(src, 0, 0, 0, 1, 8, 8)
    with torch.no_grad():
        assert records[0]["loss"] == pytest.approx(float(start(x, targets=y)), rel=1e-6)
    assert load_hf(tmp_path / "run" / "step1").cfg.num_layers == 3


def test_resume_refuses_a_different_global_batch(rows_prefix, tmp_path):
    src = PreshuffledDataset(rows_prefix)
    train(
        tiny_config(), small_run(train_iters=1, save_steps=[1]), src, save=tmp_path, progress=False
    )
    with pytest.raises(ValueError, match="global batch 8, this run has 16"):
        train(tiny_config(), small_run(global_batch=16), src, resume=tmp_path, progress=False)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains(rows_prefix, tmp_path, precision):
    src = PreshuffledDataset(rows_prefix)
    records = train(
        tiny_config(),
        small_run(precision=precision, save_steps=[6]),
        src,
        save=tmp_path,
        progress=False,
    )
    reference = train(tiny_config(), small_run(), src, progress=False)
    # Autocast computes in half precision but keeps fp32 master weights: the run stays on the
    # fp32 trajectory within half-precision rounding.
    assert [r["loss"] for r in records] == pytest.approx([r["loss"] for r in reference], rel=1e-2)
    # ...but not on it bit for bit: the first step's loss (same weights, same rows) comes from
    # half-precision matrix products. A run that ignored the precision passed the check above.
    assert records[0]["loss"] != reference[0]["loss"]
    if precision == "fp16":
        assert records[0]["loss_scale"] == 2.0**12
        state = torch.load(tmp_path / "step6" / "trainer_state.pt", weights_only=False)
        assert state["scaler"]["scale"] > 0


def test_too_little_data_is_a_clear_error(rows_prefix):
    with pytest.raises(ValueError, match="need 1024 rows; the data has 256"):
        train(
            tiny_config(),
            small_run(train_iters=128),
            PreshuffledDataset(rows_prefix),
            progress=False,
        )


def test_wrong_argument_types_are_a_type_error_naming_what_to_pass():
    # A model name or a numpy array failed later with a bare AttributeError.
    rows = random_rows(64, 16, 512)
    cfg = small_run(train_iters=2)
    with pytest.raises(TypeError, match=r"takes a ModelConfig, such as .*model_config.*got str"):
        train("pythia-14m", cfg, ArrayRows(rows), progress=False)
    with pytest.raises(TypeError, match=r"takes a TrainConfig.*got dict"):
        train(tiny_config(), {"train_iters": 2}, ArrayRows(rows), progress=False)
    with pytest.raises(TypeError, match=r"takes a RowSource, such as .*ArrayRows.*got ndarray"):
        train(tiny_config(), cfg, rows, progress=False)


PYTHIA_YML = """
# a Pythia-style GPT-NeoX config (comments allowed)
{
  "num-layers": 2, "hidden-size": 64, "num-attention-heads": 4,
  "seq-length": 16, "max-position-embeddings": 16, "rotary-pct": 0.25,
  "gpt-j-residual": true, "init_method": "small_init", "output_layer_init_method": "wang_init",
  "optimizer": {"type": "Adam", "params": {"lr": 0.01, "betas": [0.9, 0.95], "eps": 1.0e-8}},
  "min_lr": 0.001, "train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 2,
  "train-iters": 3, "lr-decay-iters": 3, "lr-decay-style": "cosine", "warmup": 0.01,
  "gradient_clipping": 1.0, "weight-decay": 0.1, "seed": 1234,
  "checkpoint-factor": 1000, "extra-save-iters": [0, 2],
  "fp16": {"fp16": true, "enabled": false},
  "pipe-parallel-size": 1, "attention-config": [[["flash"], 2]], "bias-gelu-fusion": true,
}
"""


def test_neox_yml_keys():
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "pythia.yml"
        p.write_text(PYTHIA_YML)
        conf = read_neox_config(p, world_size=1)
        assert conf["num_layers"] == 2 and conf["num_attention_heads"] == 4
        assert conf["lr"] == 0.01 and conf["betas"] == (0.9, 0.95) and conf["min_lr"] == 0.001
        # The global batch is micro × gas × ranks; the CLI reckons it with its micro batch.
        assert conf["micro_batch"] * conf["grad_accum"] == 8
        assert conf["extra_save_iters"] == (0, 2)
        assert "precision" not in conf  # fp16 disabled
        p.write_text(PYTHIA_YML.replace('"cosine"', '"linear"'))
        with pytest.raises(ValueError, match="lr_decay_style 'linear' is not supported"):
            read_neox_config(p)


@pytest.mark.parametrize(
    ("shape", "parallel", "vocab", "init"),
    [
        # Pythia's own configs: 6.9b and 12b name neither a padded vocabulary nor an init,
        # and trained GPT-NeoX's defaults on 2 and 4 model-parallel ranks.
        ((32, 4096, 32), 2, 50432, ("normal", "scaled_normal")),
        ((36, 5120, 40), 4, 50688, ("normal", "scaled_normal")),
        ((16, 2048, 8), 1, 50304, ("small_init", "wang_init")),
    ],
)
def test_neox_config_builds_the_pythia_model_it_describes(tmp_path, shape, parallel, vocab, init):
    from pythia_train.configs import PYTHIA_MODELS

    layers, d, heads = shape
    init_keys = (
        f'"init_method": "{init[0]}", "output_layer_init_method": "{init[1]}",'
        if init[0] == "small_init"
        else ""
    )
    p = tmp_path / "pythia.yml"
    p.write_text(
        f'{{"model-parallel-size": {parallel}, "num-layers": {layers}, "hidden-size": {d}, '
        f'"num-attention-heads": {heads}, {init_keys} "seq-length": 2048}}'
    )
    conf = read_neox_config(p)
    pythia = next(c for c in PYTHIA_MODELS.values() if (c.num_layers, c.hidden_size) == (layers, d))
    assert (conf["vocab_size"], conf["init_method"], conf["output_layer_init_method"]) == (
        pythia.vocab_size,
        pythia.init_method,
        pythia.output_layer_init_method,
    )
    assert (
        conf["vocab_size"] == vocab
        and (conf["init_method"], conf["output_layer_init_method"]) == init
    )


def test_cli_trains_from_a_neox_config_and_saves_hf_checkpoints(rows_prefix, tmp_path):
    yml = tmp_path / "run.yml"
    yml.write_text(PYTHIA_YML)
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "--config",
            str(yml),
            "--data",
            str(rows_prefix),
            "--vocab-size",
            "512",
            "--save",
            str(tmp_path / "ck"),
            "--log-file",
            str(tmp_path / "log.jsonl"),
            "--no-progress",
            "--train-iters",
            "2",  # the command line wins over the file
        ],
    )
    assert result.exit_code == 0, result.output
    assert "step 2: loss" in result.output
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [
        "latest",
        "step0",
        "step2",
    ]
    model = load_hf(tmp_path / "ck" / "step2")
    assert model.cfg.num_layers == 2 and model.cfg.gelu_approximate == "tanh"
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 2


def test_cli_errors_are_one_line(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["--model", "pythia-14m", "--data", str(tmp_path / "missing")])
    assert result.exit_code == 1
    assert result.output.startswith("pythia-train: error:") and "missing" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(main, ["--model", "pythia-14m"])
    assert result.exit_code == 2 and "no data" in result.output


def test_compiled_model_trains_like_eager(rows_prefix):
    # torch.compile (inductor's C++ backend on CPU) must not change what is learnt: the same
    # losses as eager mode up to floating-point reassociation.
    src = PreshuffledDataset(rows_prefix)
    eager = train(tiny_config(), small_run(train_iters=3), src, progress=False)
    compiled = train(tiny_config(), small_run(train_iters=3, compile=True), src, progress=False)
    np.testing.assert_allclose([r["loss"] for r in compiled], [r["loss"] for r in eager], rtol=1e-4)
