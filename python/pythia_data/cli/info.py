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
        q = np.percentile(sizes, [50, 99])
        out["sizes"] = {
            "min": int(sizes.min()),
            "mean": float(sizes.mean(dtype=np.float64)),
            "median": float(q[0]),
            "p99": float(q[1]),
            "max": int(sizes.max()),
            "empty_items": int(np.count_nonzero(sizes == 0)),
        }
    subsets = _read_subsets(ds.prefix, len(ds))
    if subsets is not None:
        codes, names = subsets
        counts = np.bincount(codes, minlength=len(names))
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
