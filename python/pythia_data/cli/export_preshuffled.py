"""`pythia-data export-preshuffled`: the first R training rows as Pythia's preshuffled layout."""

from __future__ import annotations

import click

from pythia_data import _core
from pythia_data.cli._index_options import INT64_MAX, with_train_index_options
from pythia_data.cli._prefixes import output_prefix
from pythia_data.cli.batch import open_rows
from pythia_data.preshuffle import export_preshuffled


@click.command("export-preshuffled")
@click.argument("prefix", type=click.Path())
@click.argument("output", callback=lambda ctx, param, value: output_prefix(value, "OUTPUT"))
@click.option(
    "--rows",
    "num_rows",
    type=click.IntRange(min=1, max=INT64_MAX),
    default=None,
    help="Rows to write, at least 1 (default: train_iters · global_batch_size, or all the index "
    "holds if fewer).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@with_train_index_options
def command(prefix, output, num_rows, quiet, **index_opts):
    """Write the first ROWS training rows of PREFIX's index to OUTPUT.bin/.idx, one item of
    seq_length + 1 tokens per row, as in Pythia's released preshuffled datasets (no document
    ends: doc_idx [0]). PREFIX may be a directory holding exactly one dataset."""
    _core.check_output_prefix(output)  # before the index is opened, not after
    ds = open_rows(prefix, False, **index_opts)
    if num_rows is None:
        num_rows = min(len(ds), index_opts["train_iters"] * index_opts["global_batch_size"])
        if num_rows == 0:
            # A dataset with no rows is one no command can read (nor give a row length).
            raise click.UsageError(
                f"there are no rows to write ({len(ds):,} in the index, --train-iters "
                f"{index_opts['train_iters']}): give --rows or more --train-iters"
            )
    path = export_preshuffled(ds, output, num_rows, progress=not quiet)
    click.echo(f"wrote {num_rows:,} rows of {ds.seq_length + 1} tokens to {path}")
