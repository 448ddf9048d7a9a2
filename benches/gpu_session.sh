#!/usr/bin/env bash
# One GPU session's measurements, in one call (device time is scarce): the card's state, an
# import check, gpu_throughput.py for 160m/410m/1b with transformers' model as the anchor, then
# our 1b at a larger micro batch. Logs and JSON go to $OUT (or ./gpu-out). Run it from the
# repository root with the native module built (python/pythia_data/_core.abi3.so) or the wheel
# installed.
set -uo pipefail
out="${OUT:-gpu-out}"
mkdir -p "$out"
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}python" PYTHONUNBUFFERED=1
py="${PYTHON:-python3}"

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw,power.limit,memory.used \
    --format=csv | tee "$out/card.txt"
"$py" -c "import torch, pythia_train.train; print('torch', torch.__version__, torch.cuda.get_device_name())" \
    || exit 1

"$py" benches/gpu_throughput.py --anchor --out "$out/gpu_throughput.json" 2>&1 | tee "$out/throughput.log"
"$py" benches/gpu_throughput.py --models 1b --micro-batch 1b=16 \
    --out "$out/gpu_throughput_1b_mb16.json" 2>&1 | tee "$out/throughput_1b_mb16.log"
