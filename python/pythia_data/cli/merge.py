"""`pythia-data merge`: concatenate indexed datasets, in order, like GPT-NeoX's merge tool."""

from __future__ import annotations

from pathlib import Path

import click
from tqdm import tqdm

from pythia_data.indexed import IndexedDataset, IndexedDatasetBuilder, _strip_extension


@click.command("merge")
@click.argument("output", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
def command(output: Path, inputs: tuple[Path, ...]) -> None:
    """Concatenate the datasets INPUTS..., in the order given, into OUTPUT.

    OUTPUT and INPUTS are dataset prefixes (PREFIX.bin/.idx, with or without the extension).
    The result is byte-identical to GPT-NeoX's tools/merge_datasets.py: items appended in order,
    doc_idx shifted. All inputs must share one dtype. OUTPUT appears only when the merge is
    complete; an interrupted merge leaves nothing behind.
    """
    output = _strip_extension(output)
    datasets = [IndexedDataset(p) for p in inputs]
    for ds in datasets:
        if ds.prefix.resolve() == output.resolve():
            raise click.UsageError(f"the output {output} is also an input")
    dtypes = {ds.dtype.name for ds in datasets}
    if len(dtypes) > 1:
        detail = ", ".join(f"{ds.prefix} ({ds.dtype.name})" for ds in datasets)
        raise click.UsageError(f"inputs have different dtypes: {detail}")
    total = sum(ds.total_tokens * ds.dtype.itemsize for ds in datasets)
    builder = IndexedDatasetBuilder(output, datasets[0].dtype)
    try:
        with tqdm(total=total, unit="B", unit_scale=True, desc="merge") as bar:
            for ds in datasets:
                builder.append_dataset(ds)
                bar.update(ds.total_tokens * ds.dtype.itemsize)
        builder.finish()
    except BaseException:
        builder.abort()
        raise
    items = sum(len(ds) for ds in datasets)
    tokens = sum(ds.total_tokens for ds in datasets)
    click.echo(f"wrote {output} ({len(datasets)} inputs, {items:,} items, {tokens:,} tokens)")
