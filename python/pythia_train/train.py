"""The training loop: Pythia's recipe over rows in exact GPT-NeoX order."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from pythia_data.errors import PythiaDataError, prepare_output_folder
from pythia_data.progress import progress_bar
from pythia_train.checkpoint import (
    NO_SAVE,
    claim_log,
    has_checkpoint,
    load_checkpoint,
    log_owner,
    log_owner_file,
    point_latest,
    resolve_checkpoint,
    run_id,
    save_checkpoint,
)
from pythia_train.configs import ModelConfig, TrainConfig
from pythia_train.data import RowSource, batch_digest, micro_batch
from pythia_train.distributed import (
    all_or_none,
    all_reduce_mean,
    init_distributed,
    no_grad_sync,
    wrap_model,
)
from pythia_train.hf import CheckpointError
from pythia_train.model import GPTNeoX, build_model
from pythia_train.optim import LRSchedule, build_optimizer

__all__ = ["train", "peak_flops"]

_AMP = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def peak_flops(device: torch.device, precision: str) -> float | None:
    """Dense bf16/fp16 tensor-core peak of known GPUs (per device), for the MFU estimate."""
    if device.type != "cuda" or precision == "fp32":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in (("H200", 989.5), ("H100", 989.5), ("A100", 312.0), ("L40S", 362.0)):
        if key in name:
            return tflops * 1e12
    return None


def _optimizer_settings(optimizer: torch.optim.Optimizer) -> dict:
    """AdamW's settings in effect (the first group is the decayed one)."""
    group = optimizer.param_groups[0]
    return {
        "weight_decay": float(group["weight_decay"]),
        "betas": tuple(float(b) for b in group["betas"]),
        "eps": float(group["eps"]),
    }


def _checkpoint_context(resume, model_cfg: ModelConfig, env) -> ModelConfig:
    """The model config with the checkpoint's context (config.json's max_position_embeddings),
    which only sizes the rotary table: a resume keeps it, as it keeps the weights."""
    from pythia_train.checkpoint import resolve_checkpoint
    from pythia_train.hf import config_from_hf

    try:
        f = resolve_checkpoint(resume) / "config.json"
        saved = config_from_hf(json.loads(f.read_text(encoding="utf-8")), str(f))
    except (ValueError, OSError):
        return model_cfg  # load_checkpoint reports what is wrong with it
    if saved.max_seq_len == model_cfg.max_seq_len:
        return model_cfg
    if env.is_main:
        print(
            f"pythia-train: note: resuming with the checkpoint's context: "
            f"max-position-embeddings {saved.max_seq_len} (asked {model_cfg.max_seq_len})",
            file=sys.stderr,
        )
    return dataclasses.replace(model_cfg, max_seq_len=saved.max_seq_len)


def _note_later_checkpoints(save: Path, start: int, save_steps: list[int]) -> None:
    """Resuming from an earlier step leaves the abandoned continuation's checkpoints: say which
    this run replaces and which stay."""
    later = sorted(
        int(d.name[4:])
        for d in save.glob("step*")
        if d.name[4:].isdigit() and int(d.name[4:]) > start
    )
    if not later:
        return

    def names(steps: list[int]) -> str:
        return ", ".join(f"step{n}" for n in steps[:5]) + (", ..." if len(steps) > 5 else "")

    stay = [n for n in later if n not in set(save_steps)]
    fate = (
        f"this run replaces them at its save steps, except {names(stay)}, which "
        f"{'stays' if len(stay) == 1 else 'stay'} from the other run (remove "
        f"{'it' if len(stay) == 1 else 'them'}, or save into a new directory, to keep one "
        f"trajectory)"
        if stay
        else "this run replaces them as it reaches their steps"
    )
    print(
        f"pythia-train: note: {save} holds checkpoints past step {start} from a run that went "
        f"further ({names(later)}); {fate}",
        file=sys.stderr,
    )


