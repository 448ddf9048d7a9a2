"""Paths of the files bundled with the package (see README.md beside this file)."""

from pathlib import Path

DATA_DIR = Path(__file__).parent
DEFAULT_TOKENIZER = DATA_DIR / "20B_tokenizer.json"
SAMPLE_CORPUS = DATA_DIR / "sample-pile.jsonl.zst"
