"""`pythia-data`: one module per subcommand, registered on the group below.

Errors the user can act on are never a traceback: a bad file is one clear line and exit status
1; a wrong flag or argument is click's usage error, status 2.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading

import click

from pythia_data import __version__
from pythia_data.cli import _stops
from pythia_data.errors import PythiaDataError

# Exceptions that describe a problem with the user's input, not a bug in this program.
USER_ERRORS = (
    PythiaDataError,
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    OSError,
    ValueError,
)


def _raise_interrupt(signum, frame):
    _stops.note_stop(signum)
    raise KeyboardInterrupt


def _full_disk_hint(e: BaseException) -> str:
    """What to do about a full disk or quota, which the engine reports in the system's words
    (its errors carry the message, not the errno), often naming a temporary file already
    removed: every command cleans up after it, or keeps work to continue from."""
    text = str(e)
    full = getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or any(
        m in text for m in ("No space left on device", "Disk quota exceeded")
    )
    if not full:
        return ""
    return (
        "\nfree space on that file system (or write the output to another), then run the same "
        "command again"
    )


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        # SLURM and other schedulers stop jobs with SIGTERM: treat it like Ctrl-C, so that every
        # command removes its temporary files (the default action would leave them behind).
        main_thread = threading.current_thread() is threading.main_thread()
        _stops.reset_stop()
        previous = signal.signal(signal.SIGTERM, _raise_interrupt) if main_thread else None
        succeeded = stopped = False
        try:
            result = super().invoke(ctx)
            succeeded = True
        except SystemExit as e:
            stopped = e.code in _stops.STOP_STATUSES  # a command stopped by a signal said so
            raise
        except BrokenPipeError:
            # The reader of our output went away (`| head`): stop quietly, as a tool killed by
            # SIGPIPE does, and keep the exit's flush of stdout from failing again.
            with contextlib.suppress(OSError, ValueError):  # ValueError: no real file
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(128 + signal.SIGPIPE)
        except USER_ERRORS as e:
            click.echo(f"error: {e}{_full_disk_hint(e)}", err=True)
            sys.exit(1)
        except OverflowError as e:  # a number beyond what the files can hold (64-bit)
            click.echo(f"error: a number given is too large: {e}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            # Reached only when a command had not begun its work, which it stops on its own.
            kept = ctx.meta.get(_stops.WORK_DIR_KEY)
            if kept is not None and os.path.isdir(kept):
                click.echo(
                    f"interrupted; an earlier run's work stays in {kept}: run the same command "
                    "again to continue from it",
                    err=True,
                )
            else:
                click.echo("interrupted; this run left no partial output behind", err=True)
            stopped = True
            sys.exit(_stops.exit_status())
        finally:
            # Done or stopped, the process only exits: a further signal is ignored (with the
            # earlier handler back, it killed the process, status -15 instead of 143).
            if main_thread and not ((succeeded or stopped) and _stops.ignoring_stops_until_exit()):
                signal.signal(signal.SIGTERM, previous)
        return result


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pythia-data")
def main() -> None:
    """Exact, fast tools for the Pythia / GPT-NeoX data pipeline.

    \b
    raw text --tokenize--> PREFIX.bin/.idx --build-index--> doc/sample/shuffle .npy
             --batch--> the rows trained at a step

    Run `pythia-data COMMAND --help` for each command's options.
    """


def run() -> None:
    """The `pythia-data` program: `main`, in a process that ends with the command."""
    _stops.process_ends_with_command = True
    main()


def _register() -> None:
    from pythia_data.cli import (
        batch,
        build_index,
        export_preshuffled,
        info,
        merge,
        tokenize,
        unshard,
        verify,
    )

    for module in (tokenize, info, merge, unshard, verify, build_index, batch, export_preshuffled):
        main.add_command(module.command)


_register()
