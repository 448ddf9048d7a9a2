"""GPT-NeoX ``.yml`` run configs (Pythia's key names) → our model and training settings.

GPT-NeoX treats ``-`` and ``_`` in keys alike; so do we. Keys outside the ones below (parallelism
layout, fusion switches, tokenizer paths...) do not change what is trained here and are ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["read_neox_config", "SUPPORTED_KEYS"]

# NeoX key → our setting (the CLI option's dest).
_DIRECT = {
    "num_layers": "num_layers",
    "hidden_size": "hidden_size",
    "num_attention_heads": "num_attention_heads",
    "seq_length": "seq_length",
    "max_position_embeddings": "max_seq_len",
    "rotary_pct": "rotary_pct",
    "rotary_emb_base": "rotary_emb_base",
    "gpt_j_residual": "parallel_residual",
    "layernorm_epsilon": "layernorm_eps",
    "init_method": "init_method",
    "output_layer_init_method": "output_layer_init_method",
    "init_method_std": "init_method_std",
    "train_batch_size": "global_batch",
    "train_micro_batch_size_per_gpu": "micro_batch",
    "train_iters": "train_iters",
    "lr_decay_iters": "lr_decay_iters",
    "warmup": "warmup",
    "min_lr": "min_lr",
    "weight_decay": "weight_decay",
    "gradient_clipping": "clip_grad",
    "seed": "seed",
    "checkpoint_factor": "checkpoint_factor",
    "extra_save_iters": "extra_save_iters",
    "save": "save",
    "load": "resume",
    "log_interval": "log_interval",
    "checkpoint_activations": "activation_checkpointing",
    "padded_vocab_size": "vocab_size",
}
SUPPORTED_KEYS = sorted(
    [*_DIRECT, "optimizer", "fp16", "bf16", "precision", "lr_decay_style", "activation"]
    + ["gradient_accumulation_steps", "gas", "train_data_paths", "data_path"]
)


def _norm(key: str) -> str:
    return key.replace("-", "_")


def read_neox_config(path: str | os.PathLike, world_size: int = 1) -> dict:
    """Settings from one GPT-NeoX yml file, keyed by pythia-train's option names."""
    import yaml

    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{p}: config file not found") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{p}: expected a mapping of GPT-NeoX keys")
    conf = {_norm(k): v for k, v in raw.items()}
    out: dict = {}
    for key, dest in _DIRECT.items():
        if key in conf and conf[key] is not None:
            out[dest] = conf[key]
    opt = conf.get("optimizer")
    if isinstance(opt, dict):
        kind = str(opt.get("type", "adam")).lower()
        if kind not in ("adam", "adamw"):
            raise ValueError(f"{p}: optimizer type {opt.get('type')!r} is not supported (Adam)")
        params = opt.get("params") or {}
        for k in ("lr", "betas", "eps"):
            if k in params:
                out[k] = tuple(params[k]) if k == "betas" else params[k]
    style = conf.get("lr_decay_style", "cosine")
    if style != "cosine":
        raise ValueError(f"{p}: lr_decay_style {style!r} is not supported (cosine)")
    fp16 = conf.get("fp16")
    bf16 = conf.get("bf16")
    if isinstance(bf16, dict) and bf16.get("enabled", False) or conf.get("precision") == "bfloat16":
        out["precision"] = "bf16"
    elif isinstance(fp16, dict) and fp16.get("enabled", fp16.get("fp16", False)):
        out["precision"] = "fp16"
        if "initial_scale_power" in fp16:
            out["initial_scale_power"] = int(fp16["initial_scale_power"])
        if "loss_scale_window" in fp16:
            out["loss_scale_window"] = int(fp16["loss_scale_window"])
    if "activation" in conf:
        act = conf["activation"]
        if act not in ("gelu",):
            raise ValueError(f"{p}: activation {act!r} is not supported (gelu)")
    gas = conf.get("gradient_accumulation_steps", conf.get("gas"))
    if "global_batch" not in out and gas is not None and "micro_batch" in out:
        out["global_batch"] = int(out["micro_batch"]) * int(gas) * world_size
    paths = conf.get("train_data_paths") or (
        [conf["data_path"]] if conf.get("data_path") else None
    )
    if paths:
        if len(paths) != 1:
            raise ValueError(f"{p}: {len(paths)} train data paths; blending is not supported")
        out["data"] = paths[0]
    if "extra_save_iters" in out:
        out["extra_save_iters"] = tuple(int(s) for s in out["extra_save_iters"])
    return out
