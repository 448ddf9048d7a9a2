"""benches/gpu_throughput.py is run only when a GPU session is at hand, once: it must work the
first time. Its `--device cpu` mode runs the same code on a tiny model here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent.parent / "benches" / "gpu_throughput.py"


def test_the_gpu_benchmark_script_runs_end_to_end_on_cpu(tmp_path):
    out = tmp_path / "r.json"
    cmd = [
        sys.executable, str(SCRIPT), "--device", "cpu", "--models", "14m",
        "--micro-batch", "14m=2", "--seq", "32", "--steps", "2", "--warmup-steps", "1",
        "--no-compile", "--anchor", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    ours, anchor = report["results"]
    assert (ours["impl"], anchor["impl"]) == ("pythia_train", "transformers")
    for r in (ours, anchor):
        assert r["model"] == "pythia-14m" and r["micro_batch"] == 2 and r["seq_length"] == 32
        assert r["tokens_per_s"] > 0 and r["tflops"] > 0 and r["mfu"] is None
        assert 9.0 < r["final_loss"] < 12.0  # random init on random tokens: about ln(50k) = 10.8
    assert "| pythia-14m | pythia_train | 2 |" in done.stdout
    assert "| pythia-14m | transformers | 2 |" in done.stdout
