#!/usr/bin/env bash
# The main job on the bundled sample corpus, end to end, after installing into .venv:
# tokenize (Pile jsonl.zst -> .bin/.idx) -> inspect -> build GPT-NeoX's index with Pythia's
# recipe -> show the batch trained at a step -> train a tiny GPT-NeoX model for a few steps.
# Everything is written under sample-run/ (removed first, so the run is repeatable).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh train
export PATH="$PWD/.venv/bin:$PATH"
out=sample-run
rm -rf "$out"
mkdir -p "$out/pile"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. Tokenize the bundled Pile-format sample with the GPT-NeoX-20B tokenizer"
pythia-data tokenize python/pythia_data/data/sample-pile.jsonl.zst --output "$out/pile/sample"

step "2. What the indexed dataset holds (and which Pile subsets its documents come from)"
pythia-data info "$out/pile/sample"

# Pythia's recipe (seq 2048, seed 1234, GPT-NeoX v1.0's shuffle), scaled to the sample's
# 1.77 M tokens: 50 steps of 16 rows instead of 143,000 steps of 1,024.
recipe=(--train-iters 50 --global-batch-size 16)
step "3. Build GPT-NeoX's sample index (doc_idx, sample_idx, shuffle_idx) for Pythia's recipe"
pythia-data build-index "$out/pile/" "${recipe[@]}"

step "4. The batch trained at step 10: its rows as text (first lines)"
pythia-data batch "$out/pile/sample" "${recipe[@]}" --step 10 --decode | head -n 25 || true
pythia-data batch "$out/pile/sample" "${recipe[@]}" --step 0 --end-step 49 --output "$out/steps-0-49.npy"

step "5. Train a tiny GPT-NeoX (pythia-14m's shape) for 20 steps on the CPU, in GPT-NeoX's order for its own rows of 128 tokens and batches of 8"
pythia-train --model pythia-14m --data "$out/pile/sample" --data-format gpt-neox \
  --seq-length 128 --global-batch 8 --micro-batch 8 --train-iters 20 --lr 1e-3 \
  --save "$out/run" --save-steps 10,20 --log-file "$out/run/log.jsonl" --device cpu

step "6. The checkpoint is a Hugging Face GPT-NeoX directory"
python - "$out/run/step20" <<'PY'
import json, sys
from pathlib import Path
ckpt = Path(sys.argv[1])
print(sorted(p.name for p in ckpt.iterdir()))
cfg = json.loads((ckpt / "config.json").read_text())
print({k: cfg[k] for k in ("model_type", "num_hidden_layers", "hidden_size", "vocab_size")})
log = [json.loads(line) for line in (ckpt.parent / "log.jsonl").read_text().splitlines()]
print(f"loss: step {log[0]['step']} {log[0]['loss']:.3f} -> step {log[-1]['step']} {log[-1]['loss']:.3f}")
PY
step "done: outputs are in $out/"
