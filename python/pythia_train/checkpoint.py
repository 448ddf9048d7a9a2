"""Training checkpoints: a HF-format model plus everything needed to resume exactly.

``SAVE/step{N}/`` holds ``config.json`` + ``model.safetensors`` (loadable by
``transformers.GPTNeoXForCausalLM.from_pretrained``), ``trainer_state.pt`` (optimizer,
lr schedule, loss scaler, data position, configs) and ``rng/rank{r}.pt``. It is written into
``SAVE/.step{N}.partial`` and renamed into place when complete, then ``SAVE/latest`` names it.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import random
import re
import shutil
import sys
from collections.abc import Callable
from contextlib import contextmanager
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

from pythia_data.errors import OutputError, output_error
from pythia_train.configs import ModelConfig, TrainConfig
from pythia_train.distributed import DistEnv, all_or_none
from pythia_train.hf import (
    CheckpointError,
    load_hf_state_dict,
    replace_dir,
    restore_dir,
    share_like_umask,
    token_id,
    write_hf_files,
    write_tokenizer_files,
)

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "resolve_checkpoint",
    "point_latest",
    "has_checkpoint",
    "claim_log",
    "log_owner",
    "run_id",
    "step_dir",
]

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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_tree(directory: Path) -> None:
    """Flush every file and directory under ``directory`` to the disk: a checkpoint that
    ``latest`` names must survive a node crash or power loss, not only a killed process."""
    for root, _dirs, files in os.walk(directory, topdown=False):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(root))


def _write_atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk left it behind for good
        raise
    _fsync_dir(path.parent)


class CheckpointWriteError(OutputError):
    """A checkpoint that could not be written (a full disk, a folder made read-only during the
    run), in one line: "SAVE: REASON (writing SAVE/stepN)". The run's last good checkpoint and
    ``latest`` are as they were, so ``--resume SAVE`` continues from it."""


def _no_space_left(folder: Path) -> bool:
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    # Root may write into the blocks reserved for it; other users may not.
    return (st.f_bfree if os.geteuid() == 0 else st.f_bavail) == 0


#: torch.save's words for a write that failed without the system's reason (a quota, say).
_WRITE_FAILURE = r"inline_container|unexpected pos|file write failed|PytorchStreamWriter"


@contextmanager
def _writing(root: Path, final: Path, tmp: Path):
    """Errors writing the checkpoint ``final`` through ``tmp`` named by the save folder, the
    reason and ``final``: they named files in the hidden ``tmp``, which is removed on the way out,
    or in torch.save's words only ("[enforce fail at inline_container.cc:672] . unexpected pos"
    for a full disk)."""
    try:
        yield
    except Exception as e:
        # safetensors' writer raises its own SafetensorError.
        if not isinstance(e, (OSError, RuntimeError)) and type(e).__name__ != "SafetensorError":
            raise
        if isinstance(e, OSError) and e.filename is not None:
            inside = [Path(e.filename), *Path(e.filename).parents]
            if root not in inside:
                raise  # an input's error (the tokenizer file to copy)
        text = str(e)
        # torch's and safetensors' words for a system error: "... strerror: Permission
        # denied", "I/O error: Permission denied (os error 13) at path ...".
        os_error = re.search(r"\(os error (\d+)\)", text)
        strerror = re.search(r"strerror: (.+)$", text, re.MULTILINE)
        if isinstance(e, OSError) and e.strerror:
            reason, code = e.strerror, e.errno
        elif os_error:
            code = int(os_error[1])
            reason = os.strerror(code)
        elif strerror:
            reason, code = strerror[1].strip(), None
        elif _no_space_left(root):
            reason, code = os.strerror(errno.ENOSPC), errno.ENOSPC
        elif isinstance(e, OSError) or re.search(_WRITE_FAILURE, text):
            reason, code = text.replace(str(tmp), str(final)).splitlines()[0], None
        else:
            # Not a write's failure (a CUDA assert reported late, memory): it keeps its own
            # words, which "(writing SAVE/stepN)" would hide.
            raise
        folder = root
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        raise CheckpointWriteError(code, f"{folder}: {reason} (writing {final})") from e


def has_checkpoint(save: str | os.PathLike) -> bool:
    """Whether a save directory holds anything to resume: a complete checkpoint, or a
    ``latest`` (even one naming a missing step, which resuming then reports)."""
    p = Path(save)
    if (p / LATEST).is_file():
        return True
    try:
        resolve_checkpoint(p)
    except CheckpointError:
        return False
    return True


def log_owner_file(log_path: str | os.PathLike) -> Path:
    """Beside a ``--log-file``: which run writes it (its save directory, or ``-`` for a run
    without one), so that a resume or requeue cuts that log only for its own run."""
    log = Path(log_path).resolve()
    return log.with_name(f".{log.name}.owner")


#: What ``log_owner`` says of a log written by a run without a save directory.
NO_SAVE = "-"


def log_owner(log_path: str | os.PathLike) -> str | None:
    """The save directory (resolved, as a string) of the run that writes the log, ``NO_SAVE``,
    or None when nothing is recorded."""
    try:
        return log_owner_file(log_path).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def run_id(save: str | os.PathLike | None) -> str:
    """How ``log_owner`` names the run saved in ``save``."""
    return NO_SAVE if save is None else str(Path(save).resolve())


def claim_log(log_path: str | os.PathLike, save: str | os.PathLike | None) -> None:
    owner = log_owner_file(log_path)
    try:
        owner.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic_text(owner, run_id(save) + "\n")
    except OSError as e:
        # The first file written beside the log: a folder that refuses it refuses the log,
        # which is what the user named, not this hidden file or its temporary.
        raise output_error(e, log_path, e.filename or owner) from e


def point_latest(save: str | os.PathLike, ckpt: Path) -> None:
    """Make ``SAVE/latest`` name ``ckpt`` (a step directory in SAVE)."""
    _write_atomic_text(Path(save) / LATEST, ckpt.name + "\n")


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
    data_prefix: str | None = None,
    data_digests: dict[int, str | None] | Callable[[], dict[int, str | None]] | None = None,
    tokenizer: tuple[str | os.PathLike | bytes, str] | None = None,
) -> Path:
    """Collective: every rank calls it; rank 0 writes the shared files.

    ``tokenizer`` (a ``tokenizer.json``, its path or its bytes, and its end-of-document token)
    is written beside the weights, so that transformers loads the tokenizer from the checkpoint
    too.

    ``data_prefix`` (the dataset's resolved prefix) and ``data_digests`` (step → digest of that
    step's rows, ``pythia_train.data.batch_digest``; or a function returning them, called on
    rank 0 only) are recorded so that a resume can check that it continues on the same rows.
    """
    full = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(model, options=full)
    # torch fills an optimizer without state (before the first step) by stepping it with zero
    # gradients at lr 0. That step counts: Adam's bias correction would lag a step behind for
    # the rest of the run. A fresh optimizer is saved, and kept, without state.
    fresh = not optimizer.state
    optim_state = get_optimizer_state_dict(model, optimizer, options=full)
    if fresh:
        optimizer.state.clear()
        optim_state["state"] = {}
    root = Path(save)
    final = step_dir(root, step)
    tmp = root / f".step{step}.partial"
    # The ranks meet where one of them (rank 0) worked alone: a failure there is every rank's
    # at once (all_or_none), where the others waited at their barrier for the process group's
    # timeout (NCCL, another node) or stopped on gloo's "Connection closed by peer".
    doing = f"writing the checkpoint {final}"
    with all_or_none(env, doing):
        if env.is_main:
            if callable(data_digests):
                data_digests = data_digests()  # reads the rows: it may fail too
            with _writing(root, final, tmp):
                root.mkdir(parents=True, exist_ok=True)
                # This run is the directory's only writer: a partial checkpoint here, of this
                # step or another, is what a killed launch (SIGKILL, a lost node) left, as large
                # as a checkpoint.
                for stale in root.glob(".step*.partial"):
                    shutil.rmtree(stale, ignore_errors=True)
                try:
                    (tmp / "rng").mkdir(parents=True)
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)  # made, but not its rng folder
                    raise
    try:
        with all_or_none(env, doing):
            with _writing(root, final, tmp):
                torch.save(_rng_state(), tmp / "rng" / f"rank{env.rank}.pt")
            if env.is_main:
                with _writing(root, final, tmp):
                    # config.json's bos/eos ids are what transformers' generate stops at: the
                    # tokenizer's end of document, which is 0 only in GPT-NeoX's tokenizer.
                    eod_id = token_id(*tokenizer) if tokenizer is not None else None
                    write_hf_files(
                        tmp, model_cfg, model_state, eod_id=0 if eod_id is None else eod_id
                    )
                    if tokenizer is not None:
                        write_tokenizer_files(tmp, *tokenizer)
                    trainer_state = {
                        "iteration": step,
                        "optimizer": optim_state,
                        "schedule": schedule.state_dict(),
                        "scaler": scaler.state_dict() if scaler is not None else None,
                        "data": {
                            "consumed_rows": step * train_cfg.global_batch,
                            "global_batch": train_cfg.global_batch,
                            "seq_length": train_cfg.seq_length,
                            "prefix": data_prefix,
                            "batch_sha256": dict(data_digests or {}),
                        },
                        "world_size": env.world_size,
                        "model_config": dataclasses.asdict(model_cfg),
                        "train_config": dataclasses.asdict(train_cfg),
                        "extra": extra or {},
                    }
                    torch.save(trainer_state, tmp / TRAINER_STATE)
        with all_or_none(env, doing):
            if env.is_main:
                with _writing(root, final, tmp):
                    share_like_umask(tmp)
                    _sync_tree(tmp)
                    replace_dir(tmp, final)
                    _fsync_dir(root)
                    # Failing here leaves the new step in place but 'latest' naming the one
                    # before, which a resume continues from, as from any earlier checkpoint.
                    _write_atomic_text(root / LATEST, final.name + "\n")
    except BaseException:
        if env.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A step directory, or a save root whose ``latest`` file names one (without ``latest``,
    as after a kill between a first checkpoint's rename and its ``latest``: the highest
    complete ``stepN``)."""
    p = Path(path)
    restore_dir(p)
    if (p / TRAINER_STATE).is_file():
        return p
    if (p / LATEST).is_file():
        name = (p / LATEST).read_text(encoding="utf-8").strip()
        restore_dir(p / name)
        if (p / name / TRAINER_STATE).is_file():
            return p / name
        raise CheckpointError(
            f"{p / LATEST}: names {name!r}, which is not a complete checkpoint; pass --resume "
            f"{p}/stepN for a complete one, or repair {LATEST}"
        )
    for parked in p.glob(".step*.old") if p.is_dir() else ():
        restore_dir(p / parked.name[1:-4])  # parked by a replace that a kill interrupted
    steps = sorted(
        (int(d.name[4:]), d)
        for d in (p.glob("step*") if p.is_dir() else ())
        if d.name[4:].isdigit() and (d / TRAINER_STATE).is_file()
    )
    if steps:
        return steps[-1][1]
    hint = ""
    if (p / "config.json").is_file():
        # A Hugging Face model folder (a released Pythia checkpoint): the error named the
        # files it lacks, not the option that starts a run from its weights.
        hint = (
            "; it is a model without pythia-train's training state: pass it as --init-from "
            "to train from its weights"
        )
    elif not p.exists():
        hint = "; no such file or directory"
    raise CheckpointError(
        f"{p}: not a training checkpoint (no {TRAINER_STATE} and no {LATEST}){hint}"
    )