def _effective_config(cfg: TrainConfig, schedule: LRSchedule, saved: dict) -> TrainConfig:
    """``cfg`` with the schedule and optimizer settings a resumed run trains with."""
    decay = schedule.decay_iters
    return dataclasses.replace(
        cfg,
        lr=schedule.lr,
        min_lr=schedule.min_lr,
        lr_decay_iters=decay,
        warmup=schedule.warmup_iters / decay if decay > 0 else cfg.warmup,
        weight_decay=saved["weight_decay"],
        betas=saved["betas"],
        eps=saved["eps"],
    )


def _check_data(rows: RowSource, train_cfg: TrainConfig, model_cfg: ModelConfig) -> None:
    if rows.seq_length != train_cfg.seq_length:
        raise ValueError(
            f"the data has rows of seq_length {rows.seq_length}, the run asks for "
            f"{train_cfg.seq_length}"
        )
    if train_cfg.seq_length > model_cfg.max_seq_len:
        raise ValueError(
            f"seq_length {train_cfg.seq_length} exceeds the model's context "
            f"{model_cfg.max_seq_len} (max-position-embeddings); pass a --seq-length of at most "
            f"{model_cfg.max_seq_len}, or --max-position-embeddings {train_cfg.seq_length}"
        )
    need = train_cfg.train_iters * train_cfg.global_batch
    if len(rows) < need:
        raise ValueError(
            f"{train_cfg.train_iters} steps of {train_cfg.global_batch} rows need {need} rows; "
            f"the data has {len(rows)}"
        )


def _data_prefix(rows: RowSource) -> str | None:
    prefix = getattr(rows, "prefix", None)
    return None if prefix is None else str(Path(prefix).resolve())


def _check_fresh_outputs(save, log_path) -> None:
    """A new run must not mix its checkpoints or metrics with another run's."""
    # Only the main rank writes the log, and only it may have reset it (a requeue).
    main = os.environ.get("RANK", "0") == "0"
    if save is not None and Path(save).is_dir():
        # A crashed first save leaves only a .stepN.partial (which the next save replaces) or a
        # .latest.tmp-PID; an empty --log-file may sit in the directory too. The other ranks
        # leave the log to the main one: they may look before it has cut a requeue's log.
        log = Path(log_path).resolve() if log_path is not None else None
        entries = [
            e.name
            for e in Path(save).iterdir()
            if not (e.name.startswith(".step") and e.name.endswith(".partial"))
            and not (e.name.startswith(".") and ".tmp-" in e.name)  # an atomic write's temp
            and not (e.name.startswith(".") and e.name.endswith(".owner"))  # a log's owner
            and not (e.resolve() == log and e.is_file() and (not main or not e.stat().st_size))
        ]
        if entries:
            # --resume only where there is a run to continue: in a folder of other files it
            # starts the run (no checkpoint yet), which this refused again with the same advice.
            how = (
                f"pass --resume {save} to continue that run, or another --save directory"
                if has_checkpoint(save)
                else "it holds no checkpoint to resume: pass an empty or new --save directory"
            )
            raise ValueError(
                f"{save}: the --save directory is not empty (it holds {sorted(entries)[0]!r}); "
                f"{how}"
            )
    if main and log_path is not None and Path(log_path).is_file() and Path(log_path).stat().st_size:
        if not_a_log(log_path) is not None:
            # Not metrics at all (a config named by mistake): --resume would not continue it.
            raise ValueError(
                f"{log_path}: the --log-file is not empty and holds no pythia-train metrics; "
                f"pass a new or empty --log-file"
            )
        raise ValueError(
            f"{log_path}: the --log-file already holds another run's metrics; pass --resume to "
            f"continue that run, or another --log-file"
        )


