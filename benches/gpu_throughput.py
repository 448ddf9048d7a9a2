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

`--anchor` also times transformers' `GPTNeoXForCausalLM` (SDPA attention) of the same shape in
the same recipe and run (bf16 autocast, torch.compile, the same fused AdamW, clipping and loss),
as the anchor our model must beat.

`--device cpu` runs the same code on the CPU (a smoke test of the script, not a measurement:
tests/test_gpu_throughput_script.py runs it with pythia-14m so the script is known to work
before a GPU session is spent on it).

MFU = achieved model FLOP/s ÷ peak dense bf16 FLOP/s (989.5 TFLOP/s for H100/H200 SXM), with
FLOPs per token = 6·(non-embedding + output-head parameters) + 12·layers·d·seq (PaLM, App. B).
Goal from the issue: ≥ 45 % MFU at 1b (GPT-NeoX ≈ 35 % on A100, MPT-1B 41.8 % on H100).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

from pythia_train.configs import TrainConfig, model_config
from pythia_train.data import ArrayRows
from pythia_train.hf import config_to_hf
from pythia_train.model import lm_loss
from pythia_train.optim import build_optimizer
from pythia_train.train import peak_flops, train

DEFAULT_MICRO_BATCH = {"160m": 16, "410m": 16, "1b": 8}


def parse_pairs(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in (p.split("=") for p in text.split(",") if p)}


def random_rows(n: int, seq: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 50277, size=(n, seq + 1), dtype=np.uint16)


def train_config(micro_batch: int, args) -> TrainConfig:
    return TrainConfig(
        lr=6e-4,
        train_iters=args.warmup_steps + args.steps,
        global_batch=micro_batch * args.accum,
        micro_batch=micro_batch,
        seq_length=args.seq,
        precision="bf16",
        compile=not args.no_compile,
        activation_checkpointing=args.activation_checkpointing,
        save_steps=[],
        peak_tflops=args.peak_tflops,
    )


def train_transformers(name: str, tc: TrainConfig, rows: np.ndarray, device: str) -> list[dict]:
    """The anchor: transformers' model through the same step as `train` (one micro-batch per
    step), timed the same way: from the batch's upload to the loss read back."""
    import transformers

    cfg = model_config(name)
    conf = transformers.GPTNeoXConfig(**config_to_hf(cfg), attn_implementation="sdpa")
    torch.manual_seed(tc.seed)
    with torch.device(device):
        model = transformers.GPTNeoXForCausalLM(conf)
    model.train()
    optimizer = build_optimizer(model, tc)

    def loss_of(x, y):
        return lm_loss(model(x).logits, y)

    if tc.compile:
        loss_of = torch.compile(loss_of)
    records = []
    for step in range(tc.train_iters):
        t0 = time.perf_counter()
        batch = rows[step * tc.global_batch : (step + 1) * tc.global_batch]
        tokens = torch.from_numpy(batch.astype(np.int64)).to(device, non_blocking=True)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            loss = loss_of(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = float(loss.detach())
        dt = time.perf_counter() - t0
        records.append(
            {"loss": loss_value, "tokens_per_s": tc.tokens_per_step() / dt, "step_time_s": dt}
        )
    return records


def run_one(name: str, micro_batch: int, args, impl: str = "pythia_train") -> dict:
    cfg = model_config(name)
    tc = train_config(micro_batch, args)
    rows = random_rows(tc.train_iters * tc.global_batch, args.seq)
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    if impl == "transformers":
        records = train_transformers(name, tc, rows, args.device)
    else:
        records = train(cfg, tc, ArrayRows(rows), device=args.device, progress=False)
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
        "impl": impl,
        "micro_batch": micro_batch,
        "global_batch": tc.global_batch,
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
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", default="160m,410m,1b", help="comma-separated Pythia sizes")
    ap.add_argument("--micro-batch", default="", help="per-size micro batch, e.g. 1b=12,160m=32")
    ap.add_argument("--accum", type=int, default=1, help="micro-batches per optimizer step")
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup-steps", type=int, default=3, help="untimed steps (compilation)")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--activation-checkpointing", action="store_true")
    ap.add_argument(
        "--peak-tflops", type=float, help="per-GPU dense bf16 peak (known GPUs: guessed)"
    )
    ap.add_argument(
        "--out", help="write the results as JSON here (default: $OUT/gpu_throughput.json)"
    )
    ap.add_argument(
        "--anchor", action="store_true", help="also time transformers' GPTNeoXForCausalLM"
    )
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
    if args.anchor and args.accum != 1:
        sys.exit("gpu_throughput.py: --anchor times one micro-batch per step; drop --accum")
    mbs = {**DEFAULT_MICRO_BATCH, **parse_pairs(args.micro_batch)}
    impls = ["pythia_train", "transformers"] if args.anchor else ["pythia_train"]
    out = args.out or os.path.join(os.environ.get("OUT", "."), "gpu_throughput.json")
    print(f"# {card}, torch {torch.__version__}, bf16, compile={not args.no_compile}", flush=True)
    print("| model | impl | micro batch | tokens/s | TFLOP/s | MFU | peak memory |", flush=True)
    results = []
    for name in args.models.split(","):
        mb = mbs.get(name, 8)
        for impl in impls:
            res = run_halving(name, mb, args, impl)
            if res is None:
                continue
            res["device"] = card
            results.append(res)
            mfu = f"{res['mfu']:.1%}" if res["mfu"] is not None else "n/a"
            mem = f"{res['max_memory_gib']:.1f} GiB" if res["max_memory_gib"] is not None else "n/a"
            print(
                f"| {res['model']} | {impl} | {res['micro_batch']} | {res['tokens_per_s']:,.0f} | "
                f"{res['tflops']:.0f} | {mfu} | {mem} |",
                flush=True,
            )
            # Written after every run, so a run cut short still leaves its figures.
            with open(out, "w", encoding="utf-8") as f:
                json.dump(
                    {"device": card, "torch": torch.__version__, "results": results}, f, indent=2
                )
    print(f"# results in {out}")


def run_halving(name: str, mb: int, args, impl: str) -> dict | None:
    """One measurement, halving the micro batch on out-of-memory; None if even 1 does not fit."""
    while mb >= 1:
        try:
            return run_one(name, mb, args, impl)
        except torch.OutOfMemoryError:
            print(f"pythia-{name} ({impl}): out of memory at micro batch {mb}, halving", flush=True)
            mb //= 2
        finally:
            # Compiled graphs hold their model; free both before the next measurement.
            torch._dynamo.reset()
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return None


if __name__ == "__main__":
    main()
