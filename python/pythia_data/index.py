"""GPT-NeoX v1.0's sample index (``GPT2Dataset._build_index_mappings``), built in Rust.

The three arrays are written as GPT-NeoX's own cache files,
``{prefix}_{name}_indexmap_{num_samples}ns_{seq_length}sl_{seed}s_{doc,sample,shuffle}_idx.npy``,
byte for byte, so GPT-NeoX can load ours and we can load GPT-NeoX's. Facts:
shared/spec/data-pipeline.md §2–5.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pythia_data import _core
from pythia_data.errors import PythiaDataError
from pythia_data.indexed import IndexedDataset, _dataset_prefix, _integer
from pythia_data.progress import progress_bar

__all__ = [
    "IndexInfo",
    "BlendInfo",
    "PYTHIA",
    "build_index",
    "build_blended_index",
    "check_buildable",
    "find_datasets",
    "find_one_dataset",
    "index_paths",
    "num_samples_for",
    "split_num_samples",
    "train_valid_test_split",
    "cache_prefix_for",
    "check_dataset_name",
    "blend_component_name",
]

PathLike = str | os.PathLike

#: Pythia's training parameters (shared/spec/data-pipeline.md §5).
PYTHIA = {
    "train_iters": 143_000,
    "global_batch_size": 1024,
    "seq_length": 2048,
    "seed": 1234,
    "eval_interval": 40_000,
    "eval_iters": 10,
}


@dataclass(frozen=True)
class IndexInfo:
    """What a build produced (or found and reused)."""

    prefix: Path
    name: str
    num_samples: int
    seq_length: int
    seed: int
    documents: tuple[int, int]
    tokens_per_epoch: int
    num_epochs: int
    #: N: sample_idx has N + 1 rows, shuffle_idx N entries.
    num_index_samples: int
    #: ``len(GPT2Dataset)`` = N − 1.
    dataset_len: int
    separate_last_epoch: bool
    sample_idx_dtype: str
    shuffle_idx_dtype: str
    doc_idx_path: Path
    sample_idx_path: Path
    shuffle_idx_path: Path
    reused: bool

    @property
    def paths(self) -> tuple[Path, Path, Path]:
        return (self.doc_idx_path, self.sample_idx_path, self.shuffle_idx_path)

    def describe(self, rows_used: int | None = None, split: str = "train") -> str:
        """The lines ``pythia-data build-index`` prints; ``split`` words the rows used."""
        rows_used = self.num_samples if rows_used is None else rows_used
        tokens = self.tokens_per_epoch
        end = min(rows_used, self.dataset_len)
        frac = end / self.num_index_samples if self.num_index_samples else 0.0
        lines = [
            f"{self.prefix} [{self.name}]: {'reused existing index' if self.reused else 'built index'}",
            f"  documents {self.documents[1] - self.documents[0]:,}, tokens per epoch {tokens:,}, "
            f"epochs {self.num_epochs}",
            f"  samples requested {self.num_samples:,}, samples in the index {self.num_index_samples:,}"
            f" (dataset length {self.dataset_len:,}), seq_length {self.seq_length}, seed {self.seed}",
            f"  {_ROWS_WORD.get(split, split)} rows [0, {end:,}) end at {frac:.2%} of the index "
            f"({end * self.seq_length:,} tokens, {end * self.seq_length / tokens:.3f} epochs' worth)",
        ]
        if self.sample_idx_dtype == "int64":
            lines.append(
                "  note: sample_idx is int64 because int32 would overflow at this size "
                "(GPT-NeoX v1.0 itself would overflow here; later GPT-NeoX does the same)"
            )
        if self.separate_last_epoch:
            lines.append("  note: Megatron-LM's separate-last-epoch variant (not GPT-NeoX's order)")
        for p in self.paths:
            lines.append(f"  {p}")
        return "\n".join(lines)


@dataclass(frozen=True)
class BlendInfo:
    """A blend of several datasets, as GPT-NeoX's BlendableDataset builds it."""

    components: tuple[IndexInfo, ...]
    weights: tuple[float, ...]
    #: ``len(BlendableDataset)``: the sum of the components' lengths.
    size: int
    #: The positions that have rows (``len(BlendedDataset)``, where ``batch`` stops): the blend's
    #: order reaches the end of some component before ``size``.
    readable: int