# Fields of ModelConfig that change what the weights compute; the init_* ones and
# max_seq_len (config.json's context) do not, and may differ on resume.
_ARCH_FIELDS = (
    "num_layers",
    "hidden_size",
    "num_heads",
    "vocab_size",
    "rotary_pct",
    "rotary_base",
    "layernorm_eps",
    "parallel_residual",
    "gelu_approximate",
)

# How a run sets each of them: some only through a --config key, which no option names (a run
# started from a config silent on rotary-pct trained the base --model's 0.25, and is resumed
# with GPT-NeoX's 1.0 since the config's defaults follow GPT-NeoX).
_SET_BY = {
    "num_layers": "--num-layers",
    "hidden_size": "--hidden-size",
    "num_heads": "--num-attention-heads",
    "vocab_size": "--vocab-size",
    "gelu_approximate": "--gelu",
    "rotary_pct": "rotary-pct",
    "rotary_base": "rotary-emb-base",
    "layernorm_eps": "layernorm-epsilon",
    "parallel_residual": "gpt-j-residual",
}


def _how_to_set(field: str, value) -> str:
    name = _SET_BY[field]
    if name.startswith("--"):
        if field == "gelu_approximate":
            value = "tanh" if value == "tanh" else "exact"
        return f"{name} {value}"
    return f"{name}: {json.dumps(value)} in the --config file"


