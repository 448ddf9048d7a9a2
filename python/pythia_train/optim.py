"""AdamW with Pythia's parameter groups, and GPT-NeoX v1.0's warmup + cosine learning rate."""

from __future__ import annotations

import math

import torch
from torch import nn

from pythia_train.configs import TrainConfig

__all__ = [
    "param_groups",
    "build_optimizer",
    "pythia_lr",
    "cosine_to_min_lr",
    "LRSchedule",
    "GPT_NEOX_V1",
    "COSINE_TO_MIN_LR",
]


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


#: The cosine GPT-NeoX v1.0 trained Pythia with (``pythia_lr``); a schedule's state names it.
GPT_NEOX_V1 = "gpt-neox-v1.0"
#: The cosine from lr to min_lr over the decay (GPT-NeoX since August 2023). pythia-train
#: used it before it followed v1.0, and checkpoints saved then keep it when resumed.
COSINE_TO_MIN_LR = "cosine-to-min-lr"


def pythia_lr(
    iteration: int, lr: float, min_lr: float, warmup_iters: float, decay_iters: int
) -> float:
    """GPT-NeoX v1.0's ``AnnealingLR.get_lr`` (cosine), which trained Pythia, for the step that
    follows ``iteration`` steps.

    Warmup is linear from 0 (the very first step trains with lr 0), then ``lr/2 · (1 +
    cos(π · (t − warmup) / decay_iters))`` floored at min_lr, with t capped at ``decay_iters −
    warmup``. The cosine spans the whole decay length although it starts after the warmup, so
    the floor comes first: Pythia's lr reaches min_lr (0.1 · lr) at step 115,139 of 143,000,
    not at the end. A decay of no length (``lr_decay_iters`` 0) is one step, as GPT-NeoX's
    ``max(1, lr_decay_iters)`` makes it (``LRSchedule`` sizes the warmup from that step too)."""
    decay_iters = max(1, decay_iters)
    capped = min(iteration, decay_iters - warmup_iters)
    if warmup_iters > 0 and iteration <= warmup_iters:
        return lr * capped / warmup_iters
    value = lr / 2.0 * (math.cos(math.pi * (capped - warmup_iters) / decay_iters) + 1.0)
    return max(value, min_lr)


def cosine_to_min_lr(
    iteration: int, lr: float, min_lr: float, warmup_iters: float, decay_iters: int
) -> float:
    """The ``COSINE_TO_MIN_LR`` schedule: the same warmup, then a cosine from lr to min_lr
    that ends at ``decay_iters``, and min_lr after it."""
    if warmup_iters > 0 and iteration <= warmup_iters:
        return lr * iteration / warmup_iters
    if decay_iters <= warmup_iters:
        return min_lr
    progress = (iteration - warmup_iters) / (decay_iters - warmup_iters)
    value = min_lr + (lr - min_lr) / 2.0 * (math.cos(math.pi * min(progress, 1.0)) + 1.0)
    return max(value, min_lr)


_STYLES = {GPT_NEOX_V1: pythia_lr, COSINE_TO_MIN_LR: cosine_to_min_lr}


class LRSchedule:
    """Sets every group's lr for the current iteration; its state is that iteration."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: TrainConfig):
        self.optimizer = optimizer
        self.lr = cfg.lr
        self.min_lr = cfg.min_lr_value
        # GPT-NeoX decays over at least one step, and sizes the warmup from that length.
        self.decay_iters = max(1, cfg.decay_iters)
        self.warmup_iters = cfg.warmup * self.decay_iters
        self.style = GPT_NEOX_V1
        self.iteration = 0
        self._apply()

    def current(self) -> float:
        formula = _STYLES[self.style]
        return formula(self.iteration, self.lr, self.min_lr, self.warmup_iters, self.decay_iters)

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
            "style": self.style,
        }

    def load_state_dict(self, state: dict) -> None:
        """The iteration and, where saved, the schedule's lr, min_lr, warmup and decay length:
        a resumed run continues the checkpoint's schedule. A state without a style was saved
        before pythia-train followed GPT-NeoX v1.0, with the cosine to min_lr."""
        self.iteration = int(state["iteration"])
        style = state.get("style", COSINE_TO_MIN_LR)
        if style not in _STYLES:
            raise ValueError(f"unknown learning-rate schedule {style!r} (known: {sorted(_STYLES)})")
        self.style = style
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
