"""torchrun with 2 gloo processes on CPU: DDP and FSDP2 equal one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_fixtures import random_rows, tiny_config, write_rows

import pythia_data
import pythia_train
from pythia_data import PreshuffledDataset
from pythia_train.configs import TrainConfig
from pythia_train.hf import load_hf
from pythia_train.train import train

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch built without distributed"
)

SEQ = 16


@pytest.fixture(scope="module")
def rows_prefix(tmp_path_factory):
    d = tmp_path_factory.mktemp("rows")
    return write_rows(d / "rows", random_rows(128, SEQ, 512, seed=3))


def torchrun(prefix: Path, out: Path, *extra: str, steps: int = 4) -> list[dict]:
    """The pythia-train CLI under torchrun, 2 CPU processes; returns its JSONL records."""
    run_torchrun(prefix, out, *extra, steps=steps)
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def run_torchrun(
    prefix: Path,
    out: Path,
    *extra: str,
    steps: int = 4,
    env: dict | None = None,
    check: bool = True,
    script: Path | None = None,
    timeout: float = 240,
) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    # The workers import the very packages this test process uses (a source tree with the
    # built module, or the installed wheel).
    roots = {str(Path(m.__file__).resolve().parents[1]) for m in (pythia_data, pythia_train)}
    env["PYTHONPATH"] = os.pathsep.join([*sorted(roots), env.get("PYTHONPATH", "")])
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        *([str(script)] if script is not None else ["-m", "pythia_train.cli"]),
        "--model",
        "pythia-14m",
        "--num-layers",
        "2",
        "--hidden-size",
        "64",
        "--num-attention-heads",
        "4",
        "--vocab-size",
        "512",
        "--gelu",
        "exact",
        "--data",
        str(prefix),
        "--seq-length",
        str(SEQ),
        "--global-batch",
        "8",
        "--micro-batch",
        "2",
        "--train-iters",
        str(steps),
        "--lr",
        "1e-2",
        "--warmup",
        "0.2",
        "--device",
        "cpu",
        "--save",
        str(out),
        "--save-steps",
        f"2,{steps}",
        "--log-file",
        str(out / "log.jsonl"),
        "--no-progress",
        *extra,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def single_process(prefix: Path, out: Path, steps: int = 4) -> list[dict]:
    cfg = TrainConfig(
        lr=1e-2,
        warmup=0.2,
        train_iters=steps,
        global_batch=8,
        micro_batch=8,
        seq_length=SEQ,
        save_steps=[steps],
    )
    return train(tiny_config(), cfg, PreshuffledDataset(prefix), save=out, progress=False)


def assert_same_run(records, reference, ckpt_a: Path, ckpt_b: Path):
    assert [r["step"] for r in records] == [r["step"] for r in reference]
    assert [r["loss"] for r in records] == pytest.approx([r["loss"] for r in reference], rel=1e-5)
    assert [r["grad_norm"] for r in records] == pytest.approx(
        [r["grad_norm"] for r in reference], rel=1e-4
    )
    # Weights: Adam divides by sqrt(v) + 1e-8, so an element whose gradient is rounding noise
    # takes a full-size step of either sign. The key bias is such an element outside the rotary
    # channels (q·b_k is the same for every key, and softmax ignores it), so it is left out.
    a, b = load_hf(ckpt_a), load_hf(ckpt_b)
    H = a.cfg.num_heads
    for (name, x), y in zip(a.named_parameters(), b.parameters(), strict=True):
        if name.endswith("query_key_value.bias"):
            x, y = x.view(H, 3, -1)[:, [0, 2]], y.view(H, 3, -1)[:, [0, 2]]
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.slow
def test_ddp_two_processes_equal_one_process(rows_prefix, tmp_path):
    reference = single_process(rows_prefix, tmp_path / "one")
    records = torchrun(rows_prefix, tmp_path / "ddp", "--parallel", "ddp")
    assert_same_run(records, reference, tmp_path / "ddp" / "step4", tmp_path / "one" / "step4")
    # Every rank saved its RNG state into the one checkpoint.
    assert sorted(p.name for p in (tmp_path / "ddp" / "step2" / "rng").iterdir()) == [
        "rank0.pt",
        "rank1.pt",
    ]


@pytest.mark.slow
def test_fsdp_two_processes_equal_one_process_and_resume_exactly(rows_prefix, tmp_path):
    reference = single_process(rows_prefix, tmp_path / "one")
    records = torchrun(rows_prefix, tmp_path / "fsdp", "--parallel", "fsdp")
    assert_same_run(records, reference, tmp_path / "fsdp" / "step4", tmp_path / "one" / "step4")
    # Resume the sharded run from step 2: gathered checkpoints re-shard to the same run.
    resumed = torchrun(
        rows_prefix,
        tmp_path / "again",
        "--parallel",
        "fsdp",
        "--resume",
        str(tmp_path / "fsdp" / "step2"),
    )
    assert [r["loss"] for r in resumed] == [r["loss"] for r in records[2:]]


@pytest.mark.slow
def test_rank_0_builds_a_missing_index_while_the_other_ranks_wait(tmp_path):
    # GPT-NeoX's order. Every rank built the index at once: on several hosts sharing the
    # folder, each did the whole build, and one could remove another host's temporaries.
    docs = write_rows(tmp_path / "docs", random_rows(300, 3 * SEQ, 512, seed=5))
    # An index of 4 M samples takes long enough to build that ranks starting together overlap;
    # the run stops after one step.
    proc = run_torchrun(
        *(docs, tmp_path / "run", "--data-format", "gpt-neox", "--exit-interval", "1"),
        steps=500_000,
        env={"PYTHIA_INDEX_TIMING": "1"},
    )
    # The engine's timeline ends each build with this line; the other rank reused the index.
    assert proc.stderr.count("files synced and renamed") == 1, proc.stderr[-3000:]
    assert len(list(tmp_path.glob("docs_*indexmap_*_doc_idx.npy"))) == 1

    # Rank 0 refusing the index (here: its record altered) is the error; the rank waiting for
    # it says so, not gloo's "Connection closed by peer".
    record = next(tmp_path.glob("docs_*indexmap_*_meta.json"))
    record.write_text(record.read_text().replace('"documents": [0, 300]', '"documents": [0, 5]'))
    proc = run_torchrun(
        *(docs, tmp_path / "again", "--data-format", "gpt-neox", "--exit-interval", "1"),
        steps=500_000,
        check=False,
    )
    assert proc.returncode != 0
    assert "recorded [0,5], this build [0,300]" in proc.stderr, proc.stderr[-3000:]
    assert "rank 0 stopped while opening" in proc.stderr, proc.stderr[-3000:]
    assert "Connection closed" not in proc.stderr, proc.stderr[-3000:]


# Test-only: the CLI with one function failing on one rank (a full disk), that rank's process
# then staying until the other rank has left, as a failed peer's connections do under NCCL or
# on another node (torchrun stops only its own node's ranks): a rank waiting for it at a
# barrier or collective waits for the process group's timeout. Each rank records when it
# failed and when it left.
FAILING_CLI = """
import errno, importlib, os, sys, time
from pathlib import Path