def read_trainer_state(ckpt: Path) -> dict:
    """``trainer_state.pt`` of a checkpoint, its structure checked (one-line errors)."""
    f = ckpt / TRAINER_STATE
    try:
        state = torch.load(f, map_location="cpu", weights_only=False)
    except Exception as e:
        msg = " ".join(str(e).split())[:200]
        raise CheckpointError(f"{f}: cannot read ({type(e).__name__}: {msg})") from None

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{f}: {what}; the checkpoint is damaged or not pythia-train's")

    if not isinstance(state, dict):
        raise bad(f"holds a {type(state).__name__}, not the trainer state")
    for key, kind in (("iteration", int), ("optimizer", dict), ("schedule", dict), ("data", dict)):
        if key not in state:
            raise bad(f"no {key!r} entry")
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            raise bad(f"{key!r} is a {type(state[key]).__name__}, not {kind.__name__}")
    if state["iteration"] < 0:
        raise bad(f"iteration {state['iteration']} is negative")
    data = state["data"]
    for key in ("global_batch", "seq_length"):
        if not isinstance(data.get(key), int) or isinstance(data.get(key), bool):
            raise bad(f"data {key!r} is missing or not an integer")
    if not isinstance(state["schedule"].get("iteration"), int):
        raise bad("schedule 'iteration' is missing or not an integer")
    for key in ("model_config", "train_config", "extra"):
        if state.get(key) is not None and not isinstance(state[key], dict):
            raise bad(f"{key!r} is a {type(state[key]).__name__}, not dict")
    if state.get("scaler") is not None and not isinstance(state["scaler"], dict):
        raise bad(f"'scaler' is a {type(state['scaler']).__name__}, not dict")
    return state


