"""What `make demo` shows in the terminal: a line per stage, nothing from the runs themselves."""

import logging
import sys

from mlplatform.demo import Progress, silenced

STAGES = 5  # generated, ingested, built, scored, monitored


def test_runs_print_nothing_while_silenced_and_stages_print_one_line_each(capfd):
    progress = Progress(live=False)
    with silenced():
        print("dbt: 85 of 85 PASS ...")
        print("a warning", file=sys.stderr)
        logging.getLogger("mlflow.pyfunc").warning("Passing a Python object as `python_model` ...")
    progress.step("building")  # only shown on a terminal, in place
    progress.done("built the marts")
    out, err = capfd.readouterr()
    assert err == "" and out.count("\n") == 1 and out.endswith("] built the marts\n")


def test_on_a_terminal_the_step_in_progress_is_replaced_by_its_result(capsys):
    progress = Progress(live=True)
    progress.step("ingesting 2026-03-02 (2/25)")
    progress.done("ingested 25 days")
    out = capsys.readouterr().out
    assert out.startswith("\r\033[K  ingesting") and "\r\033[K[" in out and out.count("\n") == 1


def test_the_demo_fits_a_screen(built_state):
    _, summary = built_state
    assert STAGES + len(summary.format().splitlines()) + 1 <= 40  # + the closing "done in ..." line
