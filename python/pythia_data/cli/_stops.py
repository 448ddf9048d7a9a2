"""Signals that stop a command at a point where it can stop cleanly."""

from __future__ import annotations

import signal
import threading

#: Where a command keeps resumable work (``click.Context.meta``, shared by every context):
#: the folder an interruption before the command's own handlers must not be said to remove.
WORK_DIR_KEY = "pythia_data.work_dir"


#: Whether this process is the `pythia-data` program, which exits once its command is done (set
#: by `pythia_data.cli.run`, never when a program or test calls the commands in-process). Then a
#: finished command leaves stop signals ignored: one that comes while the process exits would
#: otherwise report its complete output as interrupted (status 130 or 143) or kill it.
process_ends_with_command = False

#: The signal that stopped the command, for its exit status; None: none was noted (a
#: KeyboardInterrupt from Python's own SIGINT handler, or raised by a test).
_stopped_by: signal.Signals | None = None


def reset_stop() -> None:
    """Forget an earlier command's stop (a program or test may run several in one process)."""
    global _stopped_by
    _stopped_by = None


def note_stop(signum: int) -> None:
    """Remember the first stop signal: the one that stopped the command, whatever follows."""
    global _stopped_by
    if _stopped_by is None:
        _stopped_by = signal.Signals(signum)


def exit_status() -> int:
    """The status of a command stopped by a signal: 128 + its number, as a shell reports a
    process the signal killed and as pythia-train exits, so that a job script can tell a
    scheduler's SIGTERM (143) from Ctrl-C (130, also for an interrupt with no signal noted)."""
    return 128 + (_stopped_by or signal.SIGINT)


#: Every status `exit_status` returns.
STOP_STATUSES = (128 + signal.SIGINT, 128 + signal.SIGTERM)


def ignoring_stops_until_exit() -> bool:
    """Whether the command is done and the process only exits, with stop signals now ignored:
    they have nothing left to stop. Then no earlier handler may be put back, not even for an
    instant: a signal in between would report the finished command as interrupted."""
    if not process_ends_with_command or threading.current_thread() is not threading.main_thread():
        return False
    for sig in StopRequests.SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    return True


class StopRequests:
    """Ctrl-C and SIGTERM (how SLURM and other schedulers stop jobs), noted, then raised as
    KeyboardInterrupt by ``check()``, where the command can stop cleanly: a tokenize run
    checks at each progress call, where it checkpoints and stops, so a requeued job continues
    from there. A stop that comes during a final step (moving an output into place, which checks
    nowhere) lets that step end, and the output is complete: raised there, it would report an
    interrupted run, and the same command would redo all the work. A second signal is raised
    at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self.previous = {}

    def _handle(self, signum, frame):
        note_stop(signum)
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self  # signal handlers can only be set there
        for sig in self.SIGNALS:
            # An ignored signal stays ignored, as Python leaves it: a job a script starts in
            # the background (`cmd &`) ignores SIGINT, and a Ctrl-C meant for the script must
            # not stop it.
            if signal.getsignal(sig) is not signal.SIG_IGN:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type, *exc):
        # Done, or stopped (the command now says so and exits): a further signal has nothing
        # left to stop, and with the earlier handlers back it killed the exiting process
        # (status -2 or -15 instead of 130 or 143).
        stopped = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        if (exc_type is None or stopped) and ignoring_stops_until_exit():
            return
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def check(self):
        if self.requested:
            raise KeyboardInterrupt
