"""The GPT-NeoX v1.0 golden cases (tests/fixtures/gpt-neox-v1.0), with missing .bin files rebuilt.

Large `.bin` files are not stored in the repository; their tokens follow a formula (see the
fixtures' README), so they are regenerated once per machine into a cache directory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).parent / "fixtures" / "gpt-neox-v1.0"
CASES: dict[str, dict] = {c["name"]: c for c in json.loads((FIXTURES / "cases.json").read_text())}
_CACHE = Path(tempfile.gettempdir()) / f"pythia-suite-golden-{os.getuid()}"


def _read_sizes(idx: Path) -> tuple[np.dtype, np.ndarray]:
    raw = idx.read_bytes()
    code = raw[17]
    n = int.from_bytes(raw[18:26], "little")
    dtype = {8: np.dtype("<u2"), 4: np.dtype("<i4")}[code]
    return dtype, np.frombuffer(raw, dtype="<i4", count=n, offset=34)


def golden_tokens(name: str) -> np.ndarray:
    """All tokens of case `name`, from the formula: (i*1000003 + j*7919) mod M, EOD=0 last."""
    dtype, sizes = _read_sizes(FIXTURES / f"{name}.idx")
    modulus = 65000 if dtype == np.dtype("<u2") else 1000003
    sizes64 = sizes.astype(np.int64)
    doc = np.repeat(np.arange(len(sizes64), dtype=np.int64), sizes64)
    starts = np.cumsum(sizes64) - sizes64
    j = np.arange(int(sizes64.sum()), dtype=np.int64) - np.repeat(starts, sizes64)
    tokens = (doc * 1000003 + j * 7919) % modulus
    ends = (starts + sizes64)[sizes64 > 0] - 1
    tokens[ends] = 0
    return tokens.astype(dtype)


def golden_case(name: str) -> Path:
    """The dataset prefix of case `name`, with its `.bin` present (regenerated when not stored)."""
    if name not in CASES:
        raise KeyError(f"no golden case {name!r}; known: {sorted(CASES)}")
    if (FIXTURES / f"{name}.bin").exists():
        return FIXTURES / name
    _CACHE.mkdir(parents=True, exist_ok=True)
    prefix = _CACHE / name
    bin_path = prefix.with_name(name + ".bin")
    if not bin_path.exists():
        tmp = bin_path.with_name(f".{name}.bin.{os.getpid()}")
        golden_tokens(name).tofile(tmp)
        os.replace(tmp, bin_path)
    idx = prefix.with_name(name + ".idx")
    if not idx.exists() or idx.read_bytes() != (FIXTURES / f"{name}.idx").read_bytes():
        tmp = idx.with_name(f".{name}.idx.{os.getpid()}")
        shutil.copyfile(FIXTURES / f"{name}.idx", tmp)
        os.replace(tmp, idx)
    return prefix
