"""Click options shared by the commands that locate or build a GPT-NeoX index."""

from __future__ import annotations

import math

import click

from pythia_data.errors import PythiaDataError
from pythia_data.index import PYTHIA, check_dataset_name, num_samples_for

#: Counts beyond int64 are usage errors naming their option, not an OverflowError later.
INT64_MAX = 2**63 - 1


def _check_name(ctx, param, value: str) -> str:
    try:
        return check_dataset_name(value)
    except PythiaDataError as e:
        raise click.BadParameter(str(e)) from None


_num_samples = click.option(
    "--num-samples",
    type=click.IntRange(min=0, max=INT64_MAX),
    default=None,
    help="Samples to request, overriding GPT-NeoX's ceil(steps · global_batch_size · 1.005) "
    "for the --split's steps.",
)

index_options = [
    click.option(
        "--name",
        default="train_0",
        show_default=True,
        callback=_check_name,
        help="GPT-NeoX's dataset name in the cache file names (train_0, valid_0, test_0); "
        "no '/' or '..'.",
    ),
    click.option(
        "--train-iters",
        type=click.IntRange(min=0, max=INT64_MAX),
        default=PYTHIA["train_iters"],
        show_default=True,
        help="Optimizer steps; with --global-batch-size gives the samples GPT-NeoX requests.",
    ),
    click.option(
        "--global-batch-size",
        type=click.IntRange(min=1, max=INT64_MAX),
        default=PYTHIA["global_batch_size"],
        show_default=True,
        help="Rows per optimizer step.",
    ),
    _num_samples,
    click.option(
        "--seq-length",
        type=click.IntRange(min=1, max=INT64_MAX),
        default=PYTHIA["seq_length"],
        show_default=True,
        help="Tokens per sample (each row holds seq_length + 1).",
    ),
    click.option(
        "--seed",
        type=click.IntRange(0, 2**32 - 1),
        default=PYTHIA["seed"],
        show_default=True,
        help="numpy RandomState seed, in [0, 4294967295].",
    ),
    click.option(
        "--cache-dir",
        type=click.Path(file_okay=False),
        default=None,
        help="Directory of the index files (default: beside the data, as GPT-NeoX does).",
    ),
]


#: The options that size the valid and test splits, as GPT-NeoX does. Shared so that
#: `build-index --split valid` and `batch --split valid` name the same index.
EVAL_INTERVAL, EVAL_ITERS = 40_000, 10
eval_options = [
    click.option(
        "--eval-interval",
        type=click.IntRange(min=1, max=INT64_MAX),
        default=EVAL_INTERVAL,
        show_default=True,
        help="GPT-NeoX's eval_interval (sets the valid split's size).",
    ),
    click.option(
        "--eval-iters",
        type=click.IntRange(min=0, max=INT64_MAX),
        default=EVAL_ITERS,
        show_default=True,
        help="GPT-NeoX's eval_iters (sets the valid and test sizes).",
    ),
]

SPLITS = ("train", "valid", "test")
SPLIT_HELP = (
    "train_0, valid_0 (eval_iters · (train_iters // eval_interval + 1) steps) and test_0 "
    "(eval_iters steps). valid and test override --name."
)


def split_iters(split: str, train_iters: int, eval_interval: int, eval_iters: int) -> int:
    """Optimizer steps GPT-NeoX runs on ``split`` (its train_val_test_num_samples)."""
    return {
        "train": train_iters,
        "valid": (train_iters // eval_interval + 1) * eval_iters,
        "test": eval_iters,
    }[split]


def split_name(split: str, name: str) -> str:
    """The dataset name in the cache file names: --name for train, else GPT-NeoX's own."""
    return name if split == "train" else f"{split}_0"


def split_num_samples(
    split: str,
    num_samples: int | None,
    train_iters: int,
    global_batch_size: int,
    eval_interval: int,
    eval_iters: int,
    *,
    margin: bool = True,
) -> int:
    """Samples requested for ``split``: --num-samples when given, else GPT-NeoX's count, with
    its 1.005 margin (``margin=False``: a blend's total, which GPT-NeoX takes before the margin
    it applies to each component)."""
    if num_samples is not None:
        return num_samples
    iters = split_iters(split, train_iters, eval_interval, eval_iters)
    return num_samples_for(iters, global_batch_size) if margin else iters * global_batch_size


def parse_weights(weights: str, path, prefixes) -> list[float]:
    """--weights as numbers, one per dataset found at ``path``."""
    try:
        ws = [float(w) for w in weights.split(",")]
    except ValueError:
        raise click.UsageError(f"--weights {weights!r}: not comma-separated numbers") from None
    if len(ws) != len(prefixes):
        raise click.UsageError(
            f"--weights gives {len(ws)} weights but {path} holds {len(prefixes)} datasets: "
            + ", ".join(p.name for p in prefixes)
        )
    # As the blend would refuse them, but as the wrong argument they are (status 2, not 1).
    if not all(w >= 0 and math.isfinite(w) for w in ws) or not 0 < sum(ws) < math.inf:
        raise click.UsageError(
            f"--weights {weights!r}: give finite, non-negative numbers, not all zero (and not so "
            "large that their sum is infinite)"
        )
    return ws


def _apply(options, f):
    for opt in reversed(options):
        f = opt(f)
    return f


#: For a command without --split (export-preshuffled, which reads the train index), whose
#: --help named an option it does not have.
train_index_options = [
    click.option(
        "--num-samples",
        type=click.IntRange(min=0, max=INT64_MAX),
        default=None,
        help="Samples to request, overriding GPT-NeoX's ceil(train_iters · global_batch_size · "
        "1.005).",
    )
    if opt is _num_samples
    else opt
    for opt in index_options
]


def with_index_options(f):
    return _apply(index_options, f)


def with_train_index_options(f):
    return _apply(train_index_options, f)


def with_eval_options(f):
    return _apply(eval_options, f)