def find_datasets(path: PathLike) -> list[Path]:
    """Dataset prefixes: ``path`` itself, or every ``*.idx`` file in a directory (sorted).

    Hidden names are passed over, as `tokenize` passes them over: a copy from macOS leaves
    ``._a.idx`` beside ``a.idx``, which was counted as a dataset (and then failed, or made
    ``--weights`` one short); so are folders that happen to end in ``.idx``."""
    p = Path(path)
    if p.is_dir():
        found = sorted(
            q.with_suffix("") for q in p.glob("*.idx") if not q.name.startswith(".") and q.is_file()
        )
        if not found:
            raise PythiaDataError(f"{p}: no indexed dataset (*.idx) in this directory")
        return found
    prefix = _dataset_prefix(p)
    idx = prefix.with_name(prefix.name + ".idx")
    if not idx.exists():
        raise FileNotFoundError(f"{idx}: no such index file (expected PREFIX.idx and PREFIX.bin)")
    return [prefix]


def find_one_dataset(path: PathLike, or_else: str = "") -> Path:
    """``path`` itself, or the one dataset a directory holds; a directory of several is
    refused, naming them (commands that read one dataset take a directory of one, as `batch`
    does, where "PATH.idx: no such file" misled). ``or_else`` ends the refusal with what else
    the caller can do with several."""
    p = Path(path)
    if not p.is_dir():
        return p
    found = find_datasets(p)
    if len(found) != 1:
        shown = ", ".join(str(q) for q in found[:5]) + (", ..." if len(found) > 5 else "")
        raise PythiaDataError(
            f"{p} is a directory that holds {len(found)} datasets: give one dataset's "
            f"prefix ({shown}){or_else}"
        )
    return found[0]


_ROWS_WORD = {"train": "training", "valid": "validation", "test": "test"}


def _check_ranges(num_samples: int | None, seq_length: int, seed: int) -> None:
    if not 0 <= seed <= 2**32 - 1:
        raise PythiaDataError(
            f"seed {seed} is out of range: numpy's RandomState takes seeds in [0, 4294967295]"
        )
    if (num_samples is not None and num_samples < 0) or seq_length < 1:
        raise PythiaDataError("num_samples must be >= 0 and seq_length >= 1")


def _counts(**values) -> dict[str, int | None]:
    """The index's integer parameters, checked: int() read a seed of 1234.9 as 1234 and True as
    1, naming another index than the one asked for (None stays None: a default)."""
    return {k: None if v is None else _integer(v, k) for k, v in values.items()}


def num_samples_for(iters: int, global_batch_size: int) -> int:
    """``ceil(iters · batch · 1.005)`` in float64, as GPT-NeoX requests for one dataset."""
    c = _counts(train_iters=iters, global_batch_size=global_batch_size)
    return int(_core.num_samples_for(c["train_iters"], c["global_batch_size"]))


