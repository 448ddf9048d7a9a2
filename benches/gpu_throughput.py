"""GPU training throughput of pythia-train: tokens/s and MFU for Pythia 160m, 410m and 1b.

One prepared script for one H100/H200 (or any CUDA GPU with --peak-tflops): bf16 autocast with
fp32 master weights, torch.compile, attention through SDPA (FlashAttention kernels), fused
AdamW, sequence 2048 — the real trainer loop (`pythia_train.train.train`) on random rows held
in memory, so the figures include everything a training step does except reading the disk.

Needs pythia-suite installed (the wheel holds pythia_train and the native pythia_data module):
`bash scripts/install.sh train`, or `pip install target/wheels/pythia_suite-*.whl` on a machine
that has torch with CUDA.

    python benches/gpu_throughput.py                     # all three sizes, prints a table
    python benches/gpu_throughput.py --models 1b --micro-batch 1b=12 --out results.json

`--device cpu` runs the same code on the CPU (a smoke test of the script, not a measurement:
tests/test_gpu_throughput_script.py runs it with pythia-14m so the script is known to work
before a GPU session is spent on it).

MFU = achieved model FLOP/s ÷ peak dense bf16 FLOP/s (989.5 TFLOP/s for H100/H200 SXM), with
FLOPs per token = 6·(non-embedding + output-head parameters) + 12·layers·d·seq (PaLM, App. B).
Goal from the issue: ≥ 45 % MFU at 1b (GPT-NeoX ≈ 35 % on A100, MPT-1B 41.8 % on H100).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

from pythia_train.configs import TrainConfig, model_config
from pythia_train.data import ArrayRows
from pythia_train.train import peak_flops, train

DEFAULT_MICRO_BATCH = {"160m": 16, "410m": 16, "1b": 8}


def parse_pairs(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in (p.split("=") for p in text.split(",") if p)}


def run_one(name: str, micro_batch: int, args) -> dict:
    cfg = model_config(name)
    global_batch = micro_batch * args.accum
    steps = args.warmup_steps + args.steps
    rng = np.random.default_rng(0)
    rows = ArrayRows(
        rng.integers(0, 50277, size=(steps * global_batch, args.seq + 1), dtype=np.uint16)
    )
    tc = TrainConfig(
        lr=6e-4,
        train_iters=steps,
        global_batch=global_batch,
        micro_batch=micro_batch,
        seq_length=args.seq,
        precision="bf16",
        compile=not args.no_compile,
        activation_checkpointing=args.activation_checkpointing,
        save_steps=[],
        peak_tflops=args.peak_tflops,
    )
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    records = train(cfg, tc, rows, device=args.device, progress=False)
    wall = time.perf_counter() - t0
    timed = records[args.warmup_steps :]
    tps = statistics.median(r["tokens_per_s"] for r in timed)
    peak = (
        args.peak_tflops * 1e12
        if args.peak_tflops
        else peak_flops(torch.device(args.device), "bf16")
    )
    flops_per_token = cfg.flops_per_token(args.seq)
    return {
        "model": f"pythia-{name}",
        "micro_batch": micro_batch,
        "global_batch": global_batch,
        "seq_length": args.seq,
        "tokens_per_s": tps,
        "tflops": tps * flops_per_token / 1e12,
        "mfu": tps * flops_per_token / peak if peak else None,
        "step_time_s": statistics.median(r["step_time_s"] for r in timed),
        "max_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "final_loss": records[-1]["loss"],
        "wall_s_incl_compile": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="160m,410m,1b", help="comma-separated Pythia sizes")
    ap.add_argument("--micro-batch", default="", help="per-size micro batch, e.g. 1b=12,160m=32")
    ap.add_argument("--accum", type=int, default=1, help="micro-batches per optimizer step")
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup-steps", type=int, default=3, help="untimed steps (compilation)")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--activation-checkpointing", action="store_true")
    ap.add_argument("--peak-tflops", type=float, help="per-GPU dense bf16 peak (known GPUs: guessed)")
    ap.add_argument("--out", help="write the results as JSON here (default: $OUT/gpu_throughput.json)")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu for a smoke test")
    args = ap.parse_args()
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            sys.exit("gpu_throughput.py: no CUDA GPU available (--device cpu for a smoke test)")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        card = torch.cuda.get_device_name()
    else:
        card = f"{args.device} (smoke test, not a measurement)"
    mbs = {**DEFAULT_MICRO_BATCH, **parse_pairs(args.micro_batch)}
    print(f"# {card}, torch {torch.__version__}, bf16, compile={not args.no_compile}", flush=True)
    results = []
    for name in args.models.split(","):
        mb = mbs.get(name, 8)
        while mb >= 1:
            try:
                res = run_one(name, mb, args)
                break
            except torch.OutOfMemoryError:
                print(f"pythia-{name}: out of memory at micro batch {mb}, halving", flush=True)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                mb //= 2
        else:
            continue
        res["device"] = card
        results.append(res)
        mfu = f"{res['mfu']:.1%}" if res["mfu"] is not None else "n/a"
        mem = f"{res['max_memory_gib']:.1f} GiB" if res["max_memory_gib"] is not None else "n/a"
        print(
            f"| {res['model']} | {res['micro_batch']} | {res['tokens_per_s']:,.0f} | "
            f"{res['tflops']:.0f} | {mfu} | {mem} |",
            flush=True,
        )
    out = args.out or os.path.join(os.environ.get("OUT", "."), "gpu_throughput.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"device": card, "torch": torch.__version__, "results": results}, f, indent=2)
    print(f"# results in {out}")


if __name__ == "__main__":
    main()
