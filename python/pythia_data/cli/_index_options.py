"""Click options shared by the commands that locate or build a GPT-NeoX index."""

from __future__ import annotations

import click

from pythia_data.index import PYTHIA

index_options = [
    click.option(
        "--name",
        default="train_0",
        show_default=True,
        help="GPT-NeoX's dataset name in the cache file names (train_0, valid_0, test_0).",
    ),
    click.option(
        "--train-iters",
        type=click.IntRange(min=0),
        default=PYTHIA["train_iters"],
        show_default=True,
        help="Optimizer steps; with --global-batch-size gives the samples GPT-NeoX requests.",
    ),
    click.option(
        "--global-batch-size",
        type=click.IntRange(min=1),
        default=PYTHIA["global_batch_size"],
        show_default=True,
        help="Rows per optimizer step.",
    ),
    click.option(
        "--num-samples",
        type=click.IntRange(min=0),
        default=None,
        help="Samples to request, overriding ceil(train_iters · global_batch_size · 1.005).",
    ),
    click.option(
        "--seq-length",
        type=click.IntRange(min=1),
        default=PYTHIA["seq_length"],
        show_default=True,
        help="Tokens per sample (each row holds seq_length + 1).",
    ),
    click.option(
        "--seed",
        type=int,
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


def with_index_options(f):
    for opt in reversed(index_options):
        f = opt(f)
    return f
