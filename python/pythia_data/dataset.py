"""Pythia's training rows in GPT-NeoX's exact order.

``GPTDataset`` reads a raw indexed dataset through GPT-NeoX's index files (item k = the
``seq_length + 1`` tokens GPT-NeoX's ``GPT2Dataset[k]`` returns); ``PreshuffledDataset`` reads
Pythia's released preshuffled data, where item k is already training row k; ``BlendedDataset``
is GPT-NeoX's ``BlendableDataset``. All share the step arithmetic of shared/spec/data-pipeline.md
§4: step s trains on rows ``[batch_size·s, batch_size·s + batch_size)``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import operator
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pythia_data import _core
from pythia_data.errors import PythiaDataError
from pythia_data.index import (
    PYTHIA,
    BlendInfo,
    IndexInfo,
    index_paths,
    missing_index_message,
    num_samples_for,
)
from pythia_data.indexed import IndexedDataset, _integer

__all__ = [
    "GPTDataset",
    "PreshuffledDataset",
    "BlendedDataset",
    "RowDataset",
    "micro_batch_rows",
    "gradient_accumulation_steps",
]

PathLike = str | os.PathLike


class RowDataset:
    """Step arithmetic shared by every dataset of fixed-length training rows.

    Subclasses provide ``__len__``, ``seq_length``, ``dtype`` and ``rows(start, stop)``.
    """

    seq_length: int

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def rows(self, start: int, stop: int, dtype=None, out=None) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _check_range(self, start: int, stop: int) -> tuple[int, int]:
        # int() read 0.5 as row 0, where row() and batch() refuse floats.
        start, stop = self._integer(start, "start"), self._integer(stop, "stop")
        n = len(self)
        if not 0 <= start <= stop:
            raise IndexError(f"bad row range [{start}, {stop})")
        if stop > n:
            # Only a dataset that knows its global batch size can count steps.
            gbs = getattr(self, "global_batch_size", None)
            steps = "" if gbs is None else f" ({_full_steps(n, gbs)})"
            raise IndexError(
                f"rows [{start}, {stop}) go beyond the index, which has {n:,} rows{steps}"
            )
        return start, stop

    def _row_dtype(self, dtype) -> np.dtype | None:
        """``dtype`` checked to hold every token of the dataset's dtype (None stays None: the
        dataset's own). A narrower one wrapped ids silently: uint16's 50,000 read as int16's
        -15,536, and a loader fed the model those ids."""
        if dtype is None:
            return None
        dtype = np.dtype(dtype)
        have = np.dtype(self.dtype)
        if not np.can_cast(have, dtype, "safe"):
            raise PythiaDataError(
                f"dtype {dtype.name} cannot hold every {have.name} token of this dataset "
                f"(ids would wrap or round): ask for {have.name}, np.int64, or another that holds it"
            )
        return dtype

    def _row_index(self, k) -> int:
        """Row ``k`` (negative counts from the end) as an index in [0, len): IndexError when out
        of range, TypeError when not an integer (floats, bools and strings are not rows)."""
        if isinstance(k, bool | np.bool_):
            raise TypeError(f"row indices must be integers, not {type(k).__name__}")
        try:
            k = operator.index(k)
        except TypeError:
            raise TypeError(f"row indices must be integers, not {type(k).__name__}") from None
        n = len(self)
        j = k + n if k < 0 else k
        if not 0 <= j < n:
            raise IndexError(f"row {k} is out of range for {n:,} rows")
        return j

    def row(self, k: int, dtype=None) -> np.ndarray:
        """Row k (seq_length + 1 tokens), in the dataset's dtype or ``dtype`` (e.g. np.int64)."""
        k = self._row_index(k)
        return self.rows(k, k + 1, dtype)[0]

    def __getitem__(self, key: int | slice) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                picks = range(start, stop, step)
                if not picks:  # np.stack needs at least one row; rows(0, 0) has the dtype
                    return self.rows(0, 0)
                return np.stack([self[i] for i in picks])
            return self.rows(start, max(start, stop))
        return self.row(key)

    _integer = staticmethod(_integer)

    def _check_steps(self, first: int, last: int, batch_size: int) -> None:
        if batch_size < 1:
            raise PythiaDataError(f"batch_size must be at least 1, not {batch_size}")
        if first < 0:
            raise IndexError(f"step {first} is negative")
        if (last + 1) * batch_size > len(self):
            n = len(self)
            last_full = (
                f"the last full step is {n // batch_size - 1:,}"
                if n >= batch_size
                else f"it holds no full step of {batch_size}"
            )
            raise IndexError(
                f"step {last} needs rows [{last * batch_size:,}, {(last + 1) * batch_size:,}) but "
                f"the index has {n:,} rows: {last_full}"
            )

    def _batch_size(self, batch_size: int | None) -> int:
        """``batch_size``, or by default the dataset's ``global_batch_size`` (Pythia's 1024 for
        a dataset that has none)."""
        if batch_size is None:
            return int(getattr(self, "global_batch_size", PYTHIA["global_batch_size"]))
        batch_size = self._integer(batch_size, "batch_size")
        if batch_size < 1:  # checkpoint_rows gave range(0, 0) for 0, range(0, -4) for -4
            raise PythiaDataError(f"batch_size must be at least 1, not {batch_size}")
        return batch_size

    def batch(self, step: int, batch_size: int | None = None, dtype=None, out=None) -> np.ndarray:
        """The (batch_size, seq_length + 1) rows optimizer step ``step`` trained on (into
        ``out`` when given); ``batch_size`` defaults to the dataset's global batch size."""
        step, batch_size = self._integer(step, "step"), self._batch_size(batch_size)
        self._check_steps(step, step, batch_size)
        return self.rows(step * batch_size, (step + 1) * batch_size, dtype, out)

    def batches(
        self,
        start_step: int,
        end_step: int,
        batch_size: int | None = None,
        dtype=None,
    ) -> np.ndarray:
        """Steps ``start_step..=end_step`` (inclusive), shape (steps, batch_size, seq_length + 1)."""
        batch_size = self._batch_size(batch_size)
        start_step = self._integer(start_step, "start_step")
        end_step = self._integer(end_step, "end_step")
        if end_step < start_step:
            raise IndexError(f"end step {end_step} is before start step {start_step}")
        self._check_steps(start_step, end_step, batch_size)
        rows = self.rows(start_step * batch_size, (end_step + 1) * batch_size, dtype)
        return rows.reshape(end_step - start_step + 1, batch_size, self.seq_length + 1)

    def checkpoint_rows(self, checkpoint_step: int, batch_size: int | None = None) -> range:
        """Rows checkpoint ``stepN`` has been trained on: ``[0, batch_size·N)`` (step0: none)."""
        checkpoint_step = self._integer(checkpoint_step, "checkpoint_step")
        batch_size = self._batch_size(batch_size)
        if checkpoint_step < 0:  # an empty range would pass for step0
            raise IndexError(f"checkpoint step {checkpoint_step} is negative")
        # stepN is saved after N full steps, so N = the number of full steps is the last one
        # the index holds (its rows are all there); beyond it the range named rows that are not.
        n = len(self)
        if checkpoint_step * batch_size > n:
            raise IndexError(
                f"checkpoint step {checkpoint_step} would have trained on rows "
                f"[0, {checkpoint_step * batch_size:,}), but the index has {n:,} rows: the last "
                f"checkpoint step it holds is {n // batch_size:,} (steps of {batch_size})"
            )
        return range(0, checkpoint_step * batch_size)

    def data_parallel_rows(
        self,
        step: int,
        rank: int,
        world_size: int,
        micro_batch_size: int,
        batch_size: int | None = None,
        dtype=None,
    ) -> np.ndarray:
        """The rows data-parallel ``rank`` of ``world_size`` trains on at ``step``, shaped
        (gradient_accumulation_steps, micro_batch_size, seq_length + 1); see
        ``micro_batch_rows``."""
        batch_size = self._batch_size(batch_size)
        rank = self._integer(rank, "rank")
        world_size = self._integer(world_size, "world_size")
        micro_batch_size = self._integer(micro_batch_size, "micro_batch_size")
        gas = gradient_accumulation_steps(batch_size, world_size, micro_batch_size)
        if not 0 <= rank < world_size:
            raise PythiaDataError(f"rank {rank} is outside [0, {world_size})")
        step = self._integer(step, "step")
        self._check_steps(step, step, batch_size)
        first = self.rows(0, 0, dtype)  # for the output dtype only
        out = np.empty((gas, micro_batch_size, self.seq_length + 1), dtype=first.dtype)
        for m in range(gas):
            r = micro_batch_rows(step, m, rank, world_size, micro_batch_size, batch_size)
            out[m] = self.rows(r.start, r.stop, dtype)
        return out


