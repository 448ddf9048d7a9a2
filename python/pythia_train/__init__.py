"""pythia-train: GPT-NeoX models with Hugging Face-compatible checkpoints and a thin trainer.

The trainer itself is ``pythia_train.train.train``. Names are imported lazily so that
``import pythia_train`` (and ``pythia-train --help``) does not pay for importing torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ModelConfig": "pythia_train.configs",
    "TrainConfig": "pythia_train.configs",
    "PYTHIA_MODELS": "pythia_train.configs",
    "model_config": "pythia_train.configs",
    "pythia_checkpoint_steps": "pythia_train.configs",
    "GPTNeoX": "pythia_train.model",
    "KVCache": "pythia_train.model",
    "build_model": "pythia_train.model",
    "init_pythia_weights": "pythia_train.model",
    "load_hf": "pythia_train.hf",
    "save_hf": "pythia_train.hf",
    "CheckpointError": "pythia_train.hf",
    "RowSource": "pythia_train.data",
    "ArrayRows": "pythia_train.data",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pythia_train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
