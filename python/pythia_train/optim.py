"""AdamW with Pythia's parameter groups, and GPT-NeoX's warmup + cosine learning rate."""

from __future__ import annotations

import math

import torch
from torch import nn

from pythia_train.configs import TrainConfig

__all__ = ["param_groups", "build_optimizer", "pythia_lr", "LRSchedule"]


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """GPT-NeoX's ``get_params_for_weight_decay_optimization``: no decay on biases or LayerNorm."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_norm = "layernorm" in name or "layer_norm" in name
        (no_decay if is_norm or name.endswith("bias") else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    # Fused kernels on GPUs. Elsewhere the single-tensor loop, so that the per-element arithmetic
    # is the same for plain tensors and FSDP's DTensor shards (the 1-vs-2-process tests compare).
    fused = None
    params = param_groups(model, cfg.weight_decay)
    first = next(iter(params[0]["params"]), None)
    if first is not None and first.device.type == "cuda":
        fused = True
    return torch.optim.AdamW(
        params,
        lr=cfg.lr,
        betas=cfg.betas,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        fused=fused,
        foreach=False if fused is None else None,
    )


def pythia_lr(
    iteration: int, lr: float, min_lr: float, warmup_iters: float, decay_iters: int
) -> float:
    """GPT-NeoX's ``AnnealingLR.get_lr`` (cosine) for the step that follows ``iteration`` steps.

    Warmup is linear from 0 (the very first step trains with lr 0, as in GPT-NeoX), then a
    cosine from lr to min_lr at ``decay_iters``, and min_lr after it. A cosine of no length
    (``decay_iters <= warmup_iters``, e.g. ``lr_decay_iters`` 0) leaves min_lr after warmup
    (GPT-NeoX would divide by zero there).
    """
    if warmup_iters > 0 and iteration <= warmup_iters:
        return lr * iteration / warmup_iters
    if decay_iters <= warmup_iters:
        return min_lr
    progress = (iteration - warmup_iters) / (decay_iters - warmup_iters)
    value = min_lr + (lr - min_lr) / 2.0 * (math.cos(math.pi * min(progress, 1.0)) + 1.0)
    return max(value, min_lr)


class LRSchedule:
    """Sets every group's lr for the current iteration; its state is that iteration."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: TrainConfig):
        self.optimizer = optimizer
        self.lr = cfg.lr
        self.min_lr = cfg.min_lr_value
        self.warmup_iters = cfg.warmup * cfg.decay_iters
        self.decay_iters = cfg.decay_iters
        self.iteration = 0
        self._apply()

    def current(self) -> float:
        return pythia_lr(self.iteration, self.lr, self.min_lr, self.warmup_iters, self.decay_iters)

    def _apply(self) -> None:
        lr = self.current()
        for g in self.optimizer.param_groups:
            g["lr"] = lr

    def step(self) -> None:
        self.iteration += 1
        self._apply()

    def state_dict(self) -> dict:
        return {
            "iteration": self.iteration,
            "lr": self.lr,
            "min_lr": self.min_lr,
            "warmup_iters": self.warmup_iters,
            "decay_iters": self.decay_iters,
        }

    def load_state_dict(self, state: dict) -> None:
        """The iteration and, where saved, the schedule's lr, min_lr, warmup and decay length:
        a resumed run continues the checkpoint's schedule."""
        self.iteration = int(state["iteration"])
        for key, cast in (
            ("lr", float),
            ("min_lr", float),
            ("warmup_iters", float),
            ("decay_iters", int),
        ):
            if state.get(key) is not None:
                setattr(self, key, cast(state[key]))
        self._apply()

    def settings(self) -> dict:
        return {k: v for k, v in self.state_dict().items() if k != "iteration"}
