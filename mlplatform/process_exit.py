"""Processes that load the code location exit without tearing their heap down.

Once a Python process has run its exit handlers, what is left is the interpreter's teardown: clearing
every module and collecting every cycle among the ~500k objects Dagster, Great Expectations, pandas and
the rest leave behind, about 1 s of CPU in every command, run worker and step process, after the work
(and the run) has ended. `gc.freeze()` spares it: frozen objects are never collected, and the operating
system takes the memory back at once. What it skips is the finalizers of objects only a collection would
free (a cycle's `__del__`), which Python never promises to run at exit: the platform's files, connections
and runs are closed or committed by the code that opened them and by the exit handlers, which all still run,
in their order.

One side effect is silenced on purpose: objects never collected look like leaks to DuckDB's bindings
(nanobind), which would print a leak report from C at the very end of every process. So once the handler has
run, file descriptor 2 points at /dev/null, while Python's `sys.stderr` keeps writing to the original
stream: the handlers registered earlier, which run after this one, and Python's own reports are still seen.
The exit code is untouched.
"""

import atexit
import contextlib
import gc
import os
import sys


def _writes_to_fd_2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # replaced by an object without a descriptor, or closed
        return False


def _exit_without_teardown() -> None:
    gc.freeze()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):  # replaced, closed, or reader gone
            stream.flush()
    if _writes_to_fd_2(sys.stderr):
        python_stderr = open(  # noqa: SIM115 (it lives until the process ends)
            os.dup(2),
            "w",
            buffering=1,
            encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
            errors=getattr(sys.stderr, "errors", None) or "backslashreplace",
        )
        # the teardown puts sys.__stderr__ back as sys.stderr: both write to the original stream
        sys.stderr = sys.__stderr__ = python_stderr  # type: ignore[misc]
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def exit_without_teardown() -> None:
    """Skip the interpreter's teardown at this process's exit (idempotent)."""
    atexit.unregister(_exit_without_teardown)
    atexit.register(_exit_without_teardown)
