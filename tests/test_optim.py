"""Pythia's optimizer: parameter groups, decoupled weight decay, warmup + cosine learning rate."""

from __future__ import annotations

import math

import pytest
import torch
from train_fixtures import tiny_config

from pythia_train.configs import TrainConfig
from pythia_train.model import build_model
from pythia_train.optim import LRSchedule, build_optimizer, param_groups, pythia_lr


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
    lr, min_lr, warm, total = 6e-4, 6e-5, 1430.0, 143_000
    assert pythia_lr(0, lr, min_lr, warm, total) == 0.0  # GPT-NeoX's first step trains at lr 0
    assert pythia_lr(715, lr, min_lr, warm, total) == pytest.approx(3e-4)
    assert pythia_lr(1430, lr, min_lr, warm, total) == pytest.approx(lr)
    mid = (1430 + 143_000) / 2
    assert pythia_lr(mid, lr, min_lr, warm, total) == pytest.approx((lr + min_lr) / 2)
    # A quarter into the cosine: min + (lr-min)·(1+cos(π/4))/2.
    q = 1430 + (143_000 - 1430) / 4
    assert pythia_lr(q, lr, min_lr, warm, total) == pytest.approx(
        min_lr + (lr - min_lr) * (1 + math.cos(math.pi / 4)) / 2
    )
    assert pythia_lr(143_000, lr, min_lr, warm, total) == pytest.approx(min_lr)
    assert pythia_lr(150_000, lr, min_lr, warm, total) == pytest.approx(min_lr)


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
