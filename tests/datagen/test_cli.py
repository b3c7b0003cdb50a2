"""`mlplatform generate-data --next-day`: extend the landed data by a day, never into the future."""

from datetime import UTC, datetime, timedelta

from click.testing import CliRunner

from mlplatform.cli import main


def generate_data(landing, *options):
    return CliRunner().invoke(
        main,
        [
            "generate-data",
            "--landing-dir",
            str(landing),
            "--customers",
            "100",
            "--merchants",
            "20",
            "--transactions-per-day",
            "50",
            *options,
        ],
    )


def test_next_day_lands_the_day_after_the_newest_landed_one(tmp_path):
    landing = tmp_path / "landing"
    first = (datetime.now(UTC).date() - timedelta(days=5)).isoformat()
    assert generate_data(landing, "--start-date", first, "--days", "2").exit_code == 0
    result = generate_data(landing, "--next-day", "--days", "1", "--drift-amount-shift", "2.0")
    assert result.exit_code == 0, result.output
    days = sorted(p.name for p in (landing / "transactions").iterdir())
    expected = (datetime.now(UTC).date() - timedelta(days=3)).isoformat()
    assert days[-1] == f"date={expected}" and len(days) == 3


def test_days_after_today_are_refused_with_the_reason(tmp_path):
    landing = tmp_path / "landing"
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    assert generate_data(landing, "--start-date", yesterday, "--days", "1").exit_code == 0
    result = generate_data(landing, "--next-day", "--days", "2")
    assert result.exit_code != 0 and "have no partition yet" in result.output
    assert not (landing / "transactions" / f"date={datetime.now(UTC).date() + timedelta(days=1)}").exists()


def test_next_day_needs_landed_data(tmp_path):
    result = generate_data(tmp_path / "empty", "--next-day", "--days", "1")
    assert result.exit_code != 0 and "--next-day needs landed transactions" in result.output


def test_help_lists_every_bad_file_kind_and_answers_to_dash_h():
    from click.testing import CliRunner

    from mlplatform.cli import main
    from mlplatform.schemas import BAD_FILE_KINDS

    runner = CliRunner()
    assert runner.invoke(main, ["-h"]).exit_code == 0
    help_text = runner.invoke(main, ["generate-data", "-h"]).output
    assert all(kind in help_text for kind in BAD_FILE_KINDS) and "Days of data" in help_text
    wrong = runner.invoke(main, ["generate-data", "--bad-file", "nonsense"])
    assert wrong.exit_code == 2 and "missing_column" in wrong.output


def test_every_command_option_and_argument_is_explained_in_its_help():
    import click

    unexplained = []
    for name, command in main.commands.items():
        if not command.help:
            unexplained.append(name)
        for param in command.params:
            if isinstance(param, click.Option) and not param.help:
                unexplained.append(f"{name} {param.opts[0]}")
            if isinstance(param, click.Argument) and param.human_readable_name not in (command.help or ""):
                unexplained.append(f"{name} {param.human_readable_name}")
    assert not unexplained, f"without help: {unexplained}"