def _full_steps(n: int, batch_size: int) -> str:
    """How many full steps of ``batch_size`` rows ``n`` rows hold, in words."""
    if n < batch_size:
        return f"no full step of {batch_size}"
    return f"{n // batch_size:,} full steps of {batch_size}"


def _source_files(ds: RowDataset) -> list[Path]:
    """Every file the rows of ``ds`` are read from or described by: ``.bin`` (or shards),
    ``.idx``, the subsets files, the index and its record."""
    if hasattr(ds, "datasets"):  # BlendedDataset
        return [f for d in ds.datasets for f in _source_files(d)]
    indexed = getattr(ds, "indexed", None)
    files = []
    if indexed is not None:
        prefix = os.fspath(indexed.prefix)
        subsets = [Path(f"{prefix}.subsets.npy"), Path(f"{prefix}.subsets.json")]
        files = [*indexed.bin_paths, indexed.idx_path, *subsets]
    paths = [Path(p) for p in getattr(ds, "paths", ())]
    records = [p.with_name(p.name.replace("_doc_idx.npy", "_meta.json")) for p in paths[:1]]
    return files + paths + [r for r in records if r.name.endswith("_meta.json")]


def _refuse_overwriting_sources(ds: RowDataset, outputs: Sequence[Path], name: Path) -> None:
    """Raise if writing ``outputs`` would replace a file the rows of ``ds`` are read from."""
    targets = {Path(p).resolve() for p in outputs}
    for f in _source_files(ds):
        if f.resolve() in targets:
            raise PythiaDataError(
                f"the output {name} would overwrite {f}, which the rows are read from: "
                "choose another output"
            )