rank, world = os.environ["RANK"], int(os.environ["WORLD_SIZE"])
times = Path(os.environ["PYTHIA_TEST_TIMES"])
if rank == os.environ["PYTHIA_TEST_FAIL_RANK"]:
    module, name, call = os.environ["PYTHIA_TEST_FAIL"].split(":")
    module = importlib.import_module(module)
    real, calls = getattr(module, name), []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == int(call):
            (times / f"failed{rank}").write_text(str(time.time()))
            where = str(args[0]) if args and isinstance(args[0], (str, os.PathLike)) else None
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), where)
        return real(*args, **kwargs)

    setattr(module, name, failing)
    import pythia_train.distributed as distributed

    leave = distributed.destroy_distributed

    def stay(*args, **kwargs):
        others = [times / f"left{r}" for r in range(world) if str(r) != rank]
        deadline = time.time() + 60
        while time.time() < deadline and not all(f.exists() for f in others):
            time.sleep(0.1)
        leave(*args, **kwargs)

    distributed.destroy_distributed = stay

from pythia_train.cli import main

try:
    main(prog_name="pythia-train")
finally:
    (times / f"left{rank}").write_text(str(time.time()))
"""


def run_failing(prefix: Path, out: Path, tmp: Path, fail: str, rank: int, *extra: str):
    """The CLI under torchrun with ``fail`` ('module:function:N', its Nth call) raising a full
    disk's OSError on ``rank``; returns the run and how long the other rank went on after it."""
    times = tmp / "times"
    times.mkdir(exist_ok=True)
    for f in times.iterdir():
        f.unlink()
    script = tmp / "failing_cli.py"
    script.write_text(FAILING_CLI)
    env = {"PYTHIA_TEST_FAIL": fail, "PYTHIA_TEST_FAIL_RANK": str(rank)}
    env["PYTHIA_TEST_TIMES"] = str(times)
    proc = run_torchrun(prefix, out, *extra, env=env, check=False, script=script, timeout=120)
    assert proc.returncode != 0, proc.stderr[-3000:]
    failed = float((times / f"failed{rank}").read_text())
    left = times / f"left{1 - rank}"  # none: torchrun killed it, still waiting
    return proc, (float(left.read_text()) if left.exists() else float("inf")) - failed


