#!/usr/bin/env bash
# Install everything and run every test: the Rust engine's (cargo test) and the Python suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh train,dev
cargo test --workspace --exclude pythia-python -q
set +e
.venv/bin/python -m pytest -q tests "$@"
rc=$?
set -e
# pytest's 5 means "no tests collected": nothing ran, which is a failure of the suite, not a pass.
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
