"""pythia-data: the exact GPT-NeoX / Pythia data pipeline, fast.

raw text → tokenizer → ``.bin/.idx`` → index (doc/sample/shuffle) → dataset/loader.
"""

from pythia_data._core import __version__
from pythia_data.dataset import BlendedDataset, GPTDataset, PreshuffledDataset
from pythia_data.errors import PythiaDataError
from pythia_data.index import BlendInfo, IndexInfo, build_blended_index, build_index
from pythia_data.indexed import (
    IndexedDataset,
    IndexedDatasetBuilder,
    best_fitting_dtype,
    merge_datasets,
)
from pythia_data.tokenizer import Tokenizer

__all__ = [
    "__version__",
    "PythiaDataError",
    "IndexedDataset",
    "IndexedDatasetBuilder",
    "best_fitting_dtype",
    "merge_datasets",
    "GPTDataset",
    "PreshuffledDataset",
    "BlendedDataset",
    "build_index",
    "build_blended_index",
    "IndexInfo",
    "BlendInfo",
    "Tokenizer",
]
