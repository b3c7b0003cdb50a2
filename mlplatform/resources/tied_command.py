"""Run a command that dies with the process that started it: `python -I -S tied_command.py COMMAND [ARGS...]`.

A command a run worker starts (dbt) outlives it otherwise: killed with `kill -9` or by the kernel's OOM
killer, the worker leaves its dbt running, still writing the marts and holding the DuckDB warehouse's
lock, while run monitoring marks the run FAILED and its retry starts a dbt of its own, which finds the
file locked and fails the retry. Measured here: a dbt whose caller was killed went on for 5 s and more,
the warehouse locked throughout.

On Linux the command is started with the parent-death signal set to SIGKILL (`prctl(PR_SET_PDEATHSIG)`,
kept across `exec`, so the command keeps this process's id and the caller's signals, a run's interrupt
included, reach it). A caller that died before the signal was set is caught by `TIED_TO` (the caller's
process id, when given): the command is not started. Elsewhere the command runs as it would untied.

Standard library only: it runs in a bare interpreter (`-I -S`) before the command replaces it.
"""

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# the caller's process id, set by the caller (not MLPLATFORM_: the dbt parse cache is keyed on those)
TIED_TO = "TIED_COMMAND_CALLER_PID"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def tie_to_parent() -> None:
    """SIGKILL this process when its parent ends; exit at once if the expected parent has ended already."""
    if sys.platform != "linux":
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    expected = os.environ.get(TIED_TO)
    if expected and int(expected) != os.getppid():
        sys.exit(f"{sys.argv[1]} not started: the process that asked for it ({expected}) has ended")


@contextmanager
def started_here() -> Iterator[None]:
    """Within it, the tied commands this process starts know it as their caller (in their environment);
    the process's environment is restored after, so its other children never inherit another's id."""
    previous = os.environ.get(TIED_TO)
    os.environ[TIED_TO] = str(os.getpid())
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(TIED_TO, None)
        else:
            os.environ[TIED_TO] = previous


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -I -S tied_command.py COMMAND [ARGS...]")
    tie_to_parent()
    os.execv(sys.argv[1], sys.argv[1:])  # nosec B606 (the command its caller named, as the caller would run it)


if __name__ == "__main__":
    main()