def _check_compatible(
    ckpt: Path,
    state: dict,
    train_cfg: TrainConfig,
    model_cfg: ModelConfig | None,
    data_prefix: str | None,
    data_digest: Callable[[int], str | None] | None = None,
) -> None:
    """Refuse a resume whose data order or model would not continue the checkpoint's run."""
    data = state["data"]
    saved_train = state.get("train_config") or {}
    checks = [
        ("global batch", data["global_batch"], train_cfg.global_batch, "--global-batch"),
        ("seq_length", data["seq_length"], train_cfg.seq_length, "--seq-length"),
    ]
    if "seed" in saved_train:
        checks.append(("seed", saved_train["seed"], train_cfg.seed, "--seed"))
    for what, saved, now, option in checks:
        if saved != now:
            raise CheckpointError(
                f"{ckpt}: trained with {what} {saved}, this run has {now}; the data order "
                f"would not continue the run (pass {option} {saved}, or start a new run)"
            )
    digests = data.get("batch_sha256")
    if digests and data_digest is not None:
        # The rows themselves: moved, copied or linked data continues the run; other rows,
        # another format or another index (gpt-neox data's depends on train-iters) do not.
        for step, saved in sorted(digests.items()):
            now = data_digest(int(step))
            if saved is not None and now != saved:
                what = (
                    f"this data has no rows for step {step}"
                    if now is None
                    else f"the rows of step {step} differ from those the run trained on"
                )
                raise CheckpointError(
                    f"{ckpt}: {what} (the run's data {data.get('prefix')}, this run's "
                    f"{data_prefix}); the data, its --data-format "
                    f"or its index changed (a gpt-neox index depends on --train-iters: keep "
                    f"the run's and stop early with --exit-interval), so the data order would "
                    f"not continue the run"
                )
    elif data.get("prefix") is not None and data_prefix is not None:
        if data["prefix"] != data_prefix:
            raise CheckpointError(
                f"{ckpt}: trained on data {data['prefix']}, this run has {data_prefix}; the "
                f"data order would not continue the run (pass --data {data['prefix']}, or "
                f"start a new run)"
            )
    saved_model = state.get("model_config")
    if model_cfg is not None and saved_model:
        diff = [
            f"{k} {saved_model[k]} (this run: {getattr(model_cfg, k)})"
            for k in _ARCH_FIELDS
            if k in saved_model and saved_model[k] != getattr(model_cfg, k)
        ]
        if diff:
            differ = [k for k in _ARCH_FIELDS if k in saved_model and k in _SET_BY]
            differ = [k for k in differ if saved_model[k] != getattr(model_cfg, k)]
            how = ", ".join(_how_to_set(k, saved_model[k]) for k in differ)
            raise CheckpointError(
                f"{ckpt}: the checkpoint's model has {', '.join(diff)}; resume with the "
                f"checkpoint's model shape (--model/--num-layers/.../--gelu as when it was "
                f"trained{'; here: ' + how if how else ''})"
            )


