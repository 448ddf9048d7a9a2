"""Training checkpoints: a HF-format model plus everything needed to resume exactly.

``SAVE/step{N}/`` holds ``config.json`` + ``model.safetensors`` (loadable by
``transformers.GPTNeoXForCausalLM.from_pretrained``), ``trainer_state.pt`` (optimizer,
lr schedule, loss scaler, data position, configs) and ``rng/rank{r}.pt``. It is written into
``SAVE/.step{N}.partial`` and renamed into place when complete, then ``SAVE/latest`` names it.
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from pythia_train.configs import ModelConfig, TrainConfig
from pythia_train.distributed import DistEnv, barrier
from pythia_train.hf import CheckpointError, load_hf_state_dict, replace_dir, write_hf_files

__all__ = ["save_checkpoint", "load_checkpoint", "resolve_checkpoint", "step_dir"]

TRAINER_STATE = "trainer_state.pt"
LATEST = "latest"


def step_dir(save: str | os.PathLike, step: int) -> Path:
    return Path(save) / f"step{step}"


def _rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save_checkpoint(
    save: str | os.PathLike,
    step: int,
    model: nn.Module,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    optimizer: torch.optim.Optimizer,
    schedule,
    scaler,
    env: DistEnv,
    extra: dict | None = None,
) -> Path:
    """Collective: every rank calls it; rank 0 writes the shared files."""
    full = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(model, options=full)
    optim_state = get_optimizer_state_dict(model, optimizer, options=full)
    root = Path(save)
    final = step_dir(root, step)
    tmp = root / f".step{step}.partial"
    if env.is_main:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "rng").mkdir(parents=True)
    barrier(env)
    try:
        torch.save(_rng_state(), tmp / "rng" / f"rank{env.rank}.pt")
        if env.is_main:
            write_hf_files(tmp, model_cfg, model_state)
            trainer_state = {
                "iteration": step,
                "optimizer": optim_state,
                "schedule": schedule.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "data": {
                    "consumed_rows": step * train_cfg.global_batch,
                    "global_batch": train_cfg.global_batch,
                    "seq_length": train_cfg.seq_length,
                },
                "world_size": env.world_size,
                "model_config": dataclasses.asdict(model_cfg),
                "train_config": dataclasses.asdict(train_cfg),
                "extra": extra or {},
            }
            torch.save(trainer_state, tmp / TRAINER_STATE)
        barrier(env)
        if env.is_main:
            replace_dir(tmp, final)
            _write_atomic_text(root / LATEST, final.name + "\n")
    except BaseException:
        if env.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    barrier(env)
    return final


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A step directory, or a save root whose ``latest`` file names one."""
    p = Path(path)
    if (p / TRAINER_STATE).is_file():
        return p
    if (p / LATEST).is_file():
        name = (p / LATEST).read_text(encoding="utf-8").strip()
        if (p / name / TRAINER_STATE).is_file():
            return p / name
        raise CheckpointError(f"{p / LATEST}: names {name!r}, which is not a complete checkpoint")
    raise CheckpointError(f"{p}: not a training checkpoint (no {TRAINER_STATE} and no {LATEST})")


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule,
    scaler,
    env: DistEnv,
    train_cfg: TrainConfig,
) -> int:
    """Restore everything in place; returns the iteration to continue from."""
    ckpt = resolve_checkpoint(path)
    try:
        state = torch.load(ckpt / TRAINER_STATE, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"{ckpt / TRAINER_STATE}: cannot read ({e})") from None
    data = state["data"]
    if data["global_batch"] != train_cfg.global_batch:
        raise CheckpointError(
            f"{ckpt}: trained with global batch {data['global_batch']}, "
            f"this run has {train_cfg.global_batch}; the data position would not match"
        )
    full = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, load_hf_state_dict(ckpt), options=full)
    set_optimizer_state_dict(model, optimizer, optim_state_dict=state["optimizer"], options=full)
    schedule.load_state_dict(state["schedule"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    rng = ckpt / "rng" / f"rank{env.rank}.pt"
    if rng.is_file():
        _set_rng_state(torch.load(rng, weights_only=False))
    return int(state["iteration"])