def not_a_log(log_path) -> int | None:
    """The first line of ``log_path`` that is no step's JSON record, as pythia-train writes
    them (1-based), or None for a log (a last line cut short by a kill included)."""
    try:
        lines = Path(log_path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        return 1  # the records are ASCII
    start = '{"step": '
    for n, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            ok = isinstance(record, dict) and "step" in record
        except ValueError:
            cut = n == len(lines) and (line.startswith(start) or start.startswith(line))
            ok = cut or not line.strip()
        if not ok:
            return n
    return None


def check_log_writable(log_path) -> None:
    """Refuse a ``--log-file`` that is there but cannot be read and appended to (made
    read-only): a resume rewrote it through a temporary and a rename, which the folder allows,
    and so silently replaced a file its owner had made read-only; a new run failed on opening it
    with a bare "[Errno 13] Permission denied"."""
    p = Path(log_path)
    if not p.is_file():
        return
    try:
        with open(p, "rb+"):
            pass
    except OSError as e:
        raise ValueError(
            f"--log-file: {log_path}: {e.strerror} (the run appends its metrics to it): make "
            "it writable, or pass another --log-file"
        ) from None


def truncate_log(log_path, step: int) -> None:
    """Keep the records of steps <= step (a resumed run logs the later ones again)."""
    p = Path(log_path).resolve()  # a linked log is rewritten where it lives, link kept
    if not p.is_file():
        return
    check_log_writable(p)
    kept = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
            keep = int(record["step"]) <= step
        except (ValueError, KeyError, TypeError):
            keep = False  # a line cut short by the interruption
        if keep:
            kept.append(line + "\n")
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, p)


