"""`pythia-data info`: what an indexed dataset holds."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from pythia_data.dataset import _read_subsets
from pythia_data.index import find_one_dataset
from pythia_data.indexed import IndexedDataset


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


#: Items per chunk when the sizes and subset codes are scanned: numpy's whole-array
#: statistics (a sorted copy for the percentiles, a mask for the empty items, the codes
#: widened to int64 for their counts) held about 9 bytes per item at once, 1.9 GB for the
#: Pile's 210 M documents; in chunks the temporaries stay at a few MB whatever the size.
_CHUNK = 1 << 18
#: The item-size percentiles shown, as np.percentile takes them.
_PERCENTILES = (50, 99)


def _chunks(a: np.ndarray):
    for start in range(0, len(a), _CHUNK):
        yield a[start : start + _CHUNK]


def _sort_key(chunk: np.ndarray) -> np.ndarray:
    """int32 sizes as uint32 in the same order (the sign bit flipped)."""
    return chunk.view("<u4") ^ np.uint32(0x8000_0000)


def _size_stats(sizes: np.ndarray) -> dict:
    """The ``sizes`` figures of `describe`, equal to numpy's whole-array ones (the mean as
    ``sizes.mean(dtype=np.float64)``, the percentiles as ``np.percentile``'s default linear
    method), in two passes over ``sizes`` in chunks: the second reads, inside the one to
    four buckets of 65,536 values that hold the order statistics the percentiles need, how
    many items take each value."""
    n = len(sizes)
    low, high, total, empty = None, None, 0, 0
    buckets = np.zeros(1 << 16, dtype=np.int64)
    for chunk in _chunks(sizes):
        low = int(chunk.min()) if low is None else min(low, int(chunk.min()))
        high = int(chunk.max()) if high is None else max(high, int(chunk.max()))
        total += int(chunk.sum(dtype=np.int64))
        empty += int(np.count_nonzero(chunk == 0))
        buckets += np.bincount(_sort_key(chunk) >> 16, minlength=1 << 16)
    # np.percentile's linear method: the values at ranks floor(v) and floor(v) + 1 of the
    # sorted sizes (both the last when v reaches it), v = (n - 1) · q, interpolated as its
    # _lerp does, so that the figures are numpy's to the last bit.
    q = np.true_divide(_PERCENTILES, 100)
    virtual = (n - 1) * q
    before = np.floor(virtual)
    after = before + 1
    last = virtual >= n - 1
    before[last] = after[last] = -1
    before, after = before.astype(np.intp), after.astype(np.intp)
    gamma = virtual - before
    ranks = sorted({int(r) % n for r in (*before, *after)})
    ends = np.cumsum(buckets)
    where = {r: int(np.searchsorted(ends, r, side="right")) for r in ranks}
    counts = {b: np.zeros(1 << 16, dtype=np.int64) for b in set(where.values())}
    for chunk in _chunks(sizes):
        key = _sort_key(chunk)
        top = key >> 16
        for b, c in counts.items():
            inside = key[top == b]
            if len(inside):
                c += np.bincount(inside & 0xFFFF, minlength=1 << 16)
    value = {}
    for r, b in where.items():
        within = r - (int(ends[b - 1]) if b else 0)
        v = int(np.searchsorted(np.cumsum(counts[b]), within, side="right"))
        value[r] = ((b << 16) | v) - 0x8000_0000
    a = np.array([value[int(r) % n] for r in before], dtype=sizes.dtype)
    b = np.array([value[int(r) % n] for r in after], dtype=sizes.dtype)
    diff = b - a
    quantiles = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=quantiles, where=gamma >= 0.5, casting="unsafe")
    return {
        "min": low,
        # numpy's float64 sum of integer sizes is exact (below 2^53), then divided by n.
        "mean": float(np.float64(total) / n),
        "median": float(quantiles[0]),
        "p99": float(quantiles[1]),
        "max": high,
        "empty_items": empty,
    }


def _subset_counts(codes: np.ndarray, num_names: int) -> np.ndarray:
    """``np.bincount(codes, minlength=num_names)``, a chunk at a time."""
    counts = np.zeros(num_names, dtype=np.int64)
    for chunk in _chunks(codes):
        c = np.bincount(chunk, minlength=num_names)
        if len(c) > len(counts):
            counts = np.concatenate([counts, np.zeros(len(c) - len(counts), dtype=np.int64)])
        counts[: len(c)] += c
    return counts


def describe(ds: IndexedDataset) -> dict:
    """Everything `info` prints, as plain data (also the `--json` output). Every key is always
    there, so that scripts reading many datasets' JSON need no case for any: ``sizes`` is None
    for a dataset of no items, ``subsets`` None when no subset labels were recorded."""
    sizes = ds.sizes
    bin_sizes = [p.stat().st_size for p in ds.bin_paths]
    out: dict = {
        "prefix": str(ds.prefix),
        "dtype": ds.dtype.name,
        "items": len(ds),
        "documents": ds.num_documents,
        "tokens": ds.total_tokens,
        "idx_file": str(ds.idx_path),
        "idx_bytes": ds.idx_path.stat().st_size,
        "bin_files": [str(p) for p in ds.bin_paths],
        "bin_bytes": int(sum(bin_sizes)),
        "shards": len(ds.bin_paths) if ds.is_sharded else 0,
        "sizes": None,
        "subsets": None,
    }
    if len(sizes):
        out["sizes"] = _size_stats(sizes)
    subsets = _read_subsets(ds.prefix, len(ds))
    if subsets is not None:
        codes, names = subsets
        counts = _subset_counts(codes, len(names))
        # A code without a name is shown as such rather than dropped from the counts.
        labels = names + [f"<code {i}>" for i in range(len(names), len(counts))]
        out["subsets"] = {
            name: int(c) for name, c in zip(labels, counts, strict=True) if c or name in names
        }
    return out


@click.command("info")
@click.argument("prefix", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
def command(prefix: Path, as_json: bool) -> None:
    """Show what the indexed dataset PREFIX holds (PREFIX.idx + PREFIX.bin or its shards;
    PREFIX may be a directory holding exactly one dataset).

    Items, documents, tokens, dtype, item-size statistics, the files (and shards) it is read
    from, and the documents per Pile subset when the tokenizer recorded them. Opening the
    dataset validates its structure, so a corrupt file is reported here.
    """
    ds = IndexedDataset(find_one_dataset(prefix))
    d = describe(ds)
    _note_half_subsets(ds.prefix)
    if as_json:
        click.echo(json.dumps(d, indent=1))
        return
    rows = [
        ("dataset", d["prefix"]),
        ("dtype", d["dtype"]),
        ("items", f"{d['items']:,}"),
        (
            "documents",
            # Pythia's preshuffled document.idx records no document ends (doc_idx [0]): "0"
            # alone read as a dataset of no documents.
            "none recorded (doc_idx [0] alone, as in Pythia's preshuffled data)"
            if d["documents"] == 0 and d["items"] > 0
            else f"{d['documents']:,}",
        ),
        ("tokens", f"{d['tokens']:,}"),
        ("index", f"{d['idx_file']} ({_human_bytes(d['idx_bytes'])})"),
    ]
    if d["shards"]:
        rows.append(
            (
                "tokens in",
                f"{d['shards']} shards, {_human_bytes(d['bin_bytes'])}: "
                f"{Path(d['bin_files'][0]).name} ... {Path(d['bin_files'][-1]).name}",
            )
        )
    else:
        rows.append(("tokens in", f"{d['bin_files'][0]} ({_human_bytes(d['bin_bytes'])})"))
    if d["sizes"] is not None:
        s = d["sizes"]
        rows.append(
            (
                "item sizes",
                f"min {s['min']:,}  mean {s['mean']:,.1f}  median {s['median']:,.0f}  "
                f"p99 {s['p99']:,.0f}  max {s['max']:,}  (empty: {s['empty_items']:,})",
            )
        )
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        click.echo(f"{k:<{width}}  {v}")
    if d.get("subsets"):  # a dataset of no documents has labels, but nothing to list
        click.echo("documents per subset:")
        for name, count in sorted(d["subsets"].items(), key=lambda kv: -kv[1]):
            # Documents whose subset was missing or not a string were recorded under "".
            click.echo(f"  {count:>12,}  {name or '(no subset recorded)'}")


def _note_half_subsets(prefix: Path) -> None:
    """The subset labels are two files; with one of them gone there are none to show, which
    without a word read as a dataset tokenized without them (`verify` calls it an error)."""
    there = [Path(f"{prefix}.subsets.{ext}").exists() for ext in ("npy", "json")]
    if any(there) and not all(there):
        have, lack = ("npy", "json") if there[0] else ("json", "npy")
        click.echo(
            f"note: {prefix}.subsets.{have} is here without {prefix}.subsets.{lack}, so no "
            f"subsets are shown: restore the missing file, or remove {prefix}.subsets.{have}",
            err=True,
        )