def micro_batch_rows(
    step: int,
    micro_step: int,
    rank: int,
    world_size: int,
    micro_batch_size: int,
    batch_size: int = PYTHIA["global_batch_size"],
) -> range:
    """Rows of micro-step ``micro_step`` of data-parallel ``rank`` at optimizer ``step``.

    GPT-NeoX v1.0's DistributedBatchSampler walks the rows in chunks of
    ``micro_batch_size · world_size``; rank r takes the r-th contiguous slice of each chunk, and
    gradient accumulation takes consecutive chunks. So step s still covers rows
    ``[s·batch_size, (s+1)·batch_size)`` whatever the layout, and with one micro-step per step
    rank r's rows are the contiguous ``[r·b, (r+1)·b)`` of the global batch.
    """
    gas = gradient_accumulation_steps(batch_size, world_size, micro_batch_size)
    step, micro_step, rank = (
        _integer(step, "step"),
        _integer(micro_step, "micro_step"),
        _integer(rank, "rank"),
    )
    if step < 0:  # gave a range of negative rows, which count from the end where read
        raise PythiaDataError(f"step {step} is negative")
    if not 0 <= rank < world_size:
        raise PythiaDataError(f"rank {rank} is outside [0, {world_size})")
    if not 0 <= micro_step < gas:
        raise PythiaDataError(f"micro-step {micro_step} is outside the step's {gas} micro-steps")
    start = step * batch_size + (micro_step * world_size + rank) * micro_batch_size
    return range(start, start + micro_batch_size)


def gradient_accumulation_steps(batch_size: int, world_size: int, micro_batch_size: int) -> int:
    """Micro-steps per optimizer step: ``batch_size / (world_size · micro_batch_size)``."""
    # 0 and negative batches passed (0 and -2 micro-steps), and floats gave a float count.
    batch_size, world_size, micro_batch_size = (
        _integer(batch_size, "batch_size"),
        _integer(world_size, "world_size"),
        _integer(micro_batch_size, "micro_batch_size"),
    )
    if batch_size < 1:
        raise PythiaDataError(f"batch_size must be at least 1, not {batch_size}")
    if world_size < 1 or micro_batch_size < 1 or batch_size % (world_size * micro_batch_size):
        raise PythiaDataError(
            f"global batch {batch_size} is not a multiple of micro_batch_size {micro_batch_size} "
            f"× world_size {world_size}"
        )
    return batch_size // (world_size * micro_batch_size)


