#!/usr/bin/env bash
# Create .venv (if needed) and install pythia-suite into it, built from source in release mode.
# Usage: bash scripts/install.sh [extras]   (extras default: train,dev)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-train,dev}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
"$VPY" -m pip install -q --upgrade pip
# torch from PyPI is the multi-GB CUDA build; a local CPU wheel (shared/wheels) keeps CI lean.
if [[ ",$extras," == *",train,"* ]] && ! "$VPY" -c "import torch" 2>/dev/null; then
  for wheel in ../shared/wheels/torch-*.whl; do
    [ -f "$wheel" ] && "$VPY" -m pip install -q "$wheel"
  done
  if ! "$VPY" -c "import torch" 2>/dev/null; then
    echo "note: no CPU build of PyTorch in ../shared/wheels, so pip fetches torch from PyPI" \
      "(on Linux the CUDA build, several GB). For a CPU-only machine, install it first:" \
      ".venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu" >&2
  fi
fi
"$VPY" -m pip install -q "maturin>=1.7,<2"
# Build the abi3 wheel with the release profile, then install it with the extras.
rm -rf target/wheels
.venv/bin/maturin build --release --quiet --out target/wheels
wheel=$(ls target/wheels/pythia_suite-*.whl | head -n 1)
"$VPY" -m pip install -q --force-reinstall --no-deps "$wheel"
"$VPY" -m pip install -q "${wheel}[${extras}]"
echo "installed $(basename "$wheel") into .venv"
