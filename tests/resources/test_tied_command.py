"""A command tied to its caller dies with it, as dbt must with a killed run worker (it holds the warehouse's
lock)."""

import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

from mlplatform.resources import tied_command
from tests.prod.services import wait_until

TIED = [sys.executable, "-I", "-S", tied_command.__file__]
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the tie is Linux's parent-death signal")


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def killed_caller_leaves(command: list[str], tmp_path) -> int:
    """The pid of `command` started by a caller that is then killed with SIGKILL, as a run worker is."""
    caller = textwrap.dedent(f"""
        import subprocess, sys, time
        child = subprocess.Popen({command!r}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        print(child.pid, flush=True)
        time.sleep(600)
    """)
    with subprocess.Popen([sys.executable, "-c", caller], stdout=subprocess.PIPE, text=True) as process:
        try:
            pid = int(process.stdout.readline())
            wait_until(lambda: running(pid) and psutil.Process(pid).name() == "sleep", 30, "the command")
        finally:
            process.kill()
    return pid


def test_a_tied_command_dies_when_its_caller_is_killed_and_an_untied_one_does_not(tmp_path):
    untied = killed_caller_leaves(["sleep", "60"], tmp_path)
    tied = killed_caller_leaves([*TIED, "/bin/sleep", "60"], tmp_path)
    try:
        wait_until(lambda: not running(tied), 5, "the tied command ending with its caller")
        assert running(untied)  # what a killed run worker's dbt did
    finally:
        for pid in (tied, untied):
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_command_replaces_the_launcher_and_its_exit_status_is_the_commands():
    shell = subprocess.run([*TIED, "/bin/sh", "-c", 'echo "$PPID"; exit 3'], capture_output=True, text=True)
    assert shell.returncode == 3
    assert int(shell.stdout) == os.getpid()  # no process in between: the caller's signals reach the command


def test_a_command_whose_caller_ended_before_the_tie_is_not_started(tmp_path):
    marker = tmp_path / "started"
    gone = {**os.environ, tied_command.TIED_TO: str(os.getpid() + 1_000_000)}
    late = subprocess.run([*TIED, "/usr/bin/touch", str(marker)], env=gone, capture_output=True, text=True)
    assert late.returncode != 0 and "has ended" in late.stderr
    assert not marker.exists()
    mine = {**os.environ, tied_command.TIED_TO: str(os.getpid())}
    assert subprocess.run([*TIED, "/usr/bin/touch", str(marker)], env=mine).returncode == 0
    assert marker.exists()