def _read_subsets(prefix: Path, num_items: int) -> tuple[np.ndarray, list[str]] | None:
    """The per-item subset codes and their names (``PREFIX.subsets.{npy,json}``), checked
    against the dataset's ``num_items``; None when the files are absent."""
    codes_path = prefix.with_name(prefix.name + ".subsets.npy")
    names_path = prefix.with_name(prefix.name + ".subsets.json")
    if not (codes_path.exists() and names_path.exists()):
        return None
    for path in (codes_path, names_path):
        if not path.is_file():  # a FIFO would block the read until some writer came
            what = (
                "a directory" if path.is_dir() else "not a regular file (a FIFO, socket or device)"
            )
            raise PythiaDataError(f"{path}: {what}, where a data file belongs")
    try:
        table = json.loads(names_path.read_bytes())
        with open(codes_path, "rb") as f:
            magic = f.read(6)
        codes = np.load(codes_path, mmap_mode="r") if magic == b"\x93NUMPY" else None
    except OSError as e:  # the file named, in the system's words
        raise type(e)(f"{e.filename}: {e.strerror}") from e
    except RecursionError as e:  # json's parser gives up on very deep nesting
        raise PythiaDataError(f"{names_path}: not valid JSON (nested too deeply)") from e
    except ValueError as e:
        # Whichever of the two is damaged is named, as the engine's merge names it. numpy's
        # own words are no help here (a cut file "has mmap length greater than file size").
        if isinstance(e, json.JSONDecodeError):
            raise PythiaDataError(f"{names_path}: not valid JSON ({e})") from e
        raise PythiaDataError(
            f"{codes_path}: truncated or damaged .npy file (its header promises more data "
            "than the file holds, or cannot be read)"
        ) from e
    if codes is None:
        raise PythiaDataError(f"{codes_path}: not a .npy file")
    names = table.get("names") if isinstance(table, dict) else None
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise PythiaDataError(f"{names_path}: 'names' must be a list of strings")
    if codes.ndim != 1 or codes.dtype.kind not in "ui" or len(codes) != num_items:
        raise PythiaDataError(
            f"{codes_path}: holds {codes.dtype} of shape {codes.shape}, but the dataset has "
            f"{num_items:,} items, one integer code each: it belongs to other data or is damaged"
        )
    # Read as indices into names: -1 would name the last subset.
    if codes.dtype.kind == "i" and len(codes) and int(codes.min()) < 0:
        raise PythiaDataError(
            f"{codes_path}: negative subset codes: damaged, or not a subsets file"
        )
    return codes, names


#: Descriptors of the folder locks held now. A process forked meanwhile (a DataLoader worker
#: started from another thread) would share each lock, and hold it for as long as it lives,
#: blocking every later build: the child closes its copies at once.
_HELD_LOCKS: set[int] = set()


def _close_held_locks() -> None:
    for fd in _HELD_LOCKS:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD_LOCKS.clear()


os.register_at_fork(after_in_child=_close_held_locks)


