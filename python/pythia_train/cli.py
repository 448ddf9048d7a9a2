"""``pythia-train``: train a GPT-NeoX model on Pythia-ordered data, alone or under torchrun."""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
import threading
from pathlib import Path

import click
from click.core import ParameterSource

_FORMATS = ("preshuffled", "gpt-neox")


def _int_list(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(s) for s in text.replace(" ", "").split(",") if s)
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option(
    "--model", default="pythia-160m", help="Pythia size (pythia-14m … pythia-12b), the base shape."
)
@click.option(
    "--num-layers", type=int, help="Custom shape: transformer layers (overrides --model)."
)
@click.option("--hidden-size", type=int, help="Custom shape: model width d.")
@click.option("--num-attention-heads", type=int, help="Custom shape: attention heads.")
@click.option("--vocab-size", type=int, help="Padded vocabulary size (Pythia: 50304).")
@click.option(
    "--max-position-embeddings",
    "max_seq_len",
    type=int,
    help="Model context (default: the size's, 2048); --seq-length may not exceed it.",
)
@click.option(
    "--gelu",
    type=click.Choice(["tanh", "exact"]),
    default="tanh",
    help="GELU form. Pythia trained with tanh; its HF checkpoints declare the exact one (with "
    "--init-from, the checkpoint's unless given).",
)
@click.option("--data", help="Data PREFIX (PREFIX.bin/.idx).")
@click.option(
    "--data-format",
    type=click.Choice(_FORMATS),
    default="preshuffled",
    help="preshuffled: item i is row i; gpt-neox: a document dataset read through "
    "GPT-NeoX's index (pythia_data.GPTDataset).",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="With --data-format gpt-neox: the directory of the index files, as given to "
    "`pythia-data build-index --cache-dir` (default: beside the data, as GPT-NeoX does).",
)
@click.option(
    "--tokenizer",
    help="tokenizer.json written into every checkpoint with the files transformers' "
    "AutoTokenizer reads beside it (default: the bundled GPT-NeoX-20B tokenizer, when the "
    "model's vocabulary holds its ids; a resumed run keeps its checkpoint's, an --init-from "
    "run takes its checkpoint's tokenizer.json where it has one); 'none' writes none.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="GPT-NeoX .yml run config (Pythia's key names); options given here win.",
)
@click.option("--train-iters", type=int, default=143_000, help="Optimizer steps.")
@click.option(
    "--global-batch", type=int, default=1024, help="Rows per optimizer step (train_batch_size)."
)
@click.option("--micro-batch", type=int, default=16, help="Rows per forward pass per rank.")
@click.option(
    "--seq-length", type=int, default=2048, help="Tokens per row, excluding the last target."
)
@click.option("--lr", type=float, help="Peak learning rate (default: the size's Pythia lr).")
@click.option(
    "--min-lr",
    type=float,
    help="The learning rate's floor (default: 0.1 × lr). GPT-NeoX v1.0's cosine, which trained "
    "Pythia, spans lr-decay-iters from the end of the warmup and is floored here (Pythia's lr "
    "reaches it at step 115,139 of 143,000).",
)
@click.option(
    "--warmup",
    type=float,
    default=0.01,
    help="Warmup fraction of lr-decay-iters, in [0, 0.5] as in GPT-NeoX.",
)
@click.option("--lr-decay-iters", type=int, help="The cosine's length (default: train-iters).")
@click.option(
    "--weight-decay", type=float, default=0.1, help="AdamW decay (not on biases/LayerNorm)."
)
@click.option(
    "--clip-grad", type=float, default=1.0, help="Gradient-norm clipping (0: none, as in GPT-NeoX)."
)
@click.option(
    "--seed",
    type=int,
    default=1234,
    help="Initialisation seed; with --data-format gpt-neox also the seed of the index's "
    "shuffle (GPT-NeoX's one seed), so another seed trains on other rows.",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16", "fp16"]),
    default="fp32",
    help="fp16 uses dynamic loss scaling (initial 2^12, window 1000).",
)
@click.option(
    "--parallel",
    type=click.Choice(["ddp", "fsdp"]),
    default="ddp",
    help="Data-parallel strategy under torchrun: DDP or FSDP2 (fully_shard).",
)
@click.option("--compile/--no-compile", "compile_", default=False, help="torch.compile the model.")
@click.option(
    "--activation-checkpointing/--no-activation-checkpointing",
    default=False,
    help="Recompute each layer in the backward pass (less memory).",
)
@click.option(
    "--save",
    type=click.Path(file_okay=False),
    help="Checkpoint directory (SAVE/stepN/); a new run needs it empty or absent.",
)
@click.option(
    "--resume",
    type=click.Path(),
    help="Continue from a checkpoint (a stepN dir or SAVE). The global batch, "
    "seq-length, seed, model shape and the data's rows at the checkpoint must match the "
    "run's (the data may have moved); the "
    "learning-rate schedule (lr, min-lr, warmup, lr-decay-iters) is the "
    "checkpoint's, and so are AdamW's weight decay, betas and eps (a note says so when "
    "this run asks for others); the --log-file loses its records past the resume step. "
    "--resume naming the --save directory before it holds a checkpoint starts the run, "
    "dropping the --log-file records of a launch killed before its first checkpoint (one "
    "command for the first launch and every requeue).",
)
@click.option(
    "--init-from",
    type=click.Path(file_okay=False),
    help="Start from the weights of a Hugging Face GPT-NeoX checkpoint directory; its "
    "config.json decides the model's shape (a --model or shape option that differs is refused); "
    "--gelu and --max-position-embeddings, when given, replace its config.json's.",
)
@click.option(
    "--checkpoint-factor",
    type=int,
    default=1000,
    help="Save every N steps (0: only at --extra-save-iters and the last step) ...",
)
@click.option(
    "--extra-save-iters",
    default="0,1,2,4,8,16,32,64,128,256,512",
    help="... and at these steps (Pythia's 154-checkpoint schedule).",
)
@click.option(
    "--save-steps",
    help="Exactly these steps instead (comma-separated; '' for none), and the last step; "
    "steps past --train-iters wait for a run resumed with a larger one (a note says so).",
)
@click.option(
    "--log-file",
    "log_path",
    type=click.Path(dir_okay=False),
    help="Metrics as JSON lines (a new run needs a new or empty file).",
)
@click.option("--log-interval", type=int, default=1, help="Steps between log lines.")
@click.option(
    "--exit-interval",
    type=int,
    help="Stop after the first step divisible by N, saving a checkpoint there (GPT-NeoX's "
    "exit_interval): the learning-rate schedule and the data order stay those of "
    "--train-iters, so a job can train a share of a long run and a later one --resume it.",
)
@click.option("--device", help="cpu, cuda or cuda:N (default: cuda if available).")
@click.option(
    "--peak-tflops", type=float, help="Per-device peak TFLOP/s for MFU (guessed on known GPUs)."
)
@click.option("--progress/--no-progress", default=True, help="Show the progress bar.")
def main(**opts) -> None:
    """Train a GPT-NeoX model with Pythia's recipe on rows in exact GPT-NeoX order.

    Run it as is, or under torchrun for data parallelism (DDP or FSDP2; gloo on CPU, NCCL on
    GPUs; several nodes through torchrun's rendezvous). Checkpoints are Hugging Face GPT-NeoX
    directories (with the tokenizer's files, for AutoTokenizer) plus optimizer/schedule/RNG/data
    state, and resume on the same rows (bit for bit on the same processes and micro batch).

    \b
    One process:  pythia-train --model pythia-160m --data PREFIX --save runs/160m
    One node:     torchrun --nproc-per-node 8 -m pythia_train.cli --model pythia-1b ...
    Many nodes:   torchrun --nnodes 4 --nproc-per-node 8 --rdzv-backend c10d \\
                    --rdzv-endpoint HOST:29500 -m pythia_train.cli ...
    (checkpoints then need a directory every node sees)
    """
    ctx = click.get_current_context()
    # Handlers can only be set in the main thread: a program that runs the command in another
    # (a worker thread, an in-process runner) keeps the default action.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
    try:
        _run(ctx, opts)
    except (ValueError, OSError, RuntimeError) as e:
        click.echo(f"pythia-train: error: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        # As pythia-data: one line on where the work stands, and the shell's status for
        # SIGINT (click's own "Aborted!" said neither).
        if int(os.environ.get("RANK", "0")) == 0:
            click.echo(f"pythia-train: interrupted; {_where_to_continue(opts)}", err=True)
        sys.exit(130)
    except _Terminated:
        if int(os.environ.get("RANK", "0")) == 0:
            click.echo(f"pythia-train: terminated (SIGTERM); {_where_to_continue(opts)}", err=True)
        sys.exit(128 + signal.SIGTERM)
    finally:
        distributed = sys.modules.get("pythia_train.distributed")
        if distributed is not None:
            # After an error, once it is reported: tearing the group down can take a while
            # (or hang, under NCCL) and a peer leaving first gets this rank killed by torchrun.
            distributed.destroy_distributed(finished=False)
        if previous is not None:  # None: not this thread's to set, or not set from Python
            signal.signal(signal.SIGTERM, previous)


class _Terminated(BaseException):
    """SIGTERM, as a scheduler's time limit or preemption (SLURM) and torchrun stopping the
    other ranks send it: unwound like Ctrl-C, so that a checkpoint being written is removed
    and the run says where it can continue, where the default action left both unsaid."""


def _raise_terminated(signum, frame) -> None:
    distributed = sys.modules.get("pythia_train.distributed")
    if distributed is not None and distributed.failed_together():
        # torchrun stopping this rank because a peer that learned of the same failure left
        # first: this one is leaving too, and must first say why (or remove its partial
        # checkpoint). torchrun kills it after 30 s.
        return
    raise _Terminated


def _where_to_continue(opts: dict) -> str:
    from pythia_train.checkpoint import resolve_checkpoint
    from pythia_train.hf import CheckpointError

    save = opts.get("save")
    if not save:
        return "without --save this run saved no checkpoint to continue from"
    try:
        last = resolve_checkpoint(save)
    except (CheckpointError, OSError):
        return f"no checkpoint in {save} yet: --resume {save} --save {save} starts the run over"
    return f"the last checkpoint is {last}: --resume {save} --save {save} continues from it"


def _run(ctx: click.Context, opts: dict) -> None:
    from pythia_train.checkpoint import has_checkpoint
    from pythia_train.neox_config import read_neox_config

    def given(key: str) -> bool:
        return key in opts and ctx.get_parameter_source(key) == ParameterSource.COMMANDLINE

    world = int(os.environ.get("WORLD_SIZE", "1"))
    data_split = None
    from_config: set[str] = set()
    if opts["config_file"]:
        conf = read_neox_config(
            opts["config_file"], world, opts["precision"] if given("precision") else None
        )
        gas = conf.pop("grad_accum", None)
        if conf.pop("grad_accum_implied", False) and given("global_batch"):
            gas = None  # the config gave a micro batch only: --global-batch sets the rest
        # GPT-NeoX's split of the config's data-path; --data on the command line is read whole.
        data_split = conf.pop("data_split", None)
        if given("data"):
            data_split = None
        hysteresis = conf.pop("fp16_hysteresis_note", None)
        silent = conf.pop("silent_training", ())
        for note in conf.pop("notes", ()):
            if int(os.environ.get("RANK", "0")) == 0:
                click.echo(f"pythia-train: note: {note}", err=True)
        for key, value in conf.items():
            if given(key) or (given("model") and key in _SHAPE_KEYS):
                # An explicit --model is the whole shape; the config's shape keys give way.
                continue
            if key == "extra_save_iters":
                value = ",".join(str(v) for v in value)
            if key == "resume" and not (has_checkpoint(value) or _same_dir(value, opts["save"])):
                continue  # GPT-NeoX's "load" may name a directory that has none yet
            opts[key] = value
            from_config.add(key)
        if gas is not None:
            _global_batch_from_accumulation(opts, gas, world, given("global_batch"), conf)
        if hysteresis and opts["precision"] == "fp16" and int(os.environ.get("RANK", "0")) == 0:
            click.echo(f"pythia-train: note: {hysteresis}", err=True)
        for key, option, theirs, ours in silent:
            if (option is None or not given(option)) and int(os.environ.get("RANK", "0")) == 0:
                name = key.replace("_", "-")
                click.echo(
                    f"pythia-train: note: {opts['config_file']} sets the optimizer but not "
                    f"{name}: GPT-NeoX would use {theirs}; pythia-train uses {ours} (give "
                    f"{name} in the config to say which)",
                    err=True,
                )
    if not opts.get("data"):
        raise click.UsageError("no data: pass --data PREFIX (or train_data_paths in --config)")
    if opts["init_from"]:
        # Before the configs: a shape option checked against the default model's shape named
        # that model's heads or width, not the checkpoint's.
        _check_init_shape(opts["init_from"], opts, [k for k in _SHAPE_OPTIONS if given(k)])
        _note_config_shape(opts, from_config - {k for k in from_config if given(k)})
        _note_init_dropout(opts["init_from"])
    try:
        model_cfg, train_cfg = _configs(opts, world)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    later = sorted(s for s in train_cfg.save_steps or () if s > train_cfg.train_iters)
    if later and opts["save"] and int(os.environ.get("RANK", "0")) == 0:
        # Not refused: a run resumed with a larger --train-iters (the same command otherwise)
        # saves there. But this run does not, and a typo must not pass unseen.
        steps = ", ".join(map(str, later[:5])) + (", ..." if len(later) > 5 else "")
        click.echo(
            f"pythia-train: note: --save-steps {steps} {'is' if len(later) == 1 else 'are'} "
            f"past --train-iters {train_cfg.train_iters}: this run saves no checkpoint there",
            err=True,
        )
    if opts["resume"] and _same_dir(opts["resume"], opts["save"]):
        from pythia_train.checkpoint import has_checkpoint, log_owner, run_id

        if not has_checkpoint(opts["save"]):
            # The first launch of a requeued job, or a launch killed before its first
            # checkpoint: start over. That launch's log records go, if the log is this run's
            # (a log of another run stays, and the start refuses it).
            opts["resume"] = None
            log = opts["log_path"]
            if log:
                from pythia_train.distributed import all_or_none, init_distributed
                from pythia_train.train import truncate_log

                # Rank 0 cuts the log alone; the others, which went on to join the process
                # group, waited there for it after a failure (a read-only log).
                env = init_distributed(opts["device"])
                with all_or_none(env, f"cutting the --log-file {log} back to the start"):
                    if env.is_main and log_owner(log) == run_id(opts["save"]):
                        truncate_log(log, 0)
    if opts["cache_dir"] is not None and opts["data_format"] != "gpt-neox":
        raise click.UsageError(
            "--cache-dir names where GPT-NeoX's index is: it needs --data-format gpt-neox "
            "(preshuffled data has no index)"
        )
    rows = _open_data(
        opts["data"],
        opts["data_format"],
        train_cfg,
        opts["cache_dir"],
        opts["device"],
        data_split=data_split,
    )

    from pythia_train.checkpoint import CheckpointWriteError
    from pythia_train.train import train

    try:
        records = train(
            model_cfg,
            train_cfg,
            rows,
            save=opts["save"],
            resume=opts["resume"],
            init_from=opts["init_from"],
            init_overrides=_init_overrides(opts, given),
            log_path=opts["log_path"],
            device=opts["device"],
            progress=opts["progress"],
            tokenizer=_run_tokenizer(opts, model_cfg.vocab_size),
        )
    except CheckpointWriteError as e:
        # The checkpoint's temporary is gone and 'latest' is as it was: the run continues
        # from its last good checkpoint once the folder has room (or permission) again.
        raise CheckpointWriteError(e.errno, f"{e}; {_where_to_continue(opts)}") from None
    from pythia_train.distributed import destroy_distributed

    destroy_distributed()  # after an error, main() leaves the group once it has said why
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if records:
        last = records[-1]["step"]
        click.echo(f"step {last}: loss {records[-1]['loss']:.4f}{_saved(opts, train_cfg, records)}")
        if last < train_cfg.train_iters:
            how = (
                f"--resume {opts['save']} continues the run"
                if opts["save"]
                else "without --save there is no checkpoint to continue from"
            )
            click.echo(
                f"stopped at step {last} of {train_cfg.train_iters} (exit-interval "
                f"{train_cfg.exit_interval}); {how}"
            )
    elif opts["resume"]:
        n = train_cfg.train_iters
        click.echo(
            f"step {n}: the run is already complete (train-iters {n}); nothing to train "
            f"(pass a larger --train-iters to continue it)"
        )


def _same_dir(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and Path(a).resolve() == Path(b).resolve()


def _global_batch_from_accumulation(opts: dict, gas: int, world: int, given: bool, conf) -> None:
    """DeepSpeed's rule: global batch = micro batch × gradient accumulation × ranks."""
    implied = int(opts["micro_batch"]) * gas * world
    if given and int(opts["global_batch"]) != implied:
        # --global-batch wins over the config's accumulation steps, which were set for the
        # config's own number of GPUs (as the note below advises, to keep a run's batch on
        # fewer ranks); the accumulation is reckoned from it.
        if int(os.environ.get("RANK", "0")) == 0:
            click.echo(
                f"pythia-train: note: --global-batch {opts['global_batch']} replaces the "
                f"config's gradient-accumulation-steps {gas} (micro batch {opts['micro_batch']} "
                f"× {world} data-parallel ranks would give {implied})",
                err=True,
            )
        return
    if given or "global_batch" in conf:
        if int(opts["global_batch"]) != implied:
            raise click.UsageError(
                f"global batch {opts['global_batch']} is not micro batch {opts['micro_batch']} "
                f"× the config's gradient-accumulation-steps {gas} × {world} data-parallel "
                f"ranks ({implied}); drop one of them or make them agree"
            )
        return
    opts["global_batch"] = implied
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(
            f"pythia-train: note: global batch {implied} = micro batch {opts['micro_batch']} × "
            f"gradient-accumulation-steps {gas} × {world} data-parallel ranks, as DeepSpeed "
            f"reckons it (Pythia's was 1024: pass --global-batch to keep a run's batch on "
            f"fewer ranks)",
            err=True,
        )


# Config keys that give the model's shape (an explicit --model overrides them all).
_SHAPE_KEYS = {
    "num_layers",
    "hidden_size",
    "num_attention_heads",
    "vocab_size",
    "max_seq_len",
    "rotary_pct",
    "rotary_emb_base",
    "parallel_residual",
    "layernorm_eps",
    "init_method",
    "output_layer_init_method",
    "init_method_std",
    "gelu",  # from bias-gelu-fusion
}


# Command-line options that set the model's shape, and the ModelConfig fields each sets.
_SHAPE_OPTIONS = {
    "model": ("num_layers", "hidden_size", "num_heads"),
    "num_layers": ("num_layers",),
    "hidden_size": ("hidden_size",),
    "num_attention_heads": ("num_heads",),
    "vocab_size": ("vocab_size",),
}


def _init_from_config(init_from: str):
    """The --init-from checkpoint's shape, or None where its config.json cannot be read
    (loading the checkpoint then reports what is wrong with it)."""
    from pythia_train.hf import config_from_hf

    f = Path(init_from) / "config.json"
    try:
        return config_from_hf(json.loads(f.read_text(encoding="utf-8")), str(f))
    except (ValueError, OSError):
        return None


def _check_init_shape(init_from: str, opts: dict, options: list[str]) -> None:
    """The --init-from checkpoint decides the shape: a shape asked for explicitly that differs
    is refused, rather than silently training the checkpoint's."""
    from pythia_train.configs import PYTHIA_MODELS, model_config

    saved = _init_from_config(init_from)
    if not options or saved is None:
        return
    # --model sets only what no option beside it sets (--num-layers 4 overrides its layers).
    explicit = {k for o in options if o != "model" for k in _SHAPE_OPTIONS[o]}
    sets = {o: [k for k in _SHAPE_OPTIONS[o] if o != "model" or k not in explicit] for o in options}
    wanted = {}
    for o in options:
        if o == "model":
            try:
                preset = model_config(opts["model"])
            except ValueError:
                continue  # building the configs names the unknown model
            wanted.update({k: getattr(preset, k) for k in sets[o]})
        else:
            wanted[_SHAPE_OPTIONS[o][0]] = opts[o]
    fields = [k for o in options for k in sets[o] if k in wanted]
    fields = [k for k in dict.fromkeys(fields) if wanted[k] != getattr(saved, k)]
    if not fields:
        return
    asked = ", ".join(f"{k} {wanted[k]}" for k in fields)
    shape = ("num_layers", "hidden_size", "num_heads", "vocab_size")
    has = ", ".join(f"{k} {getattr(saved, k)}" for k in shape)
    size = [
        name
        for name, c in PYTHIA_MODELS.items()
        if (c.num_layers, c.hidden_size, c.num_heads)
        == (saved.num_layers, saved.hidden_size, saved.num_heads)
    ]
    of = f" ({size[0]}'s size)" if size else ""
    flags = ", ".join(f"--{o.replace('_', '-')}" for o in options if set(sets[o]) & set(fields))
    raise click.UsageError(
        f"the --init-from checkpoint {init_from} has the shape {has}{of}; this run asks for "
        f"{asked}. The checkpoint decides the shape: drop {flags}, or pass another --init-from"
    )


def _note_config_shape(opts: dict, from_config: set[str]) -> None:
    """The --init-from checkpoint decides the shape, and a --config file's differing shape keys
    are not used (a config is often taken for its recipe): they went unused without a word."""
    saved = _init_from_config(opts["init_from"])
    if saved is None or int(os.environ.get("RANK", "0")) != 0:
        return
    differ = [
        f"{key.replace('_', '-')} {opts[key]}"
        for key, field in (
            ("num_layers", "num_layers"),
            ("hidden_size", "hidden_size"),
            ("num_attention_heads", "num_heads"),
        )
        if key in from_config and opts[key] != getattr(saved, field)
    ]
    if differ:
        click.echo(
            f"pythia-train: note: the --config file's {', '.join(differ)} "
            f"{'is' if len(differ) == 1 else 'are'} not used: the "
            f"--init-from checkpoint {opts['init_from']} decides the shape ({saved.num_layers} "
            f"layers of {saved.hidden_size}, {saved.num_heads} heads)",
            err=True,
        )
    # The GELU too: Pythia's configs say tanh (bias-gelu-fusion), its checkpoints declare the
    # exact one, and the checkpoint's was trained without a word.
    if "gelu" in from_config:
        config_tanh, saved_tanh = opts["gelu"] == "tanh", saved.gelu_approximate == "tanh"
        if config_tanh != saved_tanh:
            click.echo(
                f"pythia-train: note: the --config file's GELU ({opts['gelu']}) is not used: the "
                f"--init-from checkpoint declares the {'tanh' if saved_tanh else 'exact'} one "
                f"(pass --gelu {opts['gelu']} to train with the config's)",
                err=True,
            )


def _note_init_dropout(init_from: str) -> None:
    """A checkpoint whose config.json asks for dropout (a fine-tune's, say) was trained here
    without it and without a word; the checkpoints this run writes declare none."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    try:
        conf = json.loads((Path(init_from) / "config.json").read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return  # loading the checkpoint reports it
    if not isinstance(conf, dict):
        return
    asked = [
        f"{key} {value}"
        for key in ("hidden_dropout", "attention_dropout")
        if isinstance(value := conf.get(key), int | float) and value > 0
    ]
    if asked:
        click.echo(
            f"pythia-train: note: the --init-from checkpoint's config.json asks for "
            f"{', '.join(asked)}; pythia-train trains without dropout, as Pythia did, and its "
            f"checkpoints declare none",
            err=True,
        )


def _init_overrides(opts: dict, given) -> dict | None:
    """What the command line asks of an --init-from model beside its config.json: the GELU
    (Pythia's checkpoints declare the exact one; Pythia trained with tanh) and the context.
    Neither changes the weights; ignoring them trained another model than the one asked for."""
    if not opts["init_from"]:
        return None
    overrides = {}
    if given("gelu"):
        overrides["gelu_approximate"] = "tanh" if opts["gelu"] == "tanh" else "none"
    if given("max_seq_len"):
        overrides["max_seq_len"] = int(opts["max_seq_len"])
    return overrides or None


def _saved(opts: dict, train_cfg, records: list[dict]) -> str:
    """Where this run's checkpoints went, or that none was due."""
    if not opts["save"]:
        return ""
    first, last = records[0]["step"] - 1, records[-1]["step"]
    steps = [s for s in train_cfg.checkpoint_steps() if first < s <= last or s == first == 0]
    if last < train_cfg.train_iters and last not in steps:
        steps.append(last)  # stopped by the exit interval
    if not steps:
        return f"; no checkpoint was due in steps {first + 1}..{last} (--save-steps)"
    return f"; checkpoints in {opts['save']}"


def _configs(opts: dict, world: int):
    from pythia_train.configs import PYTHIA_LR, TrainConfig, model_config

    device = opts.get("device")
    if device is not None:
        kind, _, index = device.partition(":")
        if (
            kind not in ("cpu", "cuda")
            or (index and not index.isdigit())
            or (kind == "cpu" and index)
        ):
            raise ValueError(f"--device must be cpu, cuda or cuda:N, got {device!r}")

    shape = {
        "num_layers": opts.get("num_layers"),
        "hidden_size": opts.get("hidden_size"),
        "num_heads": opts.get("num_attention_heads"),
        "vocab_size": opts.get("vocab_size"),
        "max_seq_len": opts.get("max_seq_len"),
        "rotary_pct": opts.get("rotary_pct"),
        "rotary_base": opts.get("rotary_emb_base"),
        "parallel_residual": opts.get("parallel_residual"),
        "layernorm_eps": opts.get("layernorm_eps"),
        "init_method": opts.get("init_method"),
        "output_layer_init_method": opts.get("output_layer_init_method"),
        "init_std": opts.get("init_method_std"),
        "gelu_approximate": "tanh" if opts["gelu"] == "tanh" else "none",
    }
    # With --init-from the checkpoint is the model (its shape options were checked against it):
    # the default model's vocabulary chose the tokenizer written into a small-vocabulary
    # model's checkpoints, and its heads refused a width that was the checkpoint's own.
    model_cfg = _init_from_config(opts["init_from"]) if opts.get("init_from") else None
    if model_cfg is None:
        model_cfg = model_config(opts["model"], **{k: v for k, v in shape.items() if v is not None})
    lr = opts["lr"]
    if lr is None:
        lr = PYTHIA_LR.get(_pythia_key(opts["model"]), 6e-4)
    train_cfg = TrainConfig(
        lr=float(lr),
        min_lr=opts["min_lr"],
        warmup=float(opts["warmup"]),
        train_iters=int(opts["train_iters"]),
        lr_decay_iters=opts["lr_decay_iters"],
        global_batch=int(opts["global_batch"]),
        micro_batch=int(opts["micro_batch"]),
        seq_length=int(opts["seq_length"]),
        betas=tuple(opts.get("betas") or (0.9, 0.95)),
        eps=float(opts.get("eps") or 1e-8),
        weight_decay=float(opts["weight_decay"]),
        grad_clip=float(opts["clip_grad"]),
        seed=int(opts["seed"]),
        precision=opts["precision"],
        initial_scale_power=int(opts.get("initial_scale_power") or 12),
        loss_scale_window=int(opts.get("loss_scale_window") or 1000),
        checkpoint_factor=int(opts["checkpoint_factor"]),
        extra_save_iters=_int_list(opts["extra_save_iters"]) or (),
        save_steps=list(_int_list(opts["save_steps"])) if opts["save_steps"] is not None else None,
        log_interval=int(opts["log_interval"]),
        exit_interval=opts.get("exit_interval"),
        compile=bool(opts["compile_"]),
        activation_checkpointing=bool(opts["activation_checkpointing"]),
        parallel=opts["parallel"],
        peak_tflops=opts["peak_tflops"],
    )
    train_cfg.grad_accum_steps(world)  # a micro batch that does not divide: say so now
    if not opts.get("resume"):
        # A resumed run follows its checkpoint's schedule, whatever warmup this one asks.
        train_cfg.check_new_schedule()
    if not opts.get("init_from") and train_cfg.seq_length > model_cfg.max_seq_len:
        raise ValueError(
            f"seq-length {train_cfg.seq_length} exceeds the model's context "
            f"{model_cfg.max_seq_len}; pass --max-position-embeddings {train_cfg.seq_length} or "
            f"a --seq-length of at most {model_cfg.max_seq_len}"
        )
    return model_cfg, train_cfg


def _run_tokenizer(opts: dict, vocab_size: int) -> tuple[bytes, str] | None:
    """What the run's checkpoints hold as their tokenizer: --tokenizer's, or where a resumed
    checkpoint answers it, the same as that checkpoint (its tokenizer.json, or none): a requeue
    without the option put the bundled tokenizer into a run that had another."""
    from pythia_train.checkpoint import has_checkpoint, resolve_checkpoint
    from pythia_train.hf import CheckpointError

    path, resume = opts.get("tokenizer"), opts.get("resume")
    if path is None and resume and has_checkpoint(resume):
        try:
            held = resolve_checkpoint(resume) / "tokenizer.json"
        except CheckpointError:
            held = None  # resuming reports it
        if held is not None:
            path = str(held) if held.is_file() else "none"
    init_from = opts.get("init_from")
    origin = None
    if path is None and init_from and (Path(init_from) / "tokenizer.json").is_file():
        # The model's own tokenizer (such as one with added chat tokens), not the bundled one:
        # that replaced it without a word in every checkpoint of a fine-tuning run.
        path = str(Path(init_from) / "tokenizer.json")
        origin = "the --init-from checkpoint's tokenizer"
    return _checkpoint_tokenizer(path, vocab_size, origin)


def _checkpoint_tokenizer(
    path: str | None, vocab_size: int, origin: str | None = None
) -> tuple[bytes, str] | None:
    """The tokenizer.json to write into checkpoints (its bytes), and its end-of-document token:
    the one given, or the bundled GPT-NeoX-20B one where the model's vocabulary holds its ids (a
    model of another vocabulary was trained on other ids, so no tokenizer is guessed for it).
    ``origin`` names where ``path`` came from when the command line did not give it (an
    --init-from checkpoint's): its errors named a --tokenizer the run was not given."""
    name = origin or "--tokenizer"
    if path is not None and path.lower() == "none":
        return None
    from pythia_data import PythiaDataError, Tokenizer
    from pythia_data.data import DEFAULT_TOKENIZER

    try:
        tok = Tokenizer.from_file(path)
        # Read now, once: copied at each checkpoint, a file moved, deleted or rewritten during
        # the run (a checkpoint's own tokenizer.json, replaced by a later save) failed the
        # save after hours of training, or put another tokenizer into later checkpoints.
        text = Path(tok.path).read_bytes()
    except (PythiaDataError, OSError) as e:
        way_out = (
            "; give the tokenizer to write with --tokenizer PATH, or --tokenizer none"
            if origin
            else ""
        )
        raise ValueError(f"{name}: {e}{way_out}") from None
    if tok.vocab_size > vocab_size:
        if path is None:
            return None
        raise ValueError(
            f"{name} {path}: its {tok.vocab_size:,} ids do not fit the model's vocabulary of "
            f"{vocab_size:,}; give the tokenizer the data was made with, or --tokenizer none"
        )
    try:
        eod = tok.decode([tok.eod_id], skip_special_tokens=False)
    except ValueError as e:
        raise ValueError(
            f"{name} {path or DEFAULT_TOKENIZER}: {e}, which checkpoints name as their "
            "end of document; give the tokenizer the data was made with, or --tokenizer none"
        ) from None
    return text, eod


def _pythia_key(name: str) -> str:
    n = name.lower().removesuffix("-deduped")
    return n if n.startswith("pythia-") else "pythia-" + n


def _check_prefix(prefix: str) -> None:
    """A directory given as --data was reported as a missing DIR.idx."""
    p = Path(prefix)
    if not p.is_dir() or p.with_name(p.name + ".idx").exists():
        return
    found = sorted(str(q.with_suffix("")) for q in p.glob("*.idx"))
    holds = (
        f"; the datasets in it: {', '.join(found[:5])}{', ...' if len(found) > 5 else ''}"
        if found
        else "; it holds no dataset (no *.idx)"
    )
    raise ValueError(
        f"{prefix}: a directory; --data takes a dataset prefix (PREFIX for PREFIX.bin and "
        f"PREFIX.idx, without the extension){holds}"
    )


def _open_data(
    prefix: str,
    fmt: str,
    cfg,
    cache_dir: str | None = None,
    device: str | None = None,
    data_split: str | None = None,
):
    """The training rows. ``data_split`` (a config's data-path and split) gives GPT-NeoX's
    ``build_train_valid_test_datasets``: the train range of the documents, named ``train``,
    ``train_iters · global_batch`` samples."""
    _check_prefix(prefix)
    if fmt == "preshuffled":
        from pythia_data import IndexedDataset, PythiaDataError
        from pythia_train.data import open_rows

        try:
            return open_rows(prefix, cfg.seq_length)
        except PythiaDataError as e:
            # --data-format defaults to preshuffled, also for a config's train-data-paths or
            # data-path, which in Pythia's own configs name a document dataset: the error named
            # the rows' length but not the option that reads documents through GPT-NeoX's index.
            try:
                sizes = IndexedDataset(prefix).sizes
            except (PythiaDataError, OSError):
                raise e from None
            if len(sizes) and not (sizes == sizes[0]).all():
                raise PythiaDataError(
                    f"{e}; its items differ in length, as a document dataset's do: pass "
                    "--data-format gpt-neox to train on it in GPT-NeoX's order"
                ) from None
            raise
    from pythia_data import GPTDataset

    where: dict = {}
    if data_split is not None:
        from pythia_data import IndexedDataset
        from pythia_data.index import train_valid_test_split

        bounds = train_valid_test_split(data_split, len(IndexedDataset(prefix)))
        if bounds[1] <= 0:
            raise ValueError(
                f"split {data_split!r} leaves no training documents of {prefix}: GPT-NeoX "
                "builds no training dataset from it"
            )
        where = dict(
            name="train",
            num_samples=cfg.train_iters * cfg.global_batch,
            documents=(0, bounds[1]),
        )

    def open_dataset():
        # GPTDataset asks for ceil(iters · batch · 1.005) samples, as GPT-NeoX did for Pythia
        # (the count shapes the shuffle), and builds the index like GPT-NeoX when it is missing.
        try:
            return GPTDataset(
                prefix,
                train_iters=cfg.train_iters,
                global_batch_size=cfg.global_batch,
                seq_length=cfg.seq_length,
                seed=cfg.seed,
                build=True,
                cache_dir=cache_dir,
                **where,
            )
        except OSError as e:
            # Read-only data (a shared copy of the Pile): the error named the folder but not
            # the way out, which `pythia-data build-index` names. The engine's errors carry
            # the system's words, not an errno; an unreadable input is not helped by it.
            words = [os.strerror(n) for n in (errno.EACCES, errno.EPERM, errno.EROFS)]
            refused = "(writing " in str(e) and any(w in str(e) for w in words)
            if cache_dir is not None or not refused:
                raise
            raise OSError(
                f"{e}: the index cannot be written beside the data; write it elsewhere with "
                "--cache-dir DIR (and give each --resume of the run the same --cache-dir)"
            ) from None

    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return open_dataset()
    # As GPT-NeoX does: global rank 0 builds a missing index while the other ranks wait, then
    # they open it. Ranks on several hosts building at once into a shared folder each did the
    # whole build, and could remove another host's temporary files (a process of another host
    # looks dead) and fail it.
    import torch.distributed as dist

    from pythia_train.distributed import init_distributed

    init_distributed(device)
    first = int(os.environ.get("RANK", "0")) == 0
    if not first:
        try:
            dist.barrier()
        except RuntimeError as e:
            if "timed out" in str(e).lower():
                # Rank 0 still at work: a huge index outlasted the process group's timeout.
                raise RuntimeError(
                    f"timed out waiting for rank 0 to open {prefix}, which builds a missing "
                    f"index alone: build it beforehand with `pythia-data build-index` and the "
                    f"run's --train-iters, --global-batch-size, --seq-length and --seed ({e})"
                ) from None
            # Rank 0 failed and printed why; gloo's own message here named no cause.
            raise RuntimeError(
                f"rank 0 stopped while opening {prefix} (its error says why)"
            ) from None
    rows = open_dataset()
    if first:
        dist.barrier()
    return rows


if __name__ == "__main__":
    main()