def errors(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("pythia-train: error:")]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fail", "rank", "cause"),
    [
        ("pythia_train.checkpoint:write_hf_files:2", 0, "No space left on device (writing "),
        ("torch:save:2", 1, "No space left on device (writing "),
        # Rank 0 reads the rows whose digests the checkpoint records.
        ("pythia_train.train:batch_digest:3", 0, "No space left on device"),
    ],
)
def test_a_checkpoint_failing_on_one_rank_stops_every_rank_at_once(
    rows_prefix, tmp_path, fail, rank, cause
):
    # Rank 0 writing step 4 on a full disk raised alone: the other rank waited at the
    # checkpoint's barrier until rank 0's connections closed (under NCCL, or with rank 0 on
    # another node, the process group's timeout: 10 to 30 minutes), then said only gloo's
    # "Connection closed by peer". The ranks meet with a success flag instead.
    out = tmp_path / "run"
    proc, waited = run_failing(rows_prefix, out, tmp_path, fail, rank)
    said = errors(proc)
    assert len(said) == 2, proc.stderr[-3000:]
    assert any(cause in line for line in said), said
    assert any(
        line.endswith(
            f"rank {rank} failed writing the checkpoint {out / 'step4'} (its error says why)"
        )
        for line in said
    ), said
    assert "Connection closed" not in proc.stderr, proc.stderr[-3000:]
    assert waited < 15, (waited, proc.stderr[-3000:])
    # The last good checkpoint is the run's, and the run continues from it.
    assert (out / "latest").read_text() == "step2\n"
    assert not list(out.glob(".step*"))
    if "(writing " in cause:
        assert f"the last checkpoint is {out / 'step2'}" in proc.stderr
    if rank == 0:
        records = torchrun(rows_prefix, out, "--resume", str(out))
        assert [r["step"] for r in records] == [1, 2, 3, 4]
        assert (out / "latest").read_text() == "step4\n"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("start", "fail", "rank", "cause", "doing"),
    [
        # A new run: rank 0 alone checks and claims the --save folder and --log-file.
        (
            "new",
            "pythia_train.train:claim_log:1",
            0,
            "--log-file: [Errno 28] No space left on device",
            "checking the run's --save and --log-file",
        ),
        # A requeue before the first checkpoint: rank 0 alone cuts the killed launch's log.
        (
            "requeue",
            "pythia_train.train:truncate_log:1",
            0,
            "No space left on device",
            "cutting the --log-file {log} back to the start",
        ),
        # A resume: rank 0 alone cuts the log back to the checkpoint's step; each rank reads
        # its own RNG state.
        (
            "resume",
            "pythia_train.train:truncate_log:1",
            0,
            "No space left on device",
            "preparing --save and --log-file to continue from step 2",
        ),
        (
            "resume",
            "pythia_train.checkpoint:_set_rng_state:1",
            1,
            "No space left on device",
            "loading the checkpoint {out}",
        ),
    ],
)
def test_a_start_failing_on_one_rank_stops_every_rank_at_once(
    rows_prefix, tmp_path, start, fail, rank, cause, doing
):
    # Rank 0 refusing its outputs before joining the process group left the others waiting
    # to join it (a rank on another node: for the group's timeout); later, a rank failing
    # alone left the others at their next collective.
    out = tmp_path / "run"
    log = out / "log.jsonl"
    extra: tuple[str, ...] = ()
    if start == "requeue":  # a launch killed before its first checkpoint
        out.mkdir()
        log.write_text('{"step": 1, "loss": 1.0}\n')
        (out / ".log.jsonl.owner").write_text(f"{out.resolve()}\n")
        extra = ("--resume", str(out))
    elif start == "resume":
        torchrun(rows_prefix, out, "--exit-interval", "2")
        extra = ("--resume", str(out))
    before = log.read_text() if log.exists() else None
    proc, waited = run_failing(rows_prefix, out, tmp_path, fail, rank, *extra)
    said = errors(proc)
    assert len(said) == 2, proc.stderr[-3000:]
    assert any(cause in line for line in said), said
    doing = doing.format(log=log, out=out)
    assert f"pythia-train: error: rank {rank} failed {doing} (its error says why)" in said, said
    assert "Connection closed" not in proc.stderr, proc.stderr[-3000:]
    assert waited < 15, (waited, proc.stderr[-3000:])
    if before is not None:
        assert log.read_text() == before
