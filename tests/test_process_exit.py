"""A process that skips the interpreter's teardown still runs every exit handler once, keeps its exit code
and its Python output, and prints no leak report from C; what it skips is the teardown itself (a cycle's
finalizer)."""

import subprocess
import sys
import textwrap

PROCESS = textwrap.dedent(
    """
    import atexit, sys
    import duckdb

    atexit.register(lambda: print("handler registered before", file=sys.stderr))
    from mlplatform.process_exit import exit_without_teardown
    exit_without_teardown()
    exit_without_teardown()  # twice: still one
    atexit.register(lambda: print("handler registered after", file=sys.stderr))

    class Cycle:
        def __del__(self):
            open(sys.argv[1], "w").write("finalized at teardown")

    held = Cycle()
    held.itself = held
    held.connection = duckdb.connect()  # a DuckDB object only the final collection would free
    held.connection.execute("select 42").fetchall()
    sys.stdout.write("x" * 100_000)  # buffered, no newline
    sys.exit(3)
    """
)


def test_the_exit_keeps_handlers_code_and_output_and_skips_the_teardown(tmp_path):
    marker = tmp_path / "finalized"
    done = subprocess.run([sys.executable, "-c", PROCESS, str(marker)], capture_output=True, text=True)

    assert done.returncode == 3
    assert done.stdout == "x" * 100_000
    # the handler registered before runs after the freeze: its output still reaches stderr
    assert done.stderr.splitlines() == ["handler registered after", "handler registered before"]
    assert "nanobind" not in done.stderr  # the frozen DuckDB connection is not reported as a leak
    assert not marker.exists()  # the cycle was never collected: the teardown was skipped


def test_an_exception_in_an_earlier_handler_is_still_reported(tmp_path):
    process = textwrap.dedent(
        """
        import atexit
        def broken():
            raise RuntimeError("an earlier handler failed")
        atexit.register(broken)
        from mlplatform.process_exit import exit_without_teardown
        exit_without_teardown()
        """
    )
    done = subprocess.run([sys.executable, "-c", process], capture_output=True, text=True)

    assert done.returncode == 0
    assert "RuntimeError: an earlier handler failed" in done.stderr


def test_a_process_whose_stderr_was_replaced_still_exits_cleanly():
    process = textwrap.dedent(
        """
        import io, sys
        import duckdb
        from mlplatform.process_exit import exit_without_teardown
        exit_without_teardown()
        class Cycle: pass
        held = Cycle(); held.itself = held; held.connection = duckdb.connect()
        sys.stderr = io.StringIO()  # no descriptor: nothing to keep, the real stream still silenced
        sys.exit(4)
        """
    )
    done = subprocess.run([sys.executable, "-c", process], capture_output=True, text=True)

    assert done.returncode == 4
    assert done.stderr == ""  # neither a failing handler's report nor a leak report
