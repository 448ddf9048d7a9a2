"""Progress output: a redrawn bar on a terminal, whole lines in a log (SLURM, a pipe, a file)."""

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pythia_data
from pythia_data import progress

# The package under test, wherever it was imported from (the source tree, or an install).
PACKAGE = Path(pythia_data.__file__).resolve().parent
SAMPLE = PACKAGE / "data" / "sample-pile.jsonl.zst"


def _tokenize(tmp_path: Path, stderr) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(PACKAGE.parent))
    cmd = [sys.executable, "-m", "pythia_data.cli", "tokenize", str(SAMPLE), "-o"]
    return subprocess.run(
        [*cmd, str(tmp_path / "out")], stderr=stderr, stdout=subprocess.PIPE, env=env, check=True
    )


def test_tokenize_progress_in_a_log_is_whole_lines(tmp_path):
    run = _tokenize(tmp_path, subprocess.PIPE)
    err = run.stderr.decode()
    assert "\r" not in err
    bar_lines = [line for line in err.splitlines() if line.startswith("tokenize:")]
    # The first state, and the last one on close: the run is far shorter than a log interval.
    assert len(bar_lines) == 2, err
    assert "100%" in bar_lines[-1] and "docs=296" in bar_lines[-1]


def test_tokenize_progress_on_a_terminal_is_redrawn(tmp_path):
    main, tty = pty.openpty()
    fcntl.ioctl(tty, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        _tokenize(tmp_path, tty)
        os.close(tty)
        tty = None
        out = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO once the terminal's other side is closed and drained
                break
            if not chunk:
                break
            out += chunk
    finally:
        if tty is not None:
            os.close(tty)
        os.close(main)
    assert b"\rtokenize:" in out and b"100%" in out


def test_log_lines_come_at_most_once_per_interval(monkeypatch):
    log = io.StringIO()  # isatty() is False
    monkeypatch.setattr(sys, "stderr", log)
    with progress.progress_bar(total=1000, desc="job") as bar:
        for _ in range(1000):
            bar.update(1)
    lines = log.getvalue().splitlines()
    assert [line.split("|")[0].strip() for line in lines] == ["job:   0%", "job: 100%"]
    assert log.getvalue().endswith("\n")


def test_a_bar_that_does_not_stay_leaves_only_its_progress_lines(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    bar = progress.progress_bar(total=3, desc="index", leave=False)
    bar.update(3)
    bar.close()
    assert all(line.startswith("index:") for line in log.getvalue().splitlines())


def test_an_index_build_logs_a_line_per_stage_not_per_call(monkeypatch):
    # build_index reports every 65,536 samples: thousands of calls for the Pile. Each used to
    # redraw the bar, so a log got thousands of lines for a build of a minute.
    from pythia_data import index

    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    report, close = index._tqdm_progress(True)
    stages = ("doc_idx", "sample_idx", "shuffle_idx")
    for stage in stages:
        for done in range(0, 1_000_001, 1000):
            report(stage, done, 1_000_000)
    close()
    lines = log.getvalue().splitlines()
    # Each stage's start and end: a log used to stop at "0%" (the bar left no final line)
    # after an opening "index: 0.00entries" of no stage, and showed only the last stage's end.
    assert [line.split(":")[0] for line in lines] == [s for s in stages for _ in "se"], lines
    assert all("100%" in line for line in lines[1::2]), lines
    # A reused index reports no stage: no bar, no line.
    log.truncate(0)
    report, close = index._tqdm_progress(True)
    close()
    assert log.getvalue() == ""


def test_an_index_build_logs_each_stage_complete(monkeypatch, tmp_path):
    # doc_idx and sample_idx only ever showed "0%" in a log: the engine reports their end, but
    # the next stage reset the bar before a line for it was due.
    import numpy as np

    from pythia_data import IndexedDatasetBuilder
    from pythia_data.index import build_index

    with IndexedDatasetBuilder(tmp_path / "d", np.uint16) as b:
        for n in (300, 41, 700, 5, 96):
            b.add_document(np.arange(n))
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    build_index(tmp_path / "d", num_samples=50, seq_length=16, progress=True)
    ends = {}
    for line in log.getvalue().splitlines():
        stage, _, rest = line.partition(":")
        ends[stage] = rest.split("|")[0].strip()  # the last line of each stage
    assert ends == {"doc_idx": "100%", "sample_idx": "100%", "shuffle_idx": "100%"}, log.getvalue()


def test_tokenize_bar_says_finishing_once_all_input_is_read(monkeypatch):
    # With files at once, the last parts are appended after all input is read: the bar stays
    # at 100 % for as long as that copy takes, so it must say the run is not done yet.
    from pythia_data.cli._stops import StopRequests
    from pythia_data.cli.tokenize import _Bar

    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    bar = _Bar(enabled=True, stops=StopRequests())
    bar(10, 100, 400, 1000, 2_000_000)
    assert "finishing" not in bar.bar.postfix
    bar(20, 200, 1000, 1000, 5_000_000)
    assert "stage=finishing" in bar.bar.postfix and "docs=20" in bar.bar.postfix
    bar(20, 200, 1000, 1000, 5_000_000)
    bar.close()
    # The line written on close is the finished state.
    last = log.getvalue().splitlines()[-1]
    assert "100%" in last and "docs=20" in last and "finishing" not in last, last


def test_a_resumed_tokenize_bar_starts_where_the_run_resumed(monkeypatch):
    # The bar began at 0 and took the checkpoint's position as one jump: tqdm counted it as
    # this run's speed (an ETA near zero for minutes) and raised its line step to the jump's
    # size, so a log showed no line until as much again was read; and a line could pair new
    # bytes with the documents of the call before.
    import re
    import time

    from pythia_data.cli._stops import StopRequests
    from pythia_data.cli.tokenize import _Bar

    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setattr(progress, "LOG_SECONDS", 0.01)
    bar = _Bar(enabled=True, stops=StopRequests())
    bar(900, 9000, 900, 1000, 0)  # a run resumed at 90 %
    for read in range(910, 960, 10):
        time.sleep(0.03)  # past the log interval: each call is due a line
        bar(read, 10 * read, read, 1000, 1000 * (read - 900))
    bar.close()
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("tokenize:  90%"), lines
    shown = [re.search(r"\| (\d+)/.*docs=(\d+)", line).groups() for line in lines[1:-1]]
    assert shown == [(str(r), str(r)) for r in range(910, 960, 10)], lines
