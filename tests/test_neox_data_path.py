"""A GPT-NeoX config's `data-path` (no train-data-paths): GPT-NeoX v1.0's
`build_train_valid_test_datasets` trains on the first documents only, cut by `split`
(default "969, 30, 1"), in an index named `train` of `train_iters · batch` samples (no 1.005
margin). pythia-train trained on every document, under `train_0`, with the margin."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import pythia_train.cli as train_cli
from pythia_data import IndexedDataset, IndexedDatasetBuilder
from pythia_data.index import train_valid_test_split
from pythia_train.configs import TrainConfig
from pythia_train.neox_config import read_neox_config


def _neox_split(split: str, size: int) -> list[int]:
    """GPT-NeoX's get_train_valid_test_split_, re-derived: normalised weights, each range
    round(w · size), boundaries shifted so that the last is size."""
    sep = "," if "," in split else "/" if "/" in split else None
    ws = [float(x) for x in (split.split(sep) if sep else [split])]
    ws = (ws + [0.0, 0.0])[:3]
    ws = [w / sum(ws) for w in ws]
    b = [0]
    for w in ws:
        b.append(b[-1] + int(round(w * float(size))))
    return [b[0]] + [x - (b[-1] - size) for x in b[1:]]


@pytest.mark.parametrize(
    ("split", "size", "want"),
    [
        ("969, 30, 1", 300, (0, 291, 300, 300)),
        ("969, 30, 1", 210_607_728, (0, 204_078_888, 210_397_120, 210_607_728)),
        ("98/1/1", 500, (0, 490, 495, 500)),
        ("2,1", 7, (0, 5, 7, 7)),
        ("1,1,1", 10, (0, 4, 7, 10)),  # 3.33 each: rounding then the shift
        ("1", 9, (0, 9, 9, 9)),
    ],
)
def test_split_matches_gpt_neox(split, size, want):
    assert train_valid_test_split(split, size) == want
    assert list(want) == _neox_split(split, size)


def test_config_data_path_carries_its_split(tmp_path):
    p = tmp_path / "c.yml"
    p.write_text('{"data-path": "/d/x", "train-iters": 4}')
    assert read_neox_config(p)["data_split"] == "969, 30, 1"
    p.write_text('{"data-path": "/d/x", "split": "90,5,5"}')
    assert read_neox_config(p)["data_split"] == "90,5,5"
    # train-data-paths win over data-path in GPT-NeoX, and are read whole
    p.write_text('{"data-path": "/d/x", "train-data-paths": ["/d/y"], "split": "90,5,5"}')
    conf = read_neox_config(p)
    assert conf["data"] == "/d/y" and "data_split" not in conf


def _neox_rows(sizes, items, documents, num_samples, L, seed):
    """GPT2Dataset's rows for `documents`, re-derived with numpy (shared/spec §2)."""
    sizes = np.asarray(sizes)
    tokens = int(sizes[documents].sum())
    epochs = 1
    while (epochs * tokens - 1) // L < num_samples:
        epochs += 1
    rng = np.random.RandomState(seed)
    doc_idx = np.tile(np.asarray(documents, dtype=np.int32), epochs)
    rng.shuffle(doc_idx)
    stream = np.concatenate([items[d] for d in doc_idx]).astype(np.int64)
    n = (epochs * tokens - 1) // L
    shuffle_idx = np.arange(n, dtype=np.uint32)
    rng.shuffle(shuffle_idx)
    return np.stack([stream[j * L : j * L + L + 1] for j in shuffle_idx[: n - 1]])


def test_data_path_trains_gpt_neox_train_split(tmp_path):
    rng = np.random.default_rng(3)
    prefix = tmp_path / "docs"
    with IndexedDatasetBuilder(prefix, dtype=np.uint16) as b:
        for _ in range(100):
            doc = rng.integers(1, 500, int(rng.integers(2, 40))).astype(np.uint16)
            doc[-1] = 0
            b.add_document(doc)
    ds = IndexedDataset(prefix)
    items = [np.asarray(ds[i]) for i in range(len(ds))]
    cfg = TrainConfig(train_iters=6, global_batch=4, micro_batch=4, seq_length=16, seed=1234)
    rows = train_cli._open_data(str(prefix), "gpt-neox", cfg, data_split="969, 30, 1")
    # documents [0, 97), 24 samples (not ceil(24 · 1.005) = 25), the index named "train"
    assert rows.paths[0].name == "docs_train_indexmap_24ns_16sl_1234s_doc_idx.npy"
    want = _neox_rows(ds.sizes, items, np.arange(97), 24, 16, 1234)
    assert len(rows) == len(want)
    np.testing.assert_array_equal(rows.rows(0, len(rows), np.int64), want)
    # without a split (train-data-paths, --data): every document, 1.005 margin, train_0
    whole = train_cli._open_data(str(prefix), "gpt-neox", cfg)
    assert whole.paths[0].name == "docs_train_0_indexmap_25ns_16sl_1234s_doc_idx.npy"


def test_cli_passes_the_config_split(tmp_path, monkeypatch):
    seen = {}

    def stop(prefix, fmt, cfg, cache_dir=None, device=None, data_split=None):
        seen["split"] = data_split
        raise ValueError("stop here")

    monkeypatch.setattr(train_cli, "_open_data", stop)
    yml = tmp_path / "c.yml"
    yml.write_text(f'{{"data-path": "{tmp_path / "x"}", "split": "90,5,5"}}')
    args = ["--model", "pythia-14m", "--config", str(yml), "--data-format", "gpt-neox"]
    result = CliRunner().invoke(train_cli.main, args)
    assert "stop here" in result.output and seen["split"] == "90,5,5"
    # --data on the command line replaces data-path and is read whole
    CliRunner().invoke(train_cli.main, [*args, "--data", str(tmp_path / "y")])
    assert seen["split"] is None