def train(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    rows: RowSource,
    save: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    init_from: str | os.PathLike | None = None,
    init_overrides: dict | None = None,
    log_path: str | os.PathLike | None = None,
    device: str | None = None,
    progress: bool = True,
    tokenizer: tuple[str | os.PathLike | bytes, str] | None = None,
) -> list[dict]:
    """Train (or continue) a run; returns the metric records (on every rank).

    Run it as a plain process or under torchrun; ranks split each global batch as GPT-NeoX does.

    A new run (no ``resume``) refuses a ``save`` directory that is not empty and a ``log_path``
    that holds records; a resumed run drops the log's records past its resume step, and
    refuses a log that another run writes (``.LOG.owner`` beside it names that run's save
    directory). A resumed run keeps the checkpoint's learning-rate schedule and AdamW
    settings (printing a note if this one asks for others), and continues only on the rows
    the checkpoint's run trained on.

    ``tokenizer`` (a ``tokenizer.json``, its path or its bytes, and its end-of-document token)
    goes into every checkpoint beside the weights, for transformers' AutoTokenizer.

    ``init_from`` (a Hugging Face checkpoint directory) gives the weights and the shape;
    ``init_overrides`` the ModelConfig fields that replace its config.json's and keep the
    weights (``gelu_approximate``, ``max_seq_len``: ``pythia_train.hf.load_hf``'s overrides).

    Like a training script, it seeds torch's global generator (``torch.manual_seed(seed)``),
    and a resumed run restores the checkpoint's Python, numpy and torch generator states: a
    notebook's later random draws follow from them. The trained model is in ``save``'s
    checkpoints (``load_hf(pythia_train.checkpoint.resolve_checkpoint(save))``); without
    ``save`` only the records remain.
    """
    # Checked first: a model name, a dict or a numpy array failed later with an AttributeError
    # ('str' object has no attribute 'vocab_size', 'numpy.ndarray' ... 'seq_length').
    for value, kind, hint in (
        (model_cfg, ModelConfig, "such as pythia_train.model_config('pythia-14m')"),
        (train_cfg, TrainConfig, "pythia_train.TrainConfig(...)"),
        (rows, RowSource, "such as pythia_train.ArrayRows(array) for rows in memory"),
    ):
        if not isinstance(value, kind):
            raise TypeError(f"train() takes a {kind.__name__}, {hint}; got {type(value).__name__}")
    env = init_distributed(device)
    # Under torchrun rank 0 checks (and claims) the outputs alone: the ranks meet after it,
    # so that its refusal stops them all (the others waited to join the group without it).
    with all_or_none(env, "checking the run's --save and --log-file"):
        if log_path is not None and os.environ.get("RANK", "0") == "0":
            try:
                prepare_output_folder(log_path)
            except (PythiaDataError, OSError) as e:
                # Checked first: creating it later gave a bare "[Errno 17] File exists".
                raise ValueError(f"--log-file: {e}") from None
            if Path(log_path).exists() and not Path(log_path).is_file():
                # A device or a pipe (/dev/full): the run wrote its hidden .NAME.owner beside
                # it (into /dev), then failed on a bare "[Errno 28] No space left on device".
                raise ValueError(
                    f"--log-file: {log_path} is not a regular file (a device or a pipe); pass "
                    f"a file's path: the run appends its records to it and a resume cuts it back"
                )
            check_log_writable(log_path)
        if save is not None:
            # Checked now, made with the first checkpoint: below a file, that failed after the
            # steps before it, with a bare "[Errno 20] Not a directory".
            blocking = Path(save)
            while not blocking.exists() and blocking != blocking.parent:
                blocking = blocking.parent
            if not blocking.is_dir():
                raise ValueError(
                    f"--save: cannot make the folder {save}: {blocking} is a file, not a folder"
                )
            if os.environ.get("RANK", "0") == "0":
                # Checked now too: a folder that refuses files failed at the first checkpoint (after
                # the steps before it), naming the hidden folder that checkpoint is written in.
                try:
                    # Named as a temporary, which other ranks checking the folder pass over.
                    fd, probe = tempfile.mkstemp(prefix=".save-probe.tmp-", dir=blocking)
                except OSError as e:
                    raise ValueError(
                        f"--save: cannot write checkpoints to {save}: {blocking}: {e.strerror}"
                    ) from None
                os.close(fd)
                os.unlink(probe)
        if tokenizer is not None:
            from pythia_train.hf import token_id

            # Checked now: its id is config.json's eos_token_id, written at the first checkpoint.
            if token_id(*tokenizer) is None:
                raise ValueError(
                    f"tokenizer: its end-of-document token {tokenizer[1]!r} is not one of its "
                    f"tokens; pass the token the tokenizer appends to each document"
                )
        if resume is not None and log_path is not None:
            owner = log_owner(log_path)
            if owner is not None and owner != run_id(save):
                whose = "a run without --save" if owner == NO_SAVE else f"the run saved in {owner}"
                raise ValueError(
                    f"{log_path}: this --log-file is the log of {whose}; pass that run's --save, "
                    f"or another --log-file (if that run's directory moved, delete "
                    f"{log_owner_file(log_path)})"
                )
        if resume is not None and log_path is not None and os.environ.get("RANK", "0") == "0":
            bad = not_a_log(log_path) if Path(log_path).is_file() else None
            if bad is not None:
                # Resuming cuts the log back to the checkpoint's step, keeping only records:
                # a file named by mistake (a config, a script) was emptied without a word.
                raise ValueError(
                    f"{log_path}: not a pythia-train --log-file (line {bad} is no step's JSON "
                    f"record), which resuming would cut back to its records; pass the run's "
                    f"log or another --log-file"
                )
        if resume is None:
            train_cfg.check_new_schedule()
            _check_fresh_outputs(save, log_path)
            if log_path is not None and os.environ.get("RANK", "0") == "0":
                try:
                    claim_log(log_path, save)  # a requeue may reset this log, and only this run's
                except OSError as e:
                    raise ValueError(f"--log-file: {e}") from None
    accum = train_cfg.grad_accum_steps(env.world_size)
    torch.manual_seed(train_cfg.seed)

    if resume is not None and init_from is None:
        model_cfg = _checkpoint_context(resume, model_cfg, env)
    if init_from is not None:
        from pythia_train.hf import load_hf

        # The checkpoint's config.json decides the shape (model_cfg is not used).
        model: GPTNeoX = load_hf(
            init_from, device=env.device, dtype=torch.float32, overrides=init_overrides
        )
        model_cfg = model.cfg
    else:
        model = build_model(model_cfg, seed=train_cfg.seed, device=env.device)
    _check_data(rows, train_cfg, model_cfg)
    model.activation_checkpointing = train_cfg.activation_checkpointing
    amp_dtype = _AMP[train_cfg.precision]
    if train_cfg.compile:
        # In place, so parameter names (and checkpoints) stay unprefixed. Under FSDP each layer
        # is compiled on its own, so the sharding hooks stay outside the graphs.
        if env.distributed and train_cfg.parallel == "fsdp":
            for layer in model.gpt_neox.layers:
                layer.compile()
        else:
            model.compile()
    model = wrap_model(model, env, train_cfg.parallel, amp_dtype)
    model.train()
    optimizer = build_optimizer(model, train_cfg)
    schedule = LRSchedule(optimizer, train_cfg)
    scaler = None
    if train_cfg.precision == "fp16":
        scaler = torch.amp.GradScaler(
            env.device.type,
            init_scale=2.0**train_cfg.initial_scale_power,
            growth_interval=train_cfg.loss_scale_window,
        )

    start = 0
    data_prefix = _data_prefix(rows)
    if resume is not None:
        asked = {**schedule.settings(), **_optimizer_settings(optimizer)}
        # A rank failing alone (its own RNG state unreadable) left the others at their next
        # collective.
        with all_or_none(env, f"loading the checkpoint {resume}"):
            start = load_checkpoint(
                resume,
                model,
                optimizer,
                schedule,
                scaler,
                env,
                train_cfg,
                model_cfg,
                data_prefix,
                data_digest=lambda step: batch_digest(rows, step, train_cfg.global_batch),
            )
            if start > train_cfg.train_iters:
                raise ValueError(
                    f"{resume}: the checkpoint is at step {start}, past this run's train-iters "
                    f"{train_cfg.train_iters}; pass --train-iters {start} or more"
                )
        saved = {**schedule.settings(), **_optimizer_settings(optimizer)}
        if saved != asked and env.is_main:
            changed = ", ".join(
                f"{k} {saved[k]:g} (asked {asked[k]:g})"
                if isinstance(saved[k], (int, float))
                else f"{k} {saved[k]} (asked {asked[k]})"
                for k in saved
                if saved[k] != asked[k]
            )
            print(
                f"pythia-train: note: resuming with the checkpoint's learning-rate schedule "
                f"and optimizer settings: {changed}",
                file=sys.stderr,
            )
        # Later checkpoints record what is trained, not what was asked.
        train_cfg = _effective_config(train_cfg, schedule, saved)
        # Rank 0 alone points latest at the checkpoint and cuts the log: the ranks meet after.
        with all_or_none(env, f"preparing --save and --log-file to continue from step {start}"):
            if save is not None and env.is_main:
                _note_later_checkpoints(Path(save), start, train_cfg.checkpoint_steps())
                # A rewind: until its first save, a requeue (--resume SAVE) must come back here,
                # not to the abandoned run's later checkpoint that 'latest' still names.
                ckpt = resolve_checkpoint(resume)
                if ckpt.parent.resolve() == Path(save).resolve():
                    try:
                        current = resolve_checkpoint(save).resolve()
                    except CheckpointError:
                        current = None  # 'latest' names a step that is gone
                    if current != ckpt.resolve():
                        point_latest(save, ckpt)
            if log_path is not None and env.is_main:
                claim_log(log_path, save)
                truncate_log(log_path, start)
    save_steps = set(train_cfg.checkpoint_steps()) if save is not None else set()

    def checkpoint(step: int) -> None:
        save_checkpoint(
            save,
            step,
            model,
            model_cfg,
            train_cfg,
            optimizer,
            schedule,
            scaler,
            env,
            data_prefix=data_prefix,
            tokenizer=tokenizer,
            # The last batch trained and the next: a resume must find the same rows there. Read
            # by rank 0 where the ranks meet (a failure there stopped rank 0 alone).
            data_digests=lambda: {
                s: batch_digest(rows, s, train_cfg.global_batch) for s in (step - 1, step) if s >= 0
            },
        )

    if start == 0 and 0 in save_steps:
        # The first step's rows are read before its checkpoint: ids outside the vocabulary (a
        # --vocab-size too small) failed step 1 after step 0 was saved, and that checkpoint
        # then refused the corrected command's --save as not empty.
        with all_or_none(env, "reading the first step's rows"):
            for m in range(accum):
                micro_batch(
                    rows,
                    0,
                    m,
                    env.rank,
                    env.world_size,
                    train_cfg.micro_batch,
                    train_cfg.global_batch,
                    vocab_size=model_cfg.vocab_size,
                )
        checkpoint(0)

    log_file = None
    with all_or_none(env, f"opening the --log-file {log_path}"):
        if log_path is not None and env.is_main:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            log_file = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed below
    peak = (
        train_cfg.peak_tflops * 1e12
        if train_cfg.peak_tflops
        else peak_flops(env.device, train_cfg.precision)
    )
    flops_per_step = model_cfg.flops_per_token(train_cfg.seq_length) * train_cfg.tokens_per_step()
    bar = progress_bar(
        total=train_cfg.train_iters,
        initial=start,
        disable=not (progress and env.is_main),
        unit="step",
        dynamic_ncols=True,
    )
    records: list[dict] = []
    autocast = (
        torch.autocast(env.device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    )
    try:
        for step in range(start, train_cfg.train_iters):
            t0 = time.perf_counter()
            lr = schedule.current()
            loss_sum = torch.zeros((), device=env.device)
            for m in range(accum):
                inputs, targets = micro_batch(
                    rows,
                    step,
                    m,
                    env.rank,
                    env.world_size,
                    train_cfg.micro_batch,
                    train_cfg.global_batch,
                    env.device,
                    vocab_size=model_cfg.vocab_size,
                )
                with no_grad_sync(model, skip=m < accum - 1):
                    with autocast:
                        loss = model(inputs, targets=targets) / accum
                    (scaler.scale(loss) if scaler is not None else loss).backward()
                loss_sum += loss.detach()
            if scaler is not None:
                scaler.unscale_(optimizer)
            # As DeepSpeed's gradient_clipping, 0 turns clipping off (the norm is still logged).
            max_norm = train_cfg.grad_clip if train_cfg.grad_clip > 0 else float("inf")
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            if hasattr(grad_norm, "full_tensor"):
                grad_norm = grad_norm.full_tensor()
            overflow = False
            if scaler is not None:
                scale = scaler.get_scale()
                scaler.step(optimizer)
                scaler.update()
                overflow = scaler.get_scale() < scale
            else:
                scale = None
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if not overflow:
                # As DeepSpeed under GPT-NeoX: a step skipped for an fp16 overflow does not
                # advance the learning-rate schedule either.
                schedule.step()
            loss_value = float(all_reduce_mean(loss_sum, env))
            dt = time.perf_counter() - t0
            iteration = step + 1
            tokens_per_s = train_cfg.tokens_per_step() / dt
            record = {
                "step": iteration,
                "loss": loss_value,
                "lr": lr,
                "grad_norm": float(grad_norm),
                "tokens_per_s": tokens_per_s,
                "mfu": flops_per_step / dt / (env.world_size * peak) if peak else None,
                "loss_scale": scale,
                "skipped": overflow,
                "step_time_s": dt,
            }
            records.append(record)
            if iteration % train_cfg.log_interval == 0 or iteration == train_cfg.train_iters:
                if log_file is not None:
                    log_file.write(json.dumps(record) + "\n")
                    log_file.flush()
                mfu = f" mfu {record['mfu']:.1%}" if record["mfu"] is not None else ""
                bar.set_postfix_str(
                    f"loss {loss_value:.4f} lr {lr:.2e} gnorm {record['grad_norm']:.3f} "
                    f"{tokens_per_s:,.0f} tok/s{mfu}",
                    refresh=False,
                )
            bar.update(1)
            stop = (
                train_cfg.exit_interval is not None
                and iteration % train_cfg.exit_interval == 0
                and iteration < train_cfg.train_iters
            )
            if iteration in save_steps or (stop and save is not None):
                checkpoint(iteration)
            if stop:
                break
    finally:
        bar.close()
        if log_file is not None:
            log_file.close()
    return records
