"""`pythia-data merge`: concatenate indexed datasets, in order, like GPT-NeoX's merge tool."""

from __future__ import annotations

from pathlib import Path

import click
from tqdm import tqdm

from pythia_data.dataset import _read_subsets
from pythia_data.indexed import IndexedDataset, IndexedDatasetBuilder, _strip_extension


def _dataset_args(inputs: tuple[Path, ...]) -> list[Path]:
    """Prefixes from the arguments. A shell glob such as `part-*` names each dataset twice in
    a row (its .bin, then its .idx): such a pair counts once. A dataset named twice on purpose
    (its prefix twice, or apart) is merged twice."""
    out: list[Path] = []
    previous: Path | None = None
    for arg in inputs:
        prefix = _strip_extension(arg)
        pair = previous is not None and prefix == _strip_extension(previous) and arg.suffix != previous.suffix
        if pair and {arg.suffix, previous.suffix} == {".bin", ".idx"}:
            previous = None
            continue
        out.append(prefix)
        previous = arg
    return out


def _merge_subsets(output: Path, datasets: list[IndexedDataset]) -> None:
    """Join the per-document subset files that `pythia-data tokenize` writes, when every input
    has them, so the merged parts equal one tokenize run over all the inputs."""
    has = [ds.prefix.with_name(ds.prefix.name + ".subsets.json").exists() for ds in datasets]
    if all(has):
        from pythia_data.tokenize import merge_subsets

        merge_subsets(output, [ds.prefix for ds in datasets])
    elif any(has):
        missing = next(ds.prefix for ds, h in zip(datasets, has, strict=True) if not h)
        click.echo(
            f"note: {missing} has no .subsets files, so {output} gets none (subset provenance "
            "is only kept when every input has it)",
            err=True,
        )


@click.command("merge")
@click.argument("output", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
def command(output: Path, inputs: tuple[Path, ...]) -> None:
    """Concatenate the datasets INPUTS..., in the order given, into OUTPUT.

    OUTPUT and INPUTS are dataset prefixes (PREFIX.bin/.idx, with or without the extension;
    a glob like `out/pile-*-of-00030.idx` lists the parts of a sharded tokenize run in order).
    The result is byte-identical to GPT-NeoX's tools/merge_datasets.py: items appended in order,
    doc_idx shifted. When every input has the PREFIX.subsets.* files of `pythia-data tokenize`,
    they are joined too. All inputs must share one dtype. OUTPUT appears only when the merge is
    complete; an interrupted merge leaves nothing behind.
    """
    output = _strip_extension(output)
    datasets = [IndexedDataset(p) for p in _dataset_args(inputs)]
    # Compared as files: an output named like an input's shard would be renamed over it.
    outputs = {output.with_name(output.name + ext).resolve() for ext in (".bin", ".idx")}
    for ds in datasets:
        for f in [*ds.bin_paths, ds.idx_path]:
            if f.resolve() in outputs:
                raise click.UsageError(f"the output {output} would overwrite {f}, an input")
    dtypes = {ds.dtype.name for ds in datasets}
    if len(dtypes) > 1:
        detail = ", ".join(f"{ds.prefix} ({ds.dtype.name})" for ds in datasets)
        raise click.UsageError(f"inputs have different dtypes: {detail}")
    for ds in datasets:  # damaged subset files are refused before any output is written
        _read_subsets(ds.prefix, len(ds))
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
    _merge_subsets(output, datasets)
    items = sum(len(ds) for ds in datasets)
    tokens = sum(ds.total_tokens for ds in datasets)
    click.echo(f"wrote {output} ({len(datasets)} inputs, {items:,} items, {tokens:,} tokens)")
