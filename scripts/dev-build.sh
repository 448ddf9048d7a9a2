#!/usr/bin/env bash
# Developer loop: build the native module with the quick optimised profile and drop it into
# python/pythia_data/, so `PYTHONPATH=python python ...` (or the editable install) uses it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --profile fastdev -p pythia-python "$@"
# Where cargo put it: with CARGO_TARGET_DIR set, target/ may hold an older build, which was
# copied without a word.
cp "${CARGO_TARGET_DIR:-target}/fastdev/lib_core.so" python/pythia_data/_core.abi3.so
