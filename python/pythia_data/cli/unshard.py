"""`pythia-data unshard`: join a sharded `.bin` into one file."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pythia_data.cli import _stops
from pythia_data.cli._prefixes import output_prefix
from pythia_data.index import find_one_dataset
from pythia_data.unshard import unshard


@click.command("unshard")
@click.argument("prefix", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    callback=lambda ctx, param, value: None if value is None else output_prefix(value, "--output"),
    help="Output dataset prefix (default: PREFIX itself, writing PREFIX.bin beside the shards).",
)
@click.option(
    "--checksums",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A checksum file listing every shard (sha256sum's 'HEX  NAME' or --tag lines, or "
    "'NAME HEX' as Pythia's shard_hashes.txt); each shard is verified as it is copied.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def command(prefix: Path, output: Path | None, checksums: Path | None, quiet: bool) -> None:
    """Concatenate the shards PREFIX-00000-of-NNNNN.bin, ... into one PREFIX.bin (PREFIX may
    be a directory holding exactly one dataset).

    Usually unnecessary: every pythia-data command and IndexedDataset read shards in place.
    The output appears only when complete and verified. If the run is interrupted, run the same
    command again: it continues after the last shard that was fully copied.
    """
    prefix = find_one_dataset(prefix)
    try:
        out = unshard(prefix, output, checksums, progress=not quiet)
    except KeyboardInterrupt:
        # The copied shards are kept (a hidden .partial file) for the rerun to continue from.
        click.echo(
            "interrupted; run the same command again to continue after the last shard copied",
            err=True,
        )
        sys.exit(_stops.exit_status())
    click.echo(f"wrote {out.with_name(out.name + '.bin')}")
