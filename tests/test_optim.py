"""Pythia's optimizer: parameter groups, decoupled weight decay, warmup + cosine learning rate."""

from __future__ import annotations

import math

import pytest
import torch
from train_fixtures import tiny_config

from pythia_train.configs import TrainConfig
from pythia_train.model import build_model
from pythia_train.optim import (
    GPT_NEOX_V1,
    LRSchedule,
    build_optimizer,
    cosine_to_min_lr,
    param_groups,
    pythia_lr,
)


def test_no_decay_on_biases_and_layernorm():
    model = build_model(tiny_config(), seed=0)
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = sorted(names[id(p)] for p in decay["params"])
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    # Exactly the weight matrices of Linear/Embedding layers decay.
    expected = sorted(
        f"{mod_name}.weight"
        for mod_name, mod in model.named_modules()
        if isinstance(mod, torch.nn.Linear | torch.nn.Embedding)
    )
    assert decayed == expected
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert all(
        n.endswith("bias") or "norm" in n for n in (names[id(p)] for p in no_decay["params"])
    )


def test_adamw_decays_only_the_decay_group():
    model = build_model(tiny_config(), seed=0)
    cfg = TrainConfig(lr=0.5, weight_decay=0.1)
    opt = build_optimizer(model, cfg)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                p.fill_(0.3)  # nonzero so that decay would show
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # zero gradients: AdamW's only change is p ← p·(1 − lr·wd)
    for n, p in model.named_parameters():
        if n.endswith("bias") or "norm" in n:
            assert torch.equal(p, before[n]), n
        else:
            assert torch.allclose(p, before[n] * (1 - 0.5 * 0.1)), n
    assert opt.defaults["betas"] == (0.9, 0.95) and opt.defaults["eps"] == 1e-8


def test_pythia_learning_rate_hand_checked_points():
    # GPT-NeoX v1.0's AnnealingLR, Pythia-70m's settings: the cosine spans the whole 143,000
    # steps although it starts after the warmup, and min_lr floors it from step 115,139 on.
    lr, min_lr, warm, total = 1e-3, 1e-4, 1430.0, 143_000
    assert pythia_lr(0, lr, min_lr, warm, total) == 0.0  # GPT-NeoX's first step trains at lr 0
    assert pythia_lr(715, lr, min_lr, warm, total) == pytest.approx(5e-4)
    assert pythia_lr(1430, lr, min_lr, warm, total) == pytest.approx(lr)
    # Half the decay length past the warmup: cos(π/2) = 0, half the lr (not (lr + min_lr)/2).
    assert pythia_lr(1430 + 71_500, lr, min_lr, warm, total) == pytest.approx(lr / 2)
    # A quarter: lr · (1 + cos(π/4)) / 2.
    quarter = pythia_lr(1430 + 35_750, lr, min_lr, warm, total)
    assert quarter == pytest.approx(lr * (1 + math.cos(math.pi / 4)) / 2)
    # lr/2 · (1 + cos x) = 0.1 · lr where cos x = -0.8: x / π · 143,000 + 1,430 = 115,138.9.
    assert pythia_lr(115_138, lr, min_lr, warm, total) > min_lr
    assert pythia_lr(115_139, lr, min_lr, warm, total) == min_lr
    assert pythia_lr(143_000, lr, min_lr, warm, total) == min_lr
    assert pythia_lr(150_000, lr, min_lr, warm, total) == min_lr
    # The step past the warmup's cap (decay - warmup) is clamped there, as in GPT-NeoX: with
    # min_lr 0 the lr stops at lr/2 · (1 + cos(π · 0.8)) for a warmup of a tenth.
    end = 1e-3 / 2 * (1 + math.cos(math.pi * 0.8))
    assert pythia_lr(90, 1e-3, 0.0, 10.0, 100) == pytest.approx(end)
    assert pythia_lr(500, 1e-3, 0.0, 10.0, 100) == pytest.approx(end)


def test_checkpoints_saved_before_keep_the_cosine_to_min_lr():
    lr, min_lr, warm, total = 6e-4, 6e-5, 1430.0, 143_000
    mid = (1430 + 143_000) / 2
    assert cosine_to_min_lr(mid, lr, min_lr, warm, total) == pytest.approx((lr + min_lr) / 2)
    assert cosine_to_min_lr(143_000, lr, min_lr, warm, total) == pytest.approx(min_lr)
    model = build_model(tiny_config(), seed=0)
    cfg = TrainConfig(lr=1e-3, train_iters=100, warmup=0.1)
    sched = LRSchedule(build_optimizer(model, cfg), cfg)
    state = sched.state_dict()
    assert state["style"] == GPT_NEOX_V1
    state = {**state, "iteration": 55}
    del state["style"]  # as saved before the schedule had a style
    sched.load_state_dict(state)
    assert sched.current() == pytest.approx((1e-3 + 1e-4) / 2)
    # v1.0 halves the lr half the decay length past the warmup: at 10 + 50.
    sched.load_state_dict({**state, "style": GPT_NEOX_V1, "iteration": 60})
    assert sched.current() == pytest.approx(1e-3 / 2)
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'linear'"):
        sched.load_state_dict({**state, "style": "linear"})


def test_schedule_sets_the_optimizer_and_restores_from_its_state():
    model = build_model(tiny_config(), seed=0)
    cfg = TrainConfig(lr=1e-3, train_iters=100, warmup=0.1)
    opt = build_optimizer(model, cfg)
    sched = LRSchedule(opt, cfg)
    seen = []
    for _ in range(30):
        seen.append(opt.param_groups[0]["lr"])
        sched.step()
    assert seen[:3] == [0.0, pytest.approx(1e-4), pytest.approx(2e-4)]
    assert max(seen) == pytest.approx(1e-3) and seen.index(max(seen)) == 10
    other = LRSchedule(build_optimizer(model, cfg), cfg)
    other.load_state_dict(sched.state_dict())
    assert other.optimizer.param_groups[1]["lr"] == opt.param_groups[1]["lr"]
    assert cfg.min_lr_value == pytest.approx(1e-4)
