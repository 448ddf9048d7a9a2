"""torchrun environment, process groups, and DDP / FSDP2 wrapping.

``torchrun`` (single node, or multi-node through its rendezvous) sets RANK, WORLD_SIZE and
LOCAL_RANK; without them we run as a single process. gloo on CPU, NCCL on GPUs.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from pythia_train.model import GPTNeoX

__all__ = [
    "DistEnv",
    "PeerFailed",
    "init_distributed",
    "wrap_model",
    "no_grad_sync",
    "all_reduce_mean",
    "all_or_none",
]


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None = None) -> DistEnv:
    """Join the torchrun group (if any) and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            # The way out named too: a CPU-only machine (or a CUDA-less torch) trains with cpu.
            raise RuntimeError(
                f"--device {device}: torch sees no CUDA GPU here; pass --device cpu, or leave "
                "--device out to use a GPU where there is one"
            )
        dev = torch.device("cuda", local_rank if device == "cuda" else torch.device(device).index)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device(device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs = {"device_id": dev} if dev.type == "cuda" else {}
        dist.init_process_group(backend=backend, **kwargs)
    return DistEnv(rank=rank, world_size=world, local_rank=local_rank, device=dev)


class PeerFailed(RuntimeError):
    """Another rank failed at work the ranks met after (``all_or_none``); its error says why."""


#: Set once the ranks have agreed that one of them failed: every rank is on its way out.
_failed_together = False


def failed_together() -> bool:
    """Whether this rank is leaving after a failure every rank knows of (``all_or_none``): a
    SIGTERM then is torchrun stopping it because a peer left first, and must not cut short
    the report of the failure (or the removal of a partial checkpoint)."""
    return _failed_together


def _first_failure(env: DistEnv, failed: bool, what: str) -> int | None:
    """The ranks meet (one small all-reduce, which also serves as their barrier) and learn the
    lowest rank that failed, or None."""
    global _failed_together
    flag = torch.tensor([env.rank if failed else env.world_size], device=env.device)
    try:
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        first = int(flag.item())
    except RuntimeError:
        if failed:
            return env.rank  # this rank's own error is the one to report
        # A peer left without meeting (a crash): gloo's "Connection closed by peer" named no
        # cause.
        raise PeerFailed(f"another rank stopped while {what} (its error says why)") from None
    if first == env.world_size:
        return None
    _failed_together = True
    return first


@contextlib.contextmanager
def all_or_none(env: DistEnv, what: str):
    """Work some ranks do while the others wait (rank 0 writing a checkpoint), or that may
    fail on some ranks only: the ranks meet at its end, and if it failed anywhere, every rank
    raises at once, the failing ranks their own error, the others ``PeerFailed`` naming the
    rank. A rank raising alone left the others waiting at their next collective until the
    process group's timeout (NCCL, or a peer on another node: 10 to 30 minutes), or, under
    gloo, stopped them with its "Connection closed by peer", which named no cause.
    ``what``: the work, as in "rank 0 failed WHAT"."""
    if not env.distributed:
        yield
        return
    try:
        yield
    except Exception:
        _first_failure(env, True, what)
        raise
    first = _first_failure(env, False, what)
    if first is not None:
        raise PeerFailed(f"rank {first} failed {what} (its error says why)")


def destroy_distributed(finished: bool = True) -> None:
    """Leave the group. ``finished``: every rank ran to the end, so they first wait for each
    other: a rank tearing gloo down while its peer still drained the last collectives (FSDP's)
    now and then aborted the peer at exit ("terminate called without an active exception",
    SIGABRT after a complete run). After an error the peers may be gone, so none is awaited."""
    if dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def wrap_model(
    model: GPTNeoX, env: DistEnv, strategy: str, amp_dtype: torch.dtype | None = None
) -> nn.Module:
    """DDP, or FSDP2 with one ``fully_shard`` unit per transformer layer plus the root.

    Under FSDP with bf16/fp16, parameters are all-gathered in that dtype and gradients reduced
    in fp32; the sharded master weights and the optimizer stay fp32.
    """
    if not env.distributed:
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [env.device.index] if env.device.type == "cuda" else None
        return DDP(model, device_ids=ids)
    if strategy == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = MixedPrecisionPolicy(param_dtype=amp_dtype, reduce_dtype=torch.float32)
        for layer in model.gpt_neox.layers:
            fully_shard(layer, mp_policy=mp)
        fully_shard(model, mp_policy=mp)
        return model
    raise ValueError(f"unknown parallel strategy {strategy!r} (ddp or fsdp)")


def unwrap(model: nn.Module) -> GPTNeoX:
    return model.module if hasattr(model, "module") else model


@contextlib.contextmanager
def no_grad_sync(model: nn.Module, skip: bool):
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulation."""
    if not skip:
        yield
        return
    if hasattr(model, "no_sync"):  # DDP
        with model.no_sync():
            yield
    elif hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def all_reduce_mean(value: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.distributed:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= env.world_size
    return value


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()