def split_num_samples(
    split: str,
    train_iters: int = PYTHIA["train_iters"],
    global_batch_size: int = PYTHIA["global_batch_size"],
    eval_interval: int = PYTHIA["eval_interval"],
    eval_iters: int = PYTHIA["eval_iters"],
) -> int:
    """Samples GPT-NeoX requests for ``train``, ``valid`` or ``test``."""
    iters = {
        "train": train_iters,
        "valid": (train_iters // eval_interval + 1) * eval_iters,
        "test": eval_iters,
    }.get(split)
    if iters is None:
        raise PythiaDataError(f"unknown split {split!r}: use train, valid or test")
    return num_samples_for(iters, global_batch_size)


def train_valid_test_split(split: str, num_documents: int) -> tuple[int, int, int, int]:
    """Document boundaries ``(0, a, b, num_documents)`` of the train, valid and test ranges
    ``[0, a)``, ``[a, b)``, ``[b, n)`` that GPT-NeoX's ``get_train_valid_test_split_`` cuts from
    one ``data-path`` by a ``split`` string such as ``"969, 30, 1"`` (its default): weights
    separated by ``,`` (or ``/``), missing ones 0, normalised, each range
    ``round(weight · n)`` documents (Python's round, half to even), then every boundary shifted
    so that the last is ``n``."""
    sep = "," if "," in split else "/" if "/" in split else None
    try:
        parts = [float(x) for x in (split.split(sep) if sep else [split])]
    except ValueError:
        raise PythiaDataError(f"split {split!r}: not numbers separated by ',' or '/'") from None
    parts = (parts + [0.0, 0.0, 0.0])[:3]
    total = sum(parts)
    if not total > 0.0:
        raise PythiaDataError(f"split {split!r}: the proportions must add up to more than 0")
    bounds = [0]
    for part in parts:
        bounds.append(bounds[-1] + int(round(part / total * float(num_documents))))
    excess = bounds[-1] - num_documents
    return (0, *(b - excess for b in bounds[1:]))  # type: ignore[return-value]


def check_dataset_name(name: str) -> str:
    """``name``, refused when it cannot be part of a file name: one with a path separator or
    `..` put the index outside the data (or cache) folder, and an empty one is no name."""
    seps = [s for s in (os.sep, os.altsep, "\0") if s]
    if not isinstance(name, str) or not name or ".." in name or any(s in name for s in seps):
        raise PythiaDataError(
            f"dataset name {name!r}: it is part of the index file names, so it must be "
            "non-empty, without '/' or '..' (e.g. train_0)"
        )
    return name


def blend_component_name(name: str, i: int) -> str:
    """The name of blend component ``i``'s index: GPT-NeoX's ``build_weighted_datasets`` names
    them ``train_{i}`` (``valid_{i}``, ``test_{i}``), so a name ending in ``_<number>`` has that
    number replaced by ``i`` (``train_0`` → ``train_0``, ``train_1``, ...); another name gets
    ``_{i}`` appended. With one name for all, GPT-NeoX did not find our components past the
    first (and we not its), and rebuilt them."""
    stem, sep, number = name.rpartition("_")
    return f"{stem}_{i}" if sep and stem and number.isdigit() else f"{name}_{i}"


def cache_prefix_for(prefix: PathLike, cache_dir: PathLike | None = None) -> Path:
    """GPT-NeoX writes the cache beside the data (its prefix); ``cache_dir`` moves it."""
    prefix = _dataset_prefix(prefix)
    return prefix if cache_dir is None else Path(cache_dir) / prefix.name


def index_paths(
    prefix: PathLike,
    name: str = "train_0",
    num_samples: int | None = None,
    seq_length: int = PYTHIA["seq_length"],
    seed: int = PYTHIA["seed"],
    cache_dir: PathLike | None = None,
) -> tuple[Path, Path, Path]:
    """GPT-NeoX's (doc_idx, sample_idx, shuffle_idx) file names."""
    c = _counts(num_samples=num_samples, seq_length=seq_length, seed=seed)
    num_samples, seq_length, seed = c["num_samples"], c["seq_length"], c["seed"]
    # Out of range, a seed failed in the conversion ("can't convert negative int to unsigned")
    # or named an index that build-index refuses to build ("index file not found").
    _check_ranges(num_samples, seq_length, seed)
    if num_samples is None:
        num_samples = split_num_samples(name.rsplit("_", 1)[0] if "_" in name else "train")
    return tuple(
        Path(p)
        for p in _core.index_paths(
            cache_prefix_for(prefix, cache_dir), name, int(num_samples), seq_length, seed
        )
    )


def built_indexes(
    prefix: PathLike, cache_dir: PathLike | None = None, items: int | None = None
) -> list[dict]:
    """The complete indexes (all three arrays there) in ``prefix``'s cache folder, from their
    GPT-NeoX file names: ``name``, ``num_samples``, ``seq_length``, ``seed``, sorted. With
    ``items``, one whose record says it was built for another number of documents is left out:
    it is another dataset's whose file name starts with this one's (``d`` and ``d_x``)."""
    base = cache_prefix_for(prefix, cache_dir)
    pattern = re.compile(
        re.escape(base.name)
        + r"_(?P<name>.+)_indexmap_(?P<num_samples>\d+)ns_(?P<seq_length>\d+)sl_(?P<seed>\d+)s"
        + r"_doc_idx\.npy"
    )
    try:
        names = sorted(os.listdir(base.parent if str(base.parent) else "."))
    except OSError:
        return []
    found = []
    for file in names:
        m = pattern.fullmatch(file)
        if m is None:
            continue
        doc_idx = base.parent / file
        stem = str(doc_idx)[: -len("doc_idx.npy")]
        if not all(Path(stem + f"{k}_idx.npy").is_file() for k in ("doc", "sample", "shuffle")):
            continue
        if items is not None:
            try:
                record = json.loads(Path(stem + "meta.json").read_text())
                if record.get("items", items) != items:
                    continue
            except (OSError, ValueError, AttributeError):
                pass  # GPT-NeoX's own cache has no record; a bad one is reported when opened
        found.append(
            {"name": m["name"], **{k: int(m[k]) for k in ("num_samples", "seq_length", "seed")}}
        )
    return found


def missing_index_message(
    missing: PathLike,
    prefix: PathLike,
    asked: dict,
    cache_dir: PathLike | None = None,
    items: int | None = None,
    cli: bool = False,
) -> str:
    """The error for an index ``asked`` (``name``, ``num_samples``, ``seq_length``, ``seed``)
    whose file ``missing`` is not there: the indexes built for ``prefix`` in the same folder,
    each with what differs from what was asked, in the command line's options (``cli``) or in
    GPTDataset's parameters, so that a typo in one option is found at once."""
    others = built_indexes(prefix, cache_dir, items)
    if not others:
        return f"{missing}: index file not found (build it with `pythia-data build-index`)"
    evaluation = re.fullmatch(r"(valid|test)_0", asked["name"]) is not None

    def differences(other: dict) -> list[str]:
        out = []
        if other["name"] != asked["name"]:
            if not cli:
                out.append(f"name={other['name']!r} (not {asked['name']!r})")
            elif re.fullmatch(r"(valid|test)_0", other["name"]):
                out.append(f"--split {other['name'][:-2]}")
            elif evaluation:
                extra = "" if other["name"] == "train_0" else f" --name {other['name']}"
                out.append(f"--split train{extra}")
            else:
                out.append(f"--name {other['name']}")
        # Another split's count follows from that split's own options: its name is the change.
        if other["num_samples"] != asked["num_samples"] and other["name"] == asked["name"]:
            if not cli:
                where = "num_samples=, or train_iters × global_batch_size"
            elif evaluation:
                where = "--num-samples, or --train-iters, --eval-interval, --eval-iters"
            else:
                where = "--num-samples, or --train-iters × --global-batch-size"
            out.append(f"{other['num_samples']:,} samples (not {asked['num_samples']:,}: {where})")
        for key, option in (("seq_length", "--seq-length"), ("seed", "--seed")):
            if other[key] != asked[key]:
                said = f"{option} {other[key]}" if cli else f"{key}={other[key]}"
                out.append(f"{said} (not {asked[key]})")
        return out

    listed = sorted(others, key=lambda o: (len(differences(o)), o["name"] != asked["name"]))
    shown = [
        f"{o['name']} [{o['num_samples']:,} samples, seq_length {o['seq_length']}, seed "
        f"{o['seed']}] needs {', '.join(differences(o))}"
        for o in listed[:5]
    ]
    if len(listed) > 5:
        shown.append(f"and {len(listed) - 5} more")
    if cli:
        change, build = "options", "`pythia-data build-index` and these options"
    else:
        change, build = "parameters", "build=True or `pythia-data build-index`"
    return (
        f"{missing}: index file not found; the indexes built for {Path(prefix).name} in "
        f"{Path(missing).parent} differ from the one asked for: {'; '.join(shown)}. Change the "
        f"{change} named to read one of them, or build the one asked for with {build}"
    )


def _tqdm_progress(
    enabled: bool,
) -> tuple[Callable[[str, int, int], None] | None, Callable[[], None]]:
    """One tqdm bar that follows the build's stages (doc_idx, sample_idx, shuffle_idx)."""
    if not enabled:
        return None, lambda: None
    # Made at the first stage: a reused index shows no bar (in a log, no line stuck at 0).
    state: dict = {"stage": None, "bar": None}

    def report(stage: str, done: int, total: int) -> None:
        bar = state["bar"]
        if bar is None:
            bar = state["bar"] = progress_bar(
                total=total or None, unit="entries", unit_scale=True, leave=False, desc=stage
            )
            state["stage"] = stage
        elif stage != state["stage"]:
            # The stage's end: in a log, a line a minute otherwise left it at its first "0%"
            # (a terminal just redraws it before the reset).
            if bar.n != bar.last_print_n:
                bar.refresh()
            state["stage"] = stage
            bar.set_description(stage, refresh=False)
            bar.reset(total=total or None)
        # update, not refresh: it keeps to the bar's interval, a line a minute in a log, where
        # the engine's calls (one per 65,536 samples) would otherwise each print one.
        bar.update(done - bar.n)

    def close() -> None:
        if state["bar"] is not None:
            state["bar"].close()

    return report, close


def build_index(
    prefix: PathLike,
    *,
    name: str = "train_0",
    num_samples: int | None = None,
    train_iters: int = PYTHIA["train_iters"],
    global_batch_size: int = PYTHIA["global_batch_size"],
    seq_length: int = PYTHIA["seq_length"],
    seed: int = PYTHIA["seed"],
    documents: tuple[int, int] | None = None,
    separate_last_epoch: bool = False,
    cache_dir: PathLike | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> IndexInfo:
    """Build GPT-NeoX's index for one dataset, or reuse a matching one.

    ``num_samples`` defaults to what GPT-NeoX requests for ``train_iters`` steps of
    ``global_batch_size`` (Pythia: 147,164,160). An existing index built with other parameters is
    refused (``overwrite=True`` rebuilds it). ``separate_last_epoch`` selects Megatron-LM's
    variant, which GPT-NeoX (and so Pythia) never used.
    """
    prefix = _dataset_prefix(prefix)
    check_dataset_name(name)
    c = _counts(
        num_samples=num_samples,
        train_iters=train_iters,
        global_batch_size=global_batch_size,
        seq_length=seq_length,
        seed=seed,
    )
    num_samples, seq_length, seed = c["num_samples"], c["seq_length"], c["seed"]
    if num_samples is None:
        num_samples = num_samples_for(c["train_iters"], c["global_batch_size"])
    _check_ranges(num_samples, seq_length, seed)
    idx = prefix.with_name(prefix.name + ".idx")
    report, close = _tqdm_progress(progress)
    try:
        d = _core.build_index(
            idx,
            cache_prefix_for(prefix, cache_dir),
            name,
            int(num_samples),
            int(seq_length),
            int(seed),
            documents,
            separate_last_epoch,
            overwrite,
            report,
        )
    finally:
        close()
    return _info(prefix, name, d)


def check_buildable(prefix: PathLike, num_samples: int | None, seq_length: int) -> None:
    """Raise what building ``prefix``'s index over all its documents would fail on, without
    building it: seq_length too large, the dataset unreadable or holding no tokens, or (given
    ``num_samples``) needing a doc_idx too long for GPT-NeoX's int32. Checked for every dataset before any is built, so
    that a folder which will fail leaves no indexes of the datasets before the bad one.
    (An existing index built with other parameters is still found only at its turn.)"""
    if seq_length >= 2**31 - 1:  # the engine checks this first, before reading the data
        raise PythiaDataError(
            f"seq_length {seq_length} is too large: GPT-NeoX counts a sample's seq_length + 1 "
            f"tokens in int32, so at most {2**31 - 2}"
        )
    ds = IndexedDataset(_dataset_prefix(prefix))
    docs, tokens = len(ds), int(ds.sizes.sum(dtype=np.int64))
    if tokens <= 0:
        raise PythiaDataError(
            f"{ds.idx_path}: the {docs} documents hold no tokens: there is nothing to sample"
        )
    if num_samples is None:
        return
    # The engine's plan: E = ceil((num_samples·L + 1) / T) epochs, doc_idx of E·D int32.
    epochs = max(1, -(-(int(num_samples) * int(seq_length) + 1) // tokens))
    if docs * epochs > 2**31 - 1:
        raise PythiaDataError(
            f"{ds.idx_path}: doc_idx would have {docs * epochs:,} entries ({epochs:,} epochs of "
            f"{docs:,} documents); GPT-NeoX stores it as int32, which cannot hold that"
        )


def _info(prefix: Path, name: str, d: dict) -> IndexInfo:
    return IndexInfo(
        prefix=prefix,
        name=name,
        num_samples=d["num_samples"],
        seq_length=d["seq_length"],
        seed=d["seed"],
        documents=tuple(d["documents"]),
        tokens_per_epoch=d["tokens_per_epoch"],
        num_epochs=d["num_epochs"],
        num_index_samples=d["num_index_samples"],
        dataset_len=d["dataset_len"],
        separate_last_epoch=d["separate_last_epoch"],
        sample_idx_dtype=d["sample_idx_dtype"],
        shuffle_idx_dtype=d["shuffle_idx_dtype"],
        doc_idx_path=Path(d["doc_idx_path"]),
        sample_idx_path=Path(d["sample_idx_path"]),
        shuffle_idx_path=Path(d["shuffle_idx_path"]),
        reused=d["reused"],
    )


def build_blended_index(
    prefixes: Sequence[PathLike],
    weights: Sequence[float],
    *,
    name: str = "train_0",
    num_samples: int | None = None,
    train_iters: int = PYTHIA["train_iters"],
    global_batch_size: int = PYTHIA["global_batch_size"],
    seq_length: int = PYTHIA["seq_length"],
    seed: int = PYTHIA["seed"],
    separate_last_epoch: bool = False,
    cache_dir: PathLike | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> BlendInfo:
    """GPT-NeoX's weighted blend: weights normalised in float64, component i gets
    ``ceil(total · w_i · 1.005)`` samples and its own index with the same seed; the blend's
    order comes from BlendableDataset's error-minimising rule (see ``BlendedDataset``).

    Component i's index is named ``blend_component_name(name, i)`` (``train_{i}``, as GPT-NeoX
    names it) beside its own prefix. ``num_samples`` here is the blend's total before that
    1.005 margin (default ``train_iters · global_batch_size``)."""
    if len(prefixes) != len(weights) or not prefixes:
        raise PythiaDataError("give one weight per dataset (and at least one dataset)")
    if any(w < 0 or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
        raise PythiaDataError(
            f"weights must be finite, non-negative and not all zero: {list(weights)}"
        )
    c = _counts(
        num_samples=num_samples,
        train_iters=train_iters,
        global_batch_size=global_batch_size,
        seq_length=seq_length,
        seed=seed,
    )
    num_samples, seq_length, seed = c["num_samples"], c["seq_length"], c["seed"]
    # GPT-NeoX applies its 1.005 margin per component, to the un-inflated total.
    base = c["train_iters"] * c["global_batch_size"] if num_samples is None else num_samples
    norm, counts = _core.blend_num_samples([float(w) for w in weights], int(base))
    for p, n in zip(prefixes, counts, strict=True):
        check_buildable(p, int(n), seq_length)
    comps = tuple(
        build_index(
            p,
            name=blend_component_name(name, i),
            num_samples=int(n),
            seq_length=seq_length,
            seed=seed,
            separate_last_epoch=separate_last_epoch,
            cache_dir=cache_dir,
            overwrite=overwrite,
            progress=progress,
        )
        for i, (p, n) in enumerate(zip(prefixes, counts, strict=True))
    )
    lengths = [c.dataset_len for c in comps]
    return BlendInfo(
        components=comps,
        weights=tuple(norm),
        size=sum(lengths),
        readable=blend_readable_len(norm, lengths),
    )


def blend_readable_len(weights: Sequence[float], lengths: Sequence[int]) -> int:
    """Where a blend of datasets of ``lengths`` rows stops having rows, for weights as
    GPT-NeoX's first normalisation gives them: BlendableDataset normalises them once more
    (numpy's sum), and its order is that of the twice-normalised weights."""
    w = np.asarray(weights, dtype=np.float64)
    return _core.blend_readable_len([float(x) for x in w / w.sum()], [int(n) for n in lengths])