def _layout(world: int, micro_batch, parallel) -> str:
    procs = f"{world} process{'es' if world != 1 else ''}"
    strategy = f" under {parallel}" if world > 1 and parallel is not None else ""
    return f"{procs}{strategy} with micro batch {micro_batch}"


def _note_other_layout(ckpt: Path, state: dict, train_cfg: TrainConfig, env: DistEnv) -> None:
    """Resuming on another number of processes, micro batch or strategy is allowed (each step
    trains on the same rows), but the gradients are then summed in another order: say so, since
    a resume on the same layout is bit-identical to the uninterrupted run and this one is not."""
    saved_world = state.get("world_size")
    saved = state.get("train_config") or {}
    saved_micro, saved_parallel = saved.get("micro_batch"), saved.get("parallel")
    if not isinstance(saved_world, int) or not isinstance(saved_micro, int):
        return  # an older checkpoint: its layout is unknown
    distributed = saved_world > 1 and env.world_size > 1
    if (saved_world, saved_micro) == (env.world_size, train_cfg.micro_batch) and (
        not distributed or saved_parallel == train_cfg.parallel
    ):
        return
    now = _layout(env.world_size, train_cfg.micro_batch, train_cfg.parallel)
    print(
        f"pythia-train: note: resuming on {now}; "
        f"{ckpt} was trained on {_layout(saved_world, saved_micro, saved_parallel)}. Each step "
        f"trains on the same rows, but its gradients are summed in another order: the run "
        f"continues equal up to rounding, not bit for bit (resume on the checkpoint's layout "
        f"for that)",
        file=sys.stderr,
    )


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule,
    scaler,
    env: DistEnv,
    train_cfg: TrainConfig,
    model_cfg: ModelConfig | None = None,
    data_prefix: str | None = None,
    data_digest: Callable[[int], str | None] | None = None,
) -> int:
    """Restore everything in place; returns the iteration to continue from.

    Refuses (``CheckpointError``) a checkpoint whose global batch, seq_length, seed or model
    architecture differ from this run's, or whose recorded rows ``data_digest`` (step → digest,
    as ``pythia_train.data.batch_digest``) does not reproduce; checkpoints written before
    digests were recorded compare the data prefix instead. The learning-rate
    schedule (lr, min_lr, warmup, decay iterations) is the checkpoint's.
    """
    ckpt = resolve_checkpoint(path)
    state = read_trainer_state(ckpt)
    _check_compatible(ckpt, state, train_cfg, model_cfg, data_prefix, data_digest)
    full = StateDictOptions(full_state_dict=True)
    try:
        set_model_state_dict(model, load_hf_state_dict(ckpt), options=full)
    except (RuntimeError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{ckpt}: its weights do not fit this run's model ({first[:200]}); resume with the "
            f"checkpoint's model shape"
        ) from None
    try:
        set_optimizer_state_dict(
            model, optimizer, optim_state_dict=state["optimizer"], options=full
        )
        if not state["optimizer"].get("state"):
            optimizer.state.clear()  # saved before the first step: undo torch's filling step
        schedule.load_state_dict(state["schedule"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as e:
        msg = " ".join(str(e).split())[:200]
        raise CheckpointError(
            f"{ckpt / TRAINER_STATE}: cannot restore the optimizer state "
            f"({type(e).__name__}: {msg})"
        ) from None
    if env.is_main:
        _note_other_layout(ckpt, state, train_cfg, env)
    rng = ckpt / "rng" / f"rank{env.rank}.pt"
    if rng.is_file():
        try:
            _set_rng_state(torch.load(rng, weights_only=False))
        except Exception as e:
            msg = " ".join(str(e).split())[:200]
            raise CheckpointError(f"{rng}: cannot restore ({type(e).__name__}: {msg})") from None
    return state["iteration"]
