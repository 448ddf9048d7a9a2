"""Model shapes of every Pythia size, custom shapes, and Pythia's training recipe."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

__all__ = [
    "ModelConfig",
    "TrainConfig",
    "PYTHIA_MODELS",
    "PYTHIA_LR",
    "model_config",
    "pythia_checkpoint_steps",
]


@dataclass(frozen=True)
class ModelConfig:
    """A GPT-NeoX shape. Defaults are Pythia's (rotary on 25 % of each head, parallel residual)."""

    num_layers: int
    hidden_size: int
    num_heads: int
    vocab_size: int = 50304
    max_seq_len: int = 2048
    rotary_pct: float = 0.25
    rotary_base: float = 10000.0
    layernorm_eps: float = 1e-5
    parallel_residual: bool = True
    # Pythia trained with the tanh GELU; its HF checkpoints declare the exact one ("gelu"),
    # and matching their logits needs the exact one, so that is the default.
    gelu_approximate: str = "none"
    # "small_init"/"wang_init" for 14m..2.8b; "normal"/"scaled_normal" for 6.9b and 12b.
    init_method: str = "small_init"
    output_layer_init_method: str = "wang_init"
    init_std: float = 0.02

    def __post_init__(self) -> None:
        shape = {
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "num_heads": self.num_heads,
            "vocab_size": self.vocab_size,
            "max_seq_len": self.max_seq_len,
        }
        bad = [f"{k} {v}" for k, v in shape.items() if v <= 0]
        if bad:
            raise ValueError(f"the model's sizes must be positive, got {', '.join(bad)}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        if self.gelu_approximate not in ("none", "tanh"):
            raise ValueError(
                f"gelu_approximate must be 'none' or 'tanh', got {self.gelu_approximate!r}"
            )
        if self.init_method not in ("small_init", "normal"):
            raise ValueError(f"unknown init_method {self.init_method!r}")
        if self.output_layer_init_method not in ("wang_init", "scaled_normal"):
            raise ValueError(f"unknown output_layer_init_method {self.output_layer_init_method!r}")
        # 0 is a model without positions in attention; transformers loads such configs.
        if not 0 <= self.rotary_pct <= 1:
            raise ValueError(f"rotary_pct must be in [0, 1], got {self.rotary_pct}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.rotary_pct)

    @property
    def intermediate_size(self) -> int:
        return 4 * self.hidden_size

    def non_embedding_params(self) -> int:
        """Parameters outside embed_in and embed_out (Pythia's table counts these)."""
        d, L = self.hidden_size, self.num_layers
        per_layer = (
            (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d) + 4 * d
        )
        return L * per_layer + 2 * d

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 6 per matmul weight (embed_out included), plus attention.

        The PaLM appendix-B estimate, which nanoGPT and most MFU figures use; embed_in is a
        lookup and does no FLOPs.
        """
        n = self.non_embedding_params() + self.vocab_size * self.hidden_size
        return 6.0 * n + 12.0 * self.num_layers * self.hidden_size * seq_len


def _pythia(layers: int, d: int, heads: int, vocab: int = 50304, **kw) -> ModelConfig:
    return ModelConfig(num_layers=layers, hidden_size=d, num_heads=heads, vocab_size=vocab, **kw)


_BIG = {"init_method": "normal", "output_layer_init_method": "scaled_normal"}

PYTHIA_MODELS: dict[str, ModelConfig] = {
    "pythia-14m": _pythia(6, 128, 4),
    "pythia-31m": _pythia(6, 256, 8),
    "pythia-70m": _pythia(6, 512, 8),
    "pythia-160m": _pythia(12, 768, 12),
    "pythia-410m": _pythia(24, 1024, 16),
    "pythia-1b": _pythia(16, 2048, 8),
    "pythia-1.4b": _pythia(24, 2048, 16),
    "pythia-2.8b": _pythia(32, 2560, 32),
    "pythia-6.9b": _pythia(32, 4096, 32, 50432, **_BIG),
    "pythia-12b": _pythia(36, 5120, 40, 50688, **_BIG),
}

PYTHIA_LR: dict[str, float] = {
    "pythia-14m": 1e-3,
    "pythia-31m": 1e-3,
    "pythia-70m": 1e-3,
    "pythia-160m": 6e-4,
    "pythia-410m": 3e-4,
    "pythia-1b": 2.5e-4,
    "pythia-1.4b": 2e-4,
    "pythia-2.8b": 1.6e-4,
    "pythia-6.9b": 1.2e-4,
    "pythia-12b": 1.2e-4,
}


def _canonical_name(name: str) -> str:
    n = name.lower()
    if not n.startswith("pythia-"):
        n = "pythia-" + n
    # "pythia-160m-deduped" has the same shape as "pythia-160m".
    return n.removesuffix("-deduped")


def model_config(name: str, **overrides) -> ModelConfig:
    """The named Pythia shape ("pythia-160m", "160m", "pythia-1b-deduped"), with overrides."""
    key = _canonical_name(name)
    if key not in PYTHIA_MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(PYTHIA_MODELS)}")
    return dataclasses.replace(PYTHIA_MODELS[key], **overrides)


def pythia_checkpoint_steps(
    train_iters: int,
    checkpoint_factor: int = 1000,
    extra_save_iters: tuple[int, ...] = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
) -> list[int]:
    """Steps with a checkpoint: Pythia's 154 for 143,000 iterations (0, 1, 2, 4, ..., 512, 1000, ...).

    A checkpoint at step N holds the model after N optimizer steps; the last step is always saved.
    """
    steps = {s for s in extra_save_iters if 0 <= s <= train_iters}
    if checkpoint_factor > 0:
        steps.update(range(checkpoint_factor, train_iters + 1, checkpoint_factor))
    steps.add(train_iters)
    return sorted(steps)


@dataclass
class TrainConfig:
    """Pythia's recipe (every size) with the knobs a smaller run needs."""

    lr: float = 6e-4
    min_lr: float | None = None  # default 0.1 · lr
    warmup: float = 0.01  # fraction of lr_decay_iters, as GPT-NeoX's "warmup"
    train_iters: int = 143_000
    lr_decay_iters: int | None = None  # default train_iters
    global_batch: int = 1024
    micro_batch: int = 16
    seq_length: int = 2048
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 1234
    precision: str = "fp32"  # fp32 | bf16 | fp16
    # fp16 dynamic loss scaling, DeepSpeed's names and Pythia's values.
    initial_scale_power: int = 12
    loss_scale_window: int = 1000
    checkpoint_factor: int = 1000
    extra_save_iters: tuple[int, ...] = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
    save_steps: list[int] | None = field(default=None)  # explicit list overrides the factor
    log_interval: int = 1
    # GPT-NeoX's exit_interval: stop (with a checkpoint when saving) after the first step
    # divisible by it; the schedule and data order stay those of train_iters.
    exit_interval: int | None = None
    compile: bool = False
    activation_checkpointing: bool = False
    parallel: str = "ddp"  # ddp | fsdp
    peak_tflops: float | None = None  # per device, for MFU; guessed from the GPU when None

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be fp32, bf16 or fp16, got {self.precision!r}")
        if self.parallel not in ("ddp", "fsdp"):
            raise ValueError(f"parallel must be ddp or fsdp, got {self.parallel!r}")
        if min(self.global_batch, self.micro_batch, self.seq_length, self.train_iters) <= 0:
            raise ValueError(
                "global_batch, micro_batch, seq_length and train_iters must be positive"
            )
        # Up to 1 here: a run resumed from a checkpoint of the earlier cosine to min_lr keeps
        # its warmup, which could be any fraction. A new run is held to half
        # (check_new_schedule).
        if not 0 <= self.warmup <= 1:
            raise self._warmup_error()
        if self.log_interval < 1:
            raise ValueError(f"log-interval must be at least 1, got {self.log_interval}")
        # GPT-NeoX seeds numpy's RandomState with it, which takes 32 bits.
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be in [0, 2^32), got {self.seed}")
        if self.exit_interval is not None and self.exit_interval < 1:
            raise ValueError(f"exit-interval must be at least 1, got {self.exit_interval}")
        if self.save_steps is not None and any(s < 0 for s in self.save_steps):
            raise ValueError(f"save steps must be >= 0, got {sorted(self.save_steps)}")
        if self.lr_decay_iters is not None and self.lr_decay_iters < 0:
            raise ValueError(f"lr-decay-iters must be >= 0, got {self.lr_decay_iters}")
        numbers = {
            "lr": self.lr,
            "min-lr": self.min_lr,
            "warmup": self.warmup,
            "weight-decay": self.weight_decay,
            "clip-grad": self.grad_clip,
            "eps": self.eps,
            "betas": self.betas[0],
            "betas ": self.betas[1],
            "peak-tflops": self.peak_tflops,
        }
        bad = [k.strip() for k, v in numbers.items() if v is not None and not math.isfinite(v)]
        if bad:
            raise ValueError(f"{', '.join(bad)} must be a finite number")
        if self.grad_clip < 0:
            raise ValueError(f"clip-grad must be >= 0 (0: no clipping), got {self.grad_clip}")
        if self.weight_decay < 0:
            raise ValueError(f"weight-decay must be >= 0, got {self.weight_decay}")
        if self.checkpoint_factor < 0:
            raise ValueError(
                f"checkpoint-factor must be >= 0 (0: only the extra save iters), got "
                f"{self.checkpoint_factor}"
            )
        if self.peak_tflops is not None and self.peak_tflops <= 0:
            raise ValueError(f"peak-tflops must be positive, got {self.peak_tflops}")
        if self.lr < 0 or (self.min_lr is not None and self.min_lr < 0):
            raise ValueError(f"learning rates must be >= 0 (lr {self.lr}, min-lr {self.min_lr})")
        if self.min_lr is not None and self.min_lr > self.lr:
            raise ValueError(
                f"min-lr {self.min_lr} is above lr {self.lr}; pass a min-lr of at most the lr"
            )
        self.betas = tuple(self.betas)
        self.extra_save_iters = tuple(self.extra_save_iters)

    def check_new_schedule(self) -> None:
        """Refuses a warmup a new run's schedule cannot follow: GPT-NeoX v1.0 caps the warmup's
        progress at lr-decay-iters minus the warmup, so past half the lr would never reach its
        peak (at 1, it would stay 0 throughout)."""
        if self.warmup > 0.5:
            raise self._warmup_error()

    def _warmup_error(self) -> ValueError:
        return ValueError(
            f"warmup must be a fraction of lr-decay-iters in [0, 0.5], got {self.warmup} "
            f"(Pythia: 0.01)"
        )

    @property
    def min_lr_value(self) -> float:
        return 0.1 * self.lr if self.min_lr is None else self.min_lr

    @property
    def decay_iters(self) -> int:
        return self.train_iters if self.lr_decay_iters is None else self.lr_decay_iters

    def grad_accum_steps(self, world_size: int) -> int:
        per_pass = self.micro_batch * world_size
        if self.global_batch % per_pass:
            per_rank, rem = divmod(self.global_batch, world_size)
            fits = [m for m in range(1, min(per_rank, self.micro_batch) + 1) if per_rank % m == 0]
            hint = (
                f"pass a micro batch that divides {per_rank}, such as {fits[-1]}"
                if not rem and fits
                else f"pass a global batch that is a multiple of {per_pass}"
            )
            raise ValueError(
                f"global batch {self.global_batch} is not a multiple of micro batch "
                f"{self.micro_batch} × {world_size} data-parallel ranks; {hint}"
            )
        return self.global_batch // per_pass

    def checkpoint_steps(self) -> list[int]:
        if self.save_steps is not None:
            # Steps past train_iters wait for a run resumed with more; the last step is always
            # saved (the model trained is the run's product, and a requeue sees it is done).
            return sorted(
                {s for s in self.save_steps if s <= self.train_iters} | {self.train_iters}
            )
        return pythia_checkpoint_steps(
            self.train_iters, self.checkpoint_factor, self.extra_save_iters
        )

    def tokens_per_step(self) -> int:
        return self.global_batch * self.seq_length
