"""The model and trainer on a CUDA GPU: the same oracles as the CPU tests, on the device.

Skipped where torch sees no GPU (CI has none). Run it on a GPU machine with the native module
built or the wheel installed: ``python -m pytest tests/test_cuda.py``. It needs no package
beyond the runtime's (the sample is read by pythia_data's own tokenizer, not zstandard).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_model import CONFIGS, hf_twin, left_padded, rel_err
from train_fixtures import pack_rows, tiny_config, write_rows

from pythia_data import IndexedDataset, PreshuffledDataset
from pythia_data.data import SAMPLE_CORPUS
from pythia_data.tokenize import tokenize_files
from pythia_train.configs import TrainConfig
from pythia_train.hf import load_hf
from pythia_train.model import build_model
from pythia_train.train import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
transformers = pytest.importorskip("transformers")


@pytest.fixture(autouse=True)
def exact_fp32_matmul():
    # TF32 would make fp32 products agree to ~1e-3 only; the oracles below are fp32-exact.
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = before


@pytest.fixture(scope="module")
def sample_prefix(tmp_path_factory):
    """The bundled Pile sample, tokenized by pythia-data, packed into 32-token training rows."""
    d = tmp_path_factory.mktemp("sample")
    tokenize_files([SAMPLE_CORPUS], d / "docs", threads=2)
    docs = IndexedDataset(d / "docs")
    tokens = np.concatenate([docs[i] for i in range(40)]).astype(np.uint16)
    return write_rows(d / "rows", pack_rows(tokens, 32))


def run_cfg(**kw) -> TrainConfig:
    base = dict(lr=5e-3, train_iters=12, global_batch=8, micro_batch=4, seq_length=32, warmup=0.1)
    base.update(kw)
    return TrainConfig(save_steps=base.pop("save_steps", []), **base)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_equal_transformers_on_cuda(name):
    cfg = CONFIGS[name]
    model = build_model(cfg, seed=1).eval()
    hf = hf_twin(model).cuda()
    model.cuda()
    tokens = torch.randint(0, cfg.vocab_size, (3, 37), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours, theirs = model(tokens.cuda()), hf(tokens.cuda()).logits
        on_cpu = model.cpu()(tokens)
    assert rel_err(ours, theirs) < 1e-5
    assert rel_err(ours.cpu(), on_cpu) < 1e-5


def generates_alike_on_cuda_cpu_and_transformers(model, prompt, mask) -> None:
    """20 greedy tokens on the GPU equal transformers' there and ours on the CPU."""
    on_cpu = model.generate(prompt, max_new_tokens=20, attention_mask=mask)
    hf = hf_twin(model).cuda()
    model.cuda()
    ours = model.generate(prompt.cuda(), max_new_tokens=20, attention_mask=mask.cuda())
    theirs = hf.generate(
        prompt.cuda(),
        attention_mask=mask.cuda(),
        max_new_tokens=20,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=None,
    )
    assert ours.device.type == "cuda"
    assert torch.equal(ours, theirs)
    assert torch.equal(ours.cpu(), on_cpu)


def test_generation_on_cuda_equals_transformers_and_cpu():
    cfg = tiny_config()
    model = build_model(cfg, seed=3).eval()
    prompt = torch.randint(0, cfg.vocab_size, (2, 7), generator=torch.Generator().manual_seed(4))
    generates_alike_on_cuda_cpu_and_transformers(model, prompt, torch.ones_like(prompt))


@pytest.mark.parametrize("name", ["pythia-like", "sequential-residual"])
def test_ragged_generation_on_cuda_equals_transformers_and_cpu(name):
    # Left-padded prompts take the masked SDPA path, on the GPU's kernels.
    cfg = CONFIGS[name]
    model = build_model(cfg, seed=3).eval()
    prompt, mask, _ = left_padded(cfg, [7, 3, 1, 5], seed=4)
    generates_alike_on_cuda_cpu_and_transformers(model, prompt, mask)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_loss_falls_on_cuda(sample_prefix, precision):
    records = train(
        tiny_config(vocab_size=50304, max_seq_len=32),
        run_cfg(precision=precision),
        PreshuffledDataset(sample_prefix),
        device="cuda",
        progress=False,
    )
    losses = [r["loss"] for r in records]
    assert all(np.isfinite(losses))
    assert losses[0] == pytest.approx(np.log(50304), abs=0.3)  # uniform at init
    assert np.mean(losses[-3:]) < losses[0] - 1.5
    if precision == "fp16":
        assert all(r["loss_scale"] > 0 for r in records)


