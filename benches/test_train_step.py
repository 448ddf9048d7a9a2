"""CPU training step of our GPT-NeoX against transformers' GPTNeoXForCausalLM (the anchor).

Same shape, weights, batch and AdamW settings; one forward + backward + optimizer step each.
Run: ``PYTHONPATH=python pytest benches/test_train_step.py --benchmark-only``.
"""

from __future__ import annotations

import pytest
import torch

from pythia_train.configs import ModelConfig, TrainConfig
from pythia_train.hf import config_to_hf
from pythia_train.model import build_model, lm_loss
from pythia_train.optim import build_optimizer

transformers = pytest.importorskip("transformers")

# pythia-14m's width and depth with a short sequence: a CPU-sized step.
CFG = ModelConfig(num_layers=6, hidden_size=128, num_heads=4, vocab_size=50304, max_seq_len=256)
BATCH, SEQ = 2, 128


def _tokens():
    return torch.randint(
        0, CFG.vocab_size, (BATCH, SEQ + 1), generator=torch.Generator().manual_seed(0)
    )


def _step(model, opt, forward):
    tokens = _tokens()
    x, y = tokens[:, :-1], tokens[:, 1:]

    def run():
        loss = forward(model, x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    return run


def test_step_pythia_train(benchmark):
    model = build_model(CFG, seed=0).train()
    opt = build_optimizer(model, TrainConfig())
    benchmark.group = "train-step-14m-shape-cpu"
    benchmark(_step(model, opt, lambda m, x, y: m(x, targets=y)))


def test_step_transformers_anchor(benchmark):
    conf = transformers.GPTNeoXConfig(**config_to_hf(CFG), attn_implementation="sdpa")
    hf = transformers.GPTNeoXForCausalLM(conf).train()
    opt = build_optimizer(hf, TrainConfig())
    benchmark.group = "train-step-14m-shape-cpu"
    benchmark(_step(hf, opt, lambda m, x, y: lm_loss(m(x).logits, y)))
