"""Writing training rows in the layout of Pythia's released preshuffled datasets: an indexed
dataset whose item k is training row k (``seq_length + 1`` tokens), with no document ends
(doc_idx ``[0]`` alone, as in Pythia's ``document.idx``: 34 + 12 · rows + 8 bytes)."""

from __future__ import annotations

import os
from pathlib import Path

from pythia_data.dataset import RowDataset, _refuse_overwriting_sources
from pythia_data.errors import PythiaDataError
from pythia_data.indexed import IndexedDatasetBuilder
from pythia_data.progress import progress_bar

__all__ = ["export_preshuffled"]


def export_preshuffled(
    ds: RowDataset,
    output: str | os.PathLike,
    num_rows: int,
    *,
    chunk: int = 1024,
    progress: bool = False,
) -> Path:
    """Rows ``[0, num_rows)`` of ``ds`` to ``output.bin/.idx`` (written atomically)."""
    if num_rows < 1:
        # No command (nor PreshuffledDataset) can read a dataset without rows.
        raise PythiaDataError(f"asked for {num_rows} rows: a preshuffled dataset needs at least 1")
    if num_rows > len(ds):
        raise PythiaDataError(f"asked for {num_rows:,} rows but the index holds {len(ds):,}")
    out = Path(output)
    if out.suffix in (".bin", ".idx"):
        out = out.with_suffix("")
    _refuse_overwriting_sources(ds, [out.with_name(out.name + s) for s in (".bin", ".idx")], out)
    # Imported here: the cli package imports this module.
    from pythia_data.cli._stops import StopRequests

    b = IndexedDatasetBuilder(out, ds.dtype)
    try:
        with progress_bar(total=num_rows, unit="row", unit_scale=True, disable=not progress) as bar:
            for start in range(0, num_rows, chunk):
                rows = ds.rows(start, min(start + chunk, num_rows))
                for row in rows:
                    # Items, not documents: Pythia's document.idx records no document ends, and
                    # with one per row (8 bytes each) the .idx could never match its sha256.
                    b.add_item(row)
                bar.update(len(rows))
        # A stop while the output is synced and renamed into place (native code, which checks
        # for none) lets that step end: raised when it returned, it reported "no partial
        # output left behind", status 130, with the complete output in place. A second stop
        # is raised at once.
        with StopRequests():
            b.finish()
    except BaseException:
        b.abort()
        raise
    return out