def test_resume_on_cuda_continues_the_run_and_transformers_loads_its_checkpoint(
    sample_prefix, tmp_path
):
    src = PreshuffledDataset(sample_prefix)
    cfg = tiny_config(vocab_size=50304, max_seq_len=32)
    full = train(
        cfg, run_cfg(save_steps=[4, 8]), src, save=tmp_path / "a", device="cuda", progress=False
    )
    resumed = train(
        cfg,
        run_cfg(save_steps=[8]),
        src,
        save=tmp_path / "b",
        resume=tmp_path / "a" / "step4",
        device="cuda",
        progress=False,
    )
    assert [r["step"] for r in resumed] == list(range(5, 13))
    # GPU kernels may reduce in another order from run to run; the trajectory must not move.
    assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in full[4:]], rel=1e-5)
    a, b = load_hf(tmp_path / "a" / "step8"), load_hf(tmp_path / "b" / "step8")
    assert (
        max(
            rel_err(x.detach(), y.detach())
            for x, y in zip(a.parameters(), b.parameters(), strict=True)
        )
        < 1e-4
    )
    # The checkpoint written from the GPU loads, offline, into transformers on the CPU.
    hf = transformers.GPTNeoXForCausalLM.from_pretrained(tmp_path / "a" / "step8").eval()
    tokens = torch.from_numpy(src[0][:32].astype(np.int64))[None]
    with torch.no_grad():
        assert rel_err(a.eval()(tokens), hf(tokens).logits) < 1e-5


def test_cli_trains_compiled_bf16_then_fine_tunes_from_its_checkpoint_on_cuda(
    sample_prefix, tmp_path
):
    # The command line end to end on the GPU, as a user runs it: torch.compile, bf16 autocast,
    # Pythia's checkpoint files, then an --init-from fine-tune of what it saved.
    import json

    from click.testing import CliRunner

    from pythia_data.tokenizer import Tokenizer
    from pythia_train.cli import main

    shape = ("--num-layers", "2", "--hidden-size", "64", "--num-attention-heads", "4")
    run = (*("--seq-length", "32", "--global-batch", "8", "--micro-batch", "4", "--lr", "5e-3"),)
    run += ("--precision", "bf16", "--compile", "--device", "cuda", "--no-progress")
    run += ("--data", str(sample_prefix))
    first = CliRunner().invoke(
        main,
        [*shape, "--max-position-embeddings", "32", *run, "--train-iters", "12"]
        + [
            "--save-steps",
            "12",
            "--save",
            str(tmp_path / "a"),
            "--log-file",
            str(tmp_path / "a.jsonl"),
        ],
    )
    assert first.exit_code == 0, first.output
    losses = [json.loads(x)["loss"] for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert losses[0] == pytest.approx(np.log(50304), abs=0.3)
    assert losses[-1] < losses[0] - 1.5
    ck = tmp_path / "a" / "step12"
    conf = json.loads((ck / "config.json").read_text())
    eod = Tokenizer().eod_id
    assert (conf["bos_token_id"], conf["eos_token_id"]) == (eod, eod)
    assert (ck / "tokenizer.json").is_file()

    second = CliRunner().invoke(
        main,
        [*run, "--init-from", str(ck), "--train-iters", "4", "--save-steps", "4"]
        + ["--save", str(tmp_path / "b"), "--log-file", str(tmp_path / "b.jsonl")],
    )
    assert second.exit_code == 0, second.output
    tuned = [json.loads(x)["loss"] for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    # It starts from the trained weights, not from a fresh initialisation.
    assert tuned[0] < losses[0] - 1.0
    model = load_hf(tmp_path / "b" / "step4").eval()
    assert (model.cfg.num_layers, model.cfg.hidden_size, model.cfg.max_seq_len) == (2, 64, 32)
    hf = transformers.GPTNeoXForCausalLM.from_pretrained(tmp_path / "b" / "step4").eval()
    tokens = torch.from_numpy(PreshuffledDataset(sample_prefix)[0][:32].astype(np.int64))[None]
    with torch.no_grad():
        assert rel_err(model(tokens), hf(tokens).logits) < 1e-5
