"""`pythia-data batch`: the rows Pythia trained on at given steps (a fixed batch_viewer)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import click
import numpy as np

from pythia_data import _core
from pythia_data.cli._index_options import (
    EVAL_INTERVAL,
    EVAL_ITERS,
    INT64_MAX,
    SPLIT_HELP,
    SPLITS,
    parse_weights,
    split_iters,
    split_name,
    split_num_samples,
    with_eval_options,
    with_index_options,
)
from pythia_data.dataset import (
    BlendedDataset,
    GPTDataset,
    PreshuffledDataset,
    _refuse_overwriting_sources,
)
from pythia_data.errors import PythiaDataError, output_error, prepare_output_folder
from pythia_data.index import (
    blend_component_name,
    find_datasets,
    find_one_dataset,
    index_paths,
    missing_index_message,
)
from pythia_data.indexed import IndexedDataset
from pythia_data.progress import progress_bar


def open_rows(
    prefix,
    preshuffled,
    name,
    train_iters,
    global_batch_size,
    num_samples,
    seq_length,
    seed,
    cache_dir,
    split="train",
    eval_interval=EVAL_INTERVAL,
    eval_iters=EVAL_ITERS,
    weights=None,
):
    """The dataset the options describe: preshuffled rows, a raw dataset and its index, or
    with ``weights`` the blend of the datasets PREFIX holds. PREFIX may be a directory holding
    exactly one dataset (or, for a blend, several). The split's name and sample count are
    worked out as `build-index` does, so the same options find the index it built."""
    if weights is not None:
        return _open_blend(
            prefix, weights, name, split, num_samples, train_iters, global_batch_size,
            seq_length, seed, cache_dir, eval_interval, eval_iters,
        )  # fmt: skip
    prefix = find_datasets(find_one_dataset(prefix, ", or blend them with --weights"))[0]
    if preshuffled:
        indexed = IndexedDataset(prefix)
        sizes = indexed.sizes
        # --seq-length always has a value here (2048 unless given), so the dataset's advice to
        # leave it out cannot be followed on the command line.
        if len(sizes) and 2 <= int(sizes[0]) != seq_length + 1 and np.all(sizes == sizes[0]):
            n = int(sizes[0])
            raise PythiaDataError(
                f"{indexed.idx_path}: every item of this preshuffled dataset has {n:,} tokens, "
                f"rows of seq_length {n - 1}, not {seq_length}: pass --seq-length {n - 1}"
            )
        return PreshuffledDataset(indexed, seq_length=seq_length)
    num_samples = split_num_samples(
        split, num_samples, train_iters, global_batch_size, eval_interval, eval_iters
    )
    indexed = IndexedDataset(prefix)
    try:
        return GPTDataset(
            indexed,
            name=split_name(split, name),
            num_samples=num_samples,
            train_iters=train_iters,
            global_batch_size=global_batch_size,
            seq_length=seq_length,
            seed=seed,
            cache_dir=cache_dir,
        )
    except FileNotFoundError as e:
        error: OSError = e
        asked = dict(
            name=split_name(split, name), num_samples=num_samples, seq_length=seq_length, seed=seed
        )
        paths = index_paths(prefix, **asked, cache_dir=cache_dir)
        missing = next((p for p in paths if not p.exists()), None)
        if missing is not None:  # the indexes that differ, in this command's options
            error = FileNotFoundError(
                missing_index_message(missing, prefix, asked, cache_dir, len(indexed), cli=True)
            )
        # Pythia's released data is preshuffled and has no index: the advice to build one
        # would index its rows as documents and read other rows than Pythia trained on.
        sizes = indexed.sizes
        if len(sizes) < 2 or int(sizes[0]) < 2 or not np.all(sizes == sizes[0]):
            raise error from None
        raise FileNotFoundError(
            f"{error}; but every item of {prefix} has {int(sizes[0]):,} tokens, as in preshuffled "
            "data, which has no index (item k is row k): if it is, `pythia-data batch "
            "--preshuffled` reads it"
        ) from None


def _open_blend(
    path, weights, name, split, num_samples, train_iters, global_batch_size, seq_length, seed,
    cache_dir, eval_interval, eval_iters,
):  # fmt: skip
    """The blend `build-index --weights` built with the same options: each component's index
    under GPT-NeoX's name for it, with its share of the samples, in BlendableDataset's order."""
    prefixes = find_datasets(path)
    ws = parse_weights(weights, path, prefixes)
    total = split_num_samples(
        split, num_samples, train_iters, global_batch_size, eval_interval, eval_iters, margin=False
    )
    counts = _core.blend_num_samples(ws, total)[1]
    comps = []
    for i, (prefix, n) in enumerate(zip(prefixes, counts, strict=True)):
        where = dict(num_samples=int(n), seq_length=seq_length, seed=seed, cache_dir=cache_dir)
        component = blend_component_name(split_name(split, name), i)
        try:
            comps.append(GPTDataset(prefix, name=component, **where))
        except FileNotFoundError as e:
            hint = (
                f"build the blend with `pythia-data build-index {path} --weights {weights}` and "
                "the same options"
            )
            if (
                component != split_name(split, name)
                and index_paths(prefix, split_name(split, name), **where)[0].exists()
            ):
                # Before the components were named as GPT-NeoX names them, all were train_0.
                hint += (
                    f" (the index of {prefix.name} under {split_name(split, name)} is from a "
                    "build that named every component so; GPT-NeoX names this one "
                    f"{component})"
                )
            text = str(e)
            missing = next(
                (p for p in index_paths(prefix, component, **where) if not p.exists()), None
            )
            if missing is not None:
                # A component's count follows from --weights: the list of the indexes built
                # for one dataset, in GPTDataset's parameters, would misguide here.
                text = f"{missing}: index file not found ({hint})"
            message = text.replace("build it with `pythia-data build-index`", hint)
            raise FileNotFoundError(message if hint in message else f"{text} ({hint})") from None
    return BlendedDataset(comps, ws)


@click.command("batch")
@click.argument("prefix", type=click.Path())
@click.option(
    "--step", type=click.IntRange(min=0, max=INT64_MAX), required=True, help="First optimizer step."
)
@click.option(
    "--end-step",
    type=click.IntRange(min=0, max=INT64_MAX),
    default=None,
    help="Last step, inclusive (default: --step).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=INT64_MAX),
    default=None,
    help="Rows per step (default: --global-batch-size, i.e. 1024).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the rows to this .npy (shape (B, seq+1), or (steps, B, seq+1) whenever "
    "--end-step is given); with --decode, write the text here.",
)
@click.option(
    "--decode",
    is_flag=True,
    help="Decode rows to text with --tokenizer (default GPT-NeoX-20B). Special tokens are "
    "kept, so the end of a document shows as <|endoftext|>.",
)
@click.option(
    "--tokenizer",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="tokenizer.json for --decode (default: the bundled GPT-NeoX-20B one).",
)
@click.option(
    "--int64",
    "as_int64",
    is_flag=True,
    help="Save int64 tokens instead of the dataset's dtype in the .npy of --output.",
)
@click.option(
    "--preshuffled",
    is_flag=True,
    help="PREFIX is preshuffled data (item k = row k), not a raw dataset with an index.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@with_index_options
@click.option(
    "--split",
    type=click.Choice(SPLITS),
    default="train",
    show_default=True,
    help="Which of GPT-NeoX's datasets to read: " + SPLIT_HELP,
)
@with_eval_options
@click.option(
    "--weights",
    default=None,
    help="Comma-separated weights, one per dataset PREFIX (a directory) holds: read the blend "
    "`build-index --weights` built with the same options, in GPT-NeoX's BlendableDataset order.",
)
def command(
    prefix,
    step,
    end_step,
    batch_size,
    output,
    decode,
    tokenizer,
    as_int64,
    preshuffled,
    quiet,
    **index_opts,
):
    """Print or save the batches trained at steps STEP..=END_STEP of PREFIX (a dataset prefix,
    or a directory holding exactly one dataset; with --weights, a directory of the datasets to
    blend).

    Step s is rows [s·batch_size, (s+1)·batch_size) of GPT-NeoX's order: every row of every step
    in the range, nothing more or less. The index is found under GPT-NeoX's names for the
    given (default: Pythia's) parameters; build it with `pythia-data build-index`.
    Without --output or --decode, each step gets a one-line summary (its rows, shape, token
    sum and first tokens).
    """
    # The shape follows the options, not the values: a script giving --end-step gets (steps, B,
    # seq+1) even when the range is one step.
    stacked = end_step is not None
    end_step = step if end_step is None else end_step
    batch_size = batch_size or index_opts["global_batch_size"]
    if end_step < step:
        raise click.BadParameter(f"{end_step} is before --step {step}", param_hint="--end-step")
    if output is not None and not decode and not output.lower().endswith(".npy"):
        raise click.BadParameter(
            f"{output!r}: without --decode the rows are written as a .npy array; name the file "
            "….npy, or add --decode to write them as text",
            param_hint="--output",
        )
    # Ignored without a word, they seemed to do something: --tokenizer to re-read the ids,
    # --int64 to widen the text or the summary.
    if tokenizer is not None and not decode:
        raise click.UsageError(
            "--tokenizer decodes the rows with --decode: add --decode, or leave --tokenizer out"
        )
    if as_int64 and (decode or output is None):
        raise click.UsageError(
            "--int64 sets the dtype of the .npy that -o writes without --decode: "
            + ("it has no effect on text" if decode else "add -o ROWS.npy")
        )
    if preshuffled:
        _refuse_index_options(click.get_current_context())
    ds = open_rows(prefix, preshuffled, **index_opts)
    if (getattr(ds, "record", None) or {}).get("separate_last_epoch"):
        click.echo(
            "note: this index was built with --separate-last-epoch, Megatron-LM's order; "
            "GPT-NeoX v1.0 (and so Pythia) never used it",
            err=True,
        )
    steps = end_step - step + 1
    last_full = len(ds) // batch_size - 1
    if end_step > last_full:
        held = (
            f"steps 0..{last_full:,} of {batch_size} rows"
            if last_full >= 0
            else f"no full step of {batch_size} rows"
        )
        # Preshuffled rows have no index; and a default 1024 rows per step is easily missed
        # for a small export, where the rows per step are the option to change.
        where = "the preshuffled rows" if preshuffled else "the index"
        ctx = click.get_current_context()
        defaulted = all(
            ctx.get_parameter_source(name) == click.core.ParameterSource.DEFAULT
            for name in ("batch_size", "global_batch_size")
        )
        hint = "; set the rows per step with --batch-size" if defaulted else ""
        raise PythiaDataError(
            f"step {end_step} is beyond {where}: {len(ds):,} rows hold {held}{hint}"
        )
    iters = index_opts.get("train_iters")
    if (
        not preshuffled
        and index_opts.get("split") == "train"
        and index_opts.get("num_samples") is None
        and batch_size == index_opts.get("global_batch_size")
        and iters is not None
        and end_step >= iters
    ):
        # GPT-NeoX's index holds 0.5 % more rows than the run trains: these exist, silently,
        # but no step of a run of --train-iters steps (0..iters-1) trained on them.
        click.echo(
            f"note: a run of --train-iters {iters:,} trains steps 0..{iters - 1:,}: step "
            f"{max(step, iters):,}{'' if end_step == max(step, iters) else f'..{end_step:,}'} "
            "lies in the index's margin and was never trained",
            err=True,
        )
    split = index_opts.get("split")
    if (
        not preshuffled
        and split in ("valid", "test")
        and index_opts.get("num_samples") is None
        and batch_size == index_opts.get("global_batch_size")
    ):
        # As for train: the index holds more rows than GPT-NeoX's evaluation reads (with
        # --eval-iters 0, none at all), and batch showed those rows without a word.
        evals = split_iters(split, iters, index_opts["eval_interval"], index_opts["eval_iters"])
        if end_step >= evals:
            read = f"steps 0..{evals - 1:,}" if evals else "no step"
            first = max(step, evals)
            shown = f"{first:,}" if end_step == first else f"{first:,}..{end_step:,}"
            click.echo(
                f"note: a run with these options evaluates {read} of {split}: step {shown} "
                "lies beyond them and was never evaluated",
                err=True,
            )
    dtype = np.int64 if as_int64 else None
    if output is not None:
        _refuse_overwriting_sources(ds, [Path(output)], Path(output))
        prepare_output_folder(output)
    if decode:
        _decode(ds, step, end_step, batch_size, tokenizer, output, quiet)
        if output is not None:
            click.echo(
                f"wrote steps {step}..{end_step} ({steps * batch_size:,} rows) as text to {output}"
            )
        return
    if output is not None:
        _save(ds, step, end_step, batch_size, dtype, Path(output), stacked=stacked, quiet=quiet)
        click.echo(f"wrote steps {step}..{end_step} ({steps * batch_size:,} rows) to {output}")
        return
    for s in range(step, end_step + 1):
        rows = ds.batch(s, batch_size)
        total = int(rows.sum(dtype=np.int64))
        click.echo(
            f"step {s}: rows [{s * batch_size:,}, {(s + 1) * batch_size:,}), shape {rows.shape}, "
            f"token sum {total}, row 0 starts {rows[0, :8].tolist()}"
        )


#: The options that choose a raw dataset's index, which preshuffled data does not have.
_INDEX_ONLY = ("name", "train_iters", "num_samples", "seed", "cache_dir", "split", "weights")


def _refuse_index_options(ctx: click.Context) -> None:
    """Options given for an index that --preshuffled data has not: silently ignored, a --seed
    would seem to choose rows it does not."""
    given = [
        f"--{p.name.replace('_', '-')}"
        for p in ctx.command.params
        if (p.name in _INDEX_ONLY or p.name.startswith("eval_"))
        and ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE
    ]
    if given:
        raise click.UsageError(
            f"{', '.join(given)} choose{'s' if len(given) == 1 else ''} a raw dataset's index; "
            "--preshuffled data has none (item k is row k): leave "
            f"{'it' if len(given) == 1 else 'them'} out"
        )


def _save(ds, step, end_step, batch_size, dtype, path: Path, stacked: bool, quiet: bool) -> None:
    out_dtype = np.dtype(dtype) if dtype is not None else ds.dtype
    shape = (end_step - step + 1, batch_size, ds.seq_length + 1)
    if not stacked:
        shape = shape[1:]
    # Written with plain writes, step by step, not through a memory map of the whole array
    # (np.lib.format.open_memmap): a full disk is then an error, where storing into the map's
    # pages on a full file system killed the process with SIGBUS and left the temporary
    # behind. The header is the one np.save and open_memmap write.
    with _written_atomically(path) as tmp, open(tmp, "wb") as f:
        header = {"descr": np.lib.format.dtype_to_descr(out_dtype), "fortran_order": False}
        np.lib.format.write_array_header_1_0(f, {**header, "shape": shape})
        for s in progress_bar(
            iterable=range(step, end_step + 1), unit="step", disable=quiet or end_step == step
        ):
            f.write(np.ascontiguousarray(ds.batch(s, batch_size, dtype), out_dtype).data)
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def _written_atomically(path: Path):
    """The temporary to write ``path`` to, renamed into place when the block ends; removed,
    with errors naming ``path``, when it fails (what a killed run left goes first)."""
    _core.remove_stale_temps(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        raise output_error(e, path, tmp) from e
    finally:
        if tmp.exists():
            tmp.unlink()


def _decode(ds, step, end_step, batch_size, tokenizer_path, output, quiet: bool) -> None:
    try:
        from pythia_data.tokenizer import Tokenizer
    except ImportError as e:
        raise PythiaDataError(
            f"--decode needs pythia_data.tokenizer, which is unavailable: {e}"
        ) from e

    tok = Tokenizer.from_file(tokenizer_path)
    if output is None:

        def echo(text: str) -> None:
            click.echo(text, nl=False)

        # The text itself shows how far it got.
        _decode_steps(ds, step, end_step, batch_size, tok, echo, bar=False)
        return
    # Written step by step: a step of Pythia's shape is about 8 MB of text, so a range held
    # whole until the end took gigabytes and showed nothing until then.
    path = Path(output)
    # newline="": a decoded "\r" or "\n" is written as it is.
    with _written_atomically(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        bar = not quiet and end_step > step
        _decode_steps(ds, step, end_step, batch_size, tok, f.write, bar=bar)


def _decode_steps(ds, step, end_step, batch_size, tok, write, bar: bool) -> None:
    """Each step's rows as text, one `write` per step."""
    steps = range(step, end_step + 1)
    for s in progress_bar(iterable=steps, unit="step", disable=not bar):
        rows = ds.batch(s, batch_size, np.int64)
        # decode() skips ids outside the vocabulary, so text from another tokenizer's ids
        # (or int32 data's negatives) would come out silently shortened: refuse it instead.
        bad = (rows < 0) | (rows >= tok.vocab_size)
        if bad.any():
            i, j = (int(x) for x in np.argwhere(bad)[0])
            raise PythiaDataError(
                f"row {s * batch_size + i} (step {s}) holds token id {int(rows[i, j])}, outside "
                f"the tokenizer's vocabulary [0, {tok.vocab_size:,}): the dataset was not made "
                "with this tokenizer; give the one it was (--tokenizer)"
            )
        chunks = []
        for i, row in enumerate(rows):
            # Rows cross document boundaries: without the EOD token two documents ran together.
            text = tok.decode(row.tolist(), skip_special_tokens=False)
            chunks.append(f"=== step {s} row {s * batch_size + i} ===\n{text}\n")
        write("".join(chunks))