@contextlib.contextmanager
def _shared_folder_lock(folder: Path):
    """A shared lock on ``folder`` (the one `build-index` takes exclusively while it puts an
    index in place); none where the folder cannot be opened to lock."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        yield
        return
    _HELD_LOCKS.add(fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        _HELD_LOCKS.discard(fd)
        os.close(fd)  # closing lets go of the lock


def _stamps(paths) -> tuple:
    """What identifies the index files opened: a rebuilt index has new files (renamed in)."""
    return tuple((st.st_ino, st.st_size, st.st_mtime_ns) for st in map(os.stat, paths))


class GPTDataset(RowDataset):
    """GPT-NeoX v1.0's ``GPT2Dataset`` over a raw indexed dataset and its index files.

    ``GPTDataset(prefix)`` opens the index GPT-NeoX (or ``pythia-data build-index``) wrote for
    Pythia's parameters; pass ``build=True`` to build it when missing. Rows come back in the
    dataset's dtype (uint16 for the Pile) unless ``dtype=np.int64`` is asked for.

    ``num_samples`` defaults to what GPT-NeoX requests for ``train_iters`` steps of
    ``global_batch_size``: the training split's count, whatever ``name``. An index of the valid
    or test split (``build-index --split valid``) was built for its own count, so open it with
    ``name="valid_0", num_samples=pythia_data.index.split_num_samples("valid", train_iters,
    global_batch_size, eval_interval, eval_iters)``.

    ``documents`` (start, stop) indexes only those documents when ``build`` builds the index,
    as GPT-NeoX does for one range of a ``data-path`` cut by its ``split``
    (``pythia_data.index.train_valid_test_split``); an existing index is checked against the
    range it was built for.
    """

    def __init__(
        self,
        prefix: PathLike,
        *,
        name: str = "train_0",
        num_samples: int | None = None,
        train_iters: int = PYTHIA["train_iters"],
        global_batch_size: int = PYTHIA["global_batch_size"],
        seq_length: int = PYTHIA["seq_length"],
        seed: int = PYTHIA["seed"],
        cache_dir: PathLike | None = None,
        build: bool = False,
        paths: tuple[PathLike, PathLike, PathLike] | None = None,
        documents: tuple[int, int] | None = None,
    ):
        # int() read 4.7 as 4 and True as 1, where batch(batch_size=4.0) is refused.
        global_batch_size = _integer(global_batch_size, "global_batch_size")
        if global_batch_size < 1:
            raise PythiaDataError(f"global_batch_size must be at least 1, not {global_batch_size}")
        self.indexed = prefix if isinstance(prefix, IndexedDataset) else IndexedDataset(prefix)
        self.prefix = self.indexed.prefix
        if num_samples is None:
            num_samples = num_samples_for(train_iters, global_batch_size)
        self.info: IndexInfo | None = None
        by_parameters = paths is None
        if paths is None:
            if build:
                from pythia_data.index import build_index

                self.info = build_index(
                    self.prefix,
                    name=name,
                    num_samples=num_samples,
                    seq_length=seq_length,
                    seed=seed,
                    documents=documents,
                    cache_dir=cache_dir,
                )
            paths = index_paths(self.prefix, name, num_samples, seq_length, seed, cache_dir)
        self.paths = tuple(Path(p) for p in paths)
        missing = next((p for p in self.paths if not p.exists()), None)
        if by_parameters and missing is not None:
            # Said only "not found": which built index differs, and in what, is the useful part.
            asked = dict(name=name, num_samples=num_samples, seq_length=seq_length, seed=seed)
            raise FileNotFoundError(
                missing_index_message(missing, self.prefix, asked, cache_dir, len(self.indexed))
            )
        self._abs_paths = tuple(Path(os.path.abspath(p)) for p in self.paths)  # for pickling
        # Under the folder's lock, which a build holds while putting its files in place: the
        # record and the three arrays are then all of one build.
        with _shared_folder_lock(self.paths[0].parent):
            #: The record our build leaves beside the index (None for GPT-NeoX's own caches).
            self.record: dict | None = self._check_record(int(seq_length), by_parameters, documents)
            self._core = _core.GptDataset(self.indexed._core, *self.paths, int(seq_length))
            # After the arrays' own checks, whose errors (a truncated file) say more.
            self._check_digests()
            self._stamps = _stamps(self.paths)
        self.seq_length = int(seq_length)
        #: The default batch size of batch(), batches(), checkpoint_rows() and
        #: data_parallel_rows(), and what error messages count steps in.
        self.global_batch_size = global_batch_size
        self.dtype = self.indexed.dtype
        self._subsets = _read_subsets(self.prefix, len(self.indexed))

    def _check_record(
        self, seq_length: int, by_parameters: bool, documents: tuple[int, int] | None = None
    ) -> dict | None:
        """Our build leaves a record beside the index; an index of other data is refused here
        rather than read as silent garbage (GPT-NeoX's own caches have no record), as
        `build-index` would refuse it."""
        doc_idx = self.paths[0]
        record = doc_idx.with_name(doc_idx.name.replace("_doc_idx.npy", "_meta.json"))
        if not record.name.endswith("_meta.json") or not record.exists():
            return None
        # --overwrite would destroy the index of another dataset of the same file name that
        # shares the cache folder.
        rebuild = (
            "rebuild it with `pythia-data build-index ... --overwrite`, or, if it belongs to "
            "another dataset of the same file name (one --cache-dir for both), give each its "
            "own --cache-dir"
        )
        try:
            meta = json.loads(record.read_text())
            building = isinstance(meta, dict) and meta.get("building")
            if not building:
                start, stop = (int(x) for x in meta["documents"])
                tokens, meta_seq = int(meta["tokens_per_epoch"]), int(meta["seq_length"])
        except (ValueError, KeyError, TypeError) as e:
            raise PythiaDataError(f"{record}: unreadable index record ({e!r})") from e
        if building:
            raise PythiaDataError(
                f"{record}: a build of this index stopped while putting its files in place, so "
                "they may come from two builds; rebuild it with `pythia-data build-index`"
            )
        if documents is not None and (start, stop) != tuple(int(d) for d in documents):
            raise PythiaDataError(
                f"{record}: this index was built for documents [{start}, {stop}), not the "
                f"[{documents[0]}, {documents[1]}) asked for; {rebuild}"
            )
        n = len(self.indexed)
        if stop > n:
            raise PythiaDataError(
                f"{record}: this index was built for documents [{start}, {stop}), but "
                f"{self.prefix} holds only {n:,}: built from other data; {rebuild}"
            )
        have = int(self.indexed.sizes[start:stop].sum(dtype=np.int64))
        if have != tokens or meta_seq != seq_length:
            raise PythiaDataError(
                f"{record}: this index was built for documents [{start}, {stop}) holding "
                f"{tokens:,} tokens at seq_length {meta_seq}, but {self.prefix} holds {have:,} "
                f"tokens there and seq_length {seq_length} was asked: built from other data or "
                f"parameters; {rebuild}"
            )
        items = meta.get("items")
        if items is not None and items != n:
            raise PythiaDataError(
                f"{record}: this index was built when {self.prefix} held {items:,} documents; "
                f"it now holds {n:,}: built for other data; {rebuild}"
            )
        if items is None and by_parameters and start == 0 and stop < n:
            # An earlier version's record, without the item count: a range from the first
            # document that stops short is most likely all the documents there were then.
            raise PythiaDataError(
                f"{record}: this index was built for documents [0, {stop}), but {self.prefix} "
                f"now holds {n:,} (the record, from an earlier version, does not say whether "
                f"that was all of them): rebuild it with `pythia-data build-index ... --overwrite`, "
                "or, if the range was meant, open it with "
                "GPTDataset(..., paths=...)"
            )
        recorded = meta.get("sizes_fnv1a")
        if recorded is not None and recorded != _core.sizes_fnv1a(
            self.indexed.idx_path, start, stop
        ):
            raise PythiaDataError(
                f"{record}: the document sizes of {self.prefix} differ from those this index "
                f"was built for (same count and tokens, other documents); {rebuild}"
            )
        return meta

    def _check_digests(self) -> None:
        """An array copied in from another build of the same shape (a shuffle_idx of another
        seed) passes every check of the record, and its rows would be read as the record's.
        The build records a digest of sampled blocks of each array (a few dozen reads, whatever
        its size); records written before that have none and are taken as they are."""
        digests = self.record.get("sampled_sha256") if self.record is not None else None
        if not isinstance(digests, dict):
            return
        record = self.paths[0].with_name(self.paths[0].name.replace("_doc_idx.npy", "_meta.json"))
        for kind, path in zip(("doc_idx", "sample_idx", "shuffle_idx"), self.paths, strict=True):
            want = digests.get(kind)
            if want is not None and _core.sampled_digest(path) != want:
                raise PythiaDataError(
                    f"{path}: not the array the build recorded in {record} wrote (its sampled "
                    "digest differs): it was replaced, e.g. by a copy from another build of the "
                    "same shape; rebuild the index with `pythia-data build-index ... "
                    "--overwrite`, or put back the file that build wrote"
                )

    def __len__(self) -> int:
        return len(self._core)

    def __reduce__(self):
        # Reopened from the same files in the receiving process (see IndexedDataset.__reduce__).
        return (
            _reopen_gpt_dataset,
            (self.indexed, self._abs_paths, self.seq_length, self.global_batch_size, self._stamps),
        )

    def __repr__(self) -> str:
        return f"GPTDataset({str(self.prefix)!r}, rows={len(self):,}, seq_length={self.seq_length})"

    def rows(
        self,
        start: int,
        stop: int,
        dtype: np.dtype | type | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Rows ``[start, stop)`` as a (n, seq_length + 1) array, assembled on all cores: new, or
        written into ``out`` (C-contiguous, the dataset's dtype or int64) to reuse a buffer."""
        start, stop = self._check_range(start, stop)
        if out is not None:
            self._core.rows_into(start, stop, out)
            return out
        dtype = self._row_dtype(dtype)
        int64 = dtype is not None and dtype == np.int64
        if dtype is not None and not int64 and dtype != self.dtype:
            return self._core.rows(start, stop, False).astype(dtype)
        return self._core.rows(start, stop, int64)

    def provenance(self, k: int) -> list[dict]:
        """Where row k comes from: ``[{document, offset, length[, subset]}, ...]`` in order.

        ``document`` is the item of the indexed dataset (one per document for the Pile);
        ``subset`` (its Pile subset) appears when the tokenizer saved ``PREFIX.subsets.*``.
        """
        k = self._row_index(k)  # IndexError / TypeError exactly as row() raises them
        spans = [{"document": d, "offset": o, "length": n} for d, o, n in self._core.provenance(k)]
        if self._subsets is not None:
            codes, names = self._subsets
            for s in spans:
                code = int(codes[s["document"]])
                s["subset"] = names[code] if code < len(names) else f"<code {code}>"
        return spans


def _reopen_gpt_dataset(
    indexed: IndexedDataset,
    paths,
    seq_length: int,
    global_batch_size: int = PYTHIA["global_batch_size"],
    stamps: tuple | None = None,
) -> GPTDataset:
    ds = GPTDataset(
        indexed, seq_length=seq_length, paths=paths, global_batch_size=global_batch_size
    )
    # A spawned DataLoader worker reopens the files by name: an index rebuilt since the dataset
    # was opened would give other rows, silently.
    if stamps is not None and ds._stamps != stamps:
        raise PythiaDataError(
            f"{ds.paths[0].parent}: the index was rebuilt after this dataset was opened, so a "
            "process reopening it would read other rows; open the dataset again"
        )
    return ds


class PreshuffledDataset(RowDataset):
    """Pythia's released preshuffled data: item k of the indexed dataset is training row k,
    ``seq_length + 1`` tokens long. Rows are read in place (a zero-copy view when possible)."""

    def __init__(self, prefix: PathLike, seq_length: int | None = None):
        """``seq_length`` defaults to the item size minus one (2048 for Pythia's release)."""
        self.indexed = prefix if isinstance(prefix, IndexedDataset) else IndexedDataset(prefix)
        self.prefix = self.indexed.prefix
        self.dtype = self.indexed.dtype
        sizes = self.indexed.sizes
        if len(sizes) == 0:
            raise PythiaDataError(f"{self.prefix}.idx: the dataset has no items, so no rows")
        self.seq_length = int(sizes[0]) - 1 if seq_length is None else int(seq_length)
        if self.seq_length < 1:
            raise PythiaDataError(
                f"{self.prefix}.idx: rows of seq_length {self.seq_length} "
                f"({self.seq_length + 1} tokens) are impossible: a preshuffled dataset's items "
                "are rows of seq_length + 1 >= 2 tokens"
            )
        bad = np.flatnonzero(sizes != self.seq_length + 1)
        if bad.size:
            raise PythiaDataError(
                f"{self.prefix}.idx: item {int(bad[0])} has {int(sizes[bad[0]])} tokens, but every "
                f"item of a preshuffled dataset is one row of seq_length + 1 = {self.seq_length + 1}"
                + (
                    f"; all its items have {int(sizes[0])}: give seq_length {int(sizes[0]) - 1}, "
                    "or leave it out"
                    if seq_length is not None and bad[0] == 0 and np.all(sizes == sizes[0])
                    else ""
                )
            )

    def __len__(self) -> int:
        return len(self.indexed)

    def __reduce__(self):
        return (PreshuffledDataset, (self.indexed, self.seq_length))

    def __repr__(self) -> str:
        return f"PreshuffledDataset({str(self.prefix)!r}, rows={len(self):,})"

    def rows(
        self,
        start: int,
        stop: int,
        dtype: np.dtype | type | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Rows ``[start, stop)``: a read-only view of the ``.bin`` (a copy when ``dtype`` or
        ``out`` is given)."""
        start, stop = self._check_range(start, stop)
        dtype = self._row_dtype(dtype)
        view = self.indexed.items(start, stop).reshape(stop - start, self.seq_length + 1)
        if out is not None:
            # Named as for dtype= (numpy's own words were "Cannot cast array data ...").
            self._row_dtype(out.dtype)
            np.copyto(out, view, casting="safe")
            return out
        return view if dtype is None else view.astype(dtype)


def _reopen_blend(datasets: list[RowDataset], weights: list[float]) -> BlendedDataset:
    """An unpickled ``BlendedDataset``: the same weights give the same blend, bit for bit."""
    return BlendedDataset._normalized(datasets, weights)


class BlendedDataset(RowDataset):
    """GPT-NeoX's ``BlendableDataset``: position s takes the next row of the dataset whose
    weight most exceeds its share so far (ties to the lowest index).

    ``weights`` are the blend's weights as a GPT-NeoX config gives them (``train_data_weights``,
    e.g. ``[1, 4, 1]``): GPT-NeoX normalises them twice, once in Python
    (``get_normalized_weights_and_num_samples``) and again in numpy inside BlendableDataset,
    and so does this class; the last bits of the two differ, and so can the order."""

    def __init__(self, datasets: Sequence[RowDataset], weights: Sequence[float]):
        if len(datasets) != len(weights) or not datasets:
            raise PythiaDataError("give one weight per dataset (and at least one dataset)")
        # refuses NaN, < 0, all zero; the first normalisation, Python's sequential sum
        normalized = _core.blend_num_samples([float(x) for x in weights], 0)[0]
        self._init(datasets, normalized)

    @classmethod
    def _normalized(cls, datasets: Sequence[RowDataset], weights: Sequence[float]):
        """A blend of weights GPT-NeoX's first normalisation already gave (``BlendInfo``'s):
        normalising them once more in Python could move their last bits."""
        self = cls.__new__(cls)
        self._init(datasets, weights)
        return self

    def _init(self, datasets: Sequence[RowDataset], weights: Sequence[float]) -> None:
        lengths = {d.seq_length for d in datasets}
        if len(lengths) != 1:
            raise PythiaDataError(f"blended datasets must share seq_length, got {sorted(lengths)}")
        self.datasets = list(datasets)
        self.seq_length = lengths.pop()
        _core.blend_num_samples([float(x) for x in weights], 0)  # refuses NaN, < 0, all zero
        self._given_weights = [float(x) for x in weights]  # what a pickled copy rebuilds from
        # BlendableDataset's own normalisation, numpy's sum.
        w = np.asarray(weights, dtype=np.float64)
        self.weights = w / w.sum()
        self.size = sum(len(d) for d in datasets)
        self.dataset_index, self.dataset_sample_index = _core.blending_indices(
            [float(x) for x in self.weights], self.size
        )
        # GPT-NeoX's length counts positions past the end of some component (each holds its
        # ceil(N·w·1.005) rows, read only up to N): its rows end at the first such position.
        self.readable = _core.blend_readable_len(
            [float(x) for x in self.weights], [len(d) for d in self.datasets]
        )

    @classmethod
    def from_blend(cls, blend: BlendInfo) -> BlendedDataset:
        """The blend ``build_blended_index`` (or ``pythia-data build-index --weights``) made."""
        comps = [
            GPTDataset(c.prefix, seq_length=c.seq_length, paths=c.paths) for c in blend.components
        ]
        return cls._normalized(comps, blend.weights)

    @property
    def dtype(self) -> np.dtype:
        """The dtype that holds every component's tokens."""
        return np.result_type(*[getattr(d, "dtype", np.int64) for d in self.datasets])

    def __reduce__(self):
        # Rebuilt from its components and weights where it is unpickled (a spawned DataLoader
        # worker): pickled whole, a Pythia-size blend's index is 1.3 GB per worker.
        return (_reopen_blend, (self.datasets, self._given_weights))

    def __repr__(self) -> str:
        # The default named only the object's address in a notebook, where the other
        # datasets show their files and rows.
        weights = ", ".join(f"{w:.4g}" for w in self.weights)
        return f"BlendedDataset({self.datasets!r}, weights=[{weights}], rows={len(self):,})"

    def __len__(self) -> int:
        """The positions that have rows (GPT-NeoX's ``len`` is ``self.size``, more than that:
        a loader over all of it failed partway)."""
        return self.readable

    def rows(
        self,
        start: int,
        stop: int,
        dtype: np.dtype | type | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        start, stop = self._check_range(start, stop)
        if out is not None:
            np.copyto(out, self.rows(start, stop, out.dtype), casting="safe")
            return out
        dtype = self._row_dtype(dtype)
        which = self.dataset_index[start:stop]
        sample = self.dataset_sample_index[start:stop]
        out_dtype = dtype if dtype is not None else self.dtype
        out = np.empty((stop - start, self.seq_length + 1), dtype=out_dtype)
        for d, ds in enumerate(self.datasets):
            sel = np.flatnonzero(which == d)
            if sel.size == 0:
                continue
            # A component's samples are consecutive within any range of the blend.
            first, last = int(sample[sel[0]]), int(sample[sel[-1]])
            if last >= len(ds):
                raise IndexError(
                    f"blend position {start + int(sel[-1])} needs row {last} of dataset {d}, "
                    f"which has {len(ds):,} rows"
                )
            out[sel] = ds.rows(first, last + 1)
        return out
