"""dbt run as a command of its own environment: its version read offline, no dbt-core in this process."""

import logging
import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from packaging.version import Version

from mlplatform.profiles import build_resources, dbt_resource
from mlplatform.resources.dbt_command import INVOCATIONS_KEPT, installed_dbt_core
from mlplatform.settings import DBT_EXECUTABLE, PROJECT_ROOT


def test_the_version_is_the_pinned_dbt_core_of_the_dbt_environment():
    pinned = next(
        line.split("==")[1]
        for line in (PROJECT_ROOT / "requirements-dbt.lock").read_text().splitlines()
        if line.startswith("dbt-core==")
    )
    assert installed_dbt_core(Path(DBT_EXECUTABLE)) == Version(pinned)


def test_an_environment_without_dbt_core_is_named(tmp_path):
    (tmp_path / "bin").mkdir()
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        installed_dbt_core(tmp_path / "bin" / "dbt")


def test_a_dbt_run_asks_no_one_its_version_and_opens_no_adapter_here(tmp_path, monkeypatch, caplog):
    """`dbt --version` asks PyPI for the latest release: a dbt run must not call it, nor warn that it
    could not open dbt's adapter in this process (dbt-core is not installed here)."""
    import dagster_dbt.core.resource

    def no_version_call(command, *args, **kwargs):
        raise AssertionError(f"ran {command}")

    monkeypatch.setattr(dagster_dbt.core.resource, "check_output", no_version_call)
    warehouse = build_resources(profile="local", state=tmp_path)["warehouse"]
    for name, value in warehouse.dbt_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))  # where dagster-dbt makes its folders
    earlier = invocation_folders(tmp_path / "target", count=INVOCATIONS_KEPT + 5, days_old=2)
    with caplog.at_level(logging.WARNING):
        invocation = dbt_resource("local").cli(["parse", "--quiet"])
        assert invocation.wait().is_successful()
    assert (invocation.target_path / "manifest.json").exists()
    assert invocation.target_path.parent == tmp_path / "target"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    # the run pruned the folders of the earlier invocations beyond the newest INVOCATIONS_KEPT
    assert [d for d in earlier if d.exists()] == earlier[:INVOCATIONS_KEPT]


def invocation_folders(target: Path, count: int, days_old: float, apart: float = 86_400) -> list[Path]:
    """`count` folders as dagster-dbt's invocations leave them, newest first, `apart` seconds apart, the
    newest `days_old` days old."""
    folders = []
    for age in range(count):
        folder = target / f"dbt_models-{age:07d}-0000000"
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text("{}")
        stamp = time.time() - days_old * 86_400 - age * apart
        os.utime(folder, (stamp, stamp))
        folders.append(folder)
    return folders


def test_only_the_newest_invocation_folders_are_kept_and_nothing_else_is_touched(tmp_path):
    from mlplatform.resources.dbt_command import prune_invocations

    folders = invocation_folders(tmp_path, count=INVOCATIONS_KEPT + 3, days_old=1)
    (tmp_path / "compiled").mkdir()  # dbt's own output of a plain `dbt run`: no manifest inside
    os.utime(tmp_path / "compiled", (0, 0))
    (tmp_path / "manifest.json").write_text("{}")
    assert prune_invocations(tmp_path) == folders[INVOCATIONS_KEPT:]
    assert [d for d in folders if d.exists()] == folders[:INVOCATIONS_KEPT]
    assert (tmp_path / "compiled").is_dir() and (tmp_path / "manifest.json").is_file()
    assert prune_invocations(tmp_path) == []  # again: nothing more to remove
    assert prune_invocations(tmp_path / "missing") == []


def test_a_folder_written_to_within_the_grace_period_is_never_removed(tmp_path):
    """A long dbt build may still be writing to its folder, however many invocations came after it."""
    from mlplatform.resources.dbt_command import INVOCATION_GRACE, prune_invocations

    folders = invocation_folders(tmp_path, count=INVOCATIONS_KEPT + 3, days_old=0, apart=60)
    oldest = datetime.fromtimestamp(folders[-1].stat().st_mtime, UTC)
    assert prune_invocations(tmp_path, now=oldest + INVOCATION_GRACE - timedelta(seconds=1)) == []
    assert prune_invocations(tmp_path, now=oldest + INVOCATION_GRACE + timedelta(seconds=1)) == folders[-1:]


def parse_reasons(target: Path) -> list[str]:
    """Why dbt could not reuse a partial parse in the invocation that wrote to `target` (none: it did)."""
    log = (target / "dbt.log").read_text()
    return [line.split("Unable to do partial parsing because ")[1][:60] for line in log.splitlines()
            if "Unable to do partial parsing because " in line]  # fmt: skip


def test_a_dbt_run_reuses_the_last_parse_on_the_same_connection_and_only_that(tmp_path, monkeypatch):
    """dagster-dbt hands every run the project's prepared parse, which dbt discards when the warehouse
    differs from the preparation's: each run on a state's warehouse used to parse the whole project."""

    def parse(state: Path, name: str) -> list[str]:
        warehouse = build_resources(profile="local", state=state)["warehouse"]
        for key, value in warehouse.dbt_env().items():
            monkeypatch.setenv(key, value)
        target = tmp_path / "runs" / name
        assert dbt_resource("local").cli(["parse"], target_path=target).wait().is_successful()
        return parse_reasons(target)

    first = parse(tmp_path / "a", "first")
    assert first and "profile has changed" in first[0]  # the prepared parse: another warehouse
    assert parse(tmp_path / "a", "second") == []  # this warehouse's own parse, reused
    assert "profile has changed" in parse(tmp_path / "b", "other warehouse")[0]  # never another's
    assert parse(tmp_path / "a", "third") == []


def test_an_unusable_partial_parse_costs_a_full_parse_and_nothing_else(tmp_path):
    """A cache that cannot be written, or that points at nothing, never fails the run's preparation."""
    from mlplatform.resources.dbt_command import PARTIAL_PARSE, reuse_partial_parse

    cache = tmp_path / "cache"
    reuse_partial_parse(cache, tmp_path / "run1", "env")  # nothing to reuse yet
    assert not (tmp_path / "run1" / PARTIAL_PARSE).exists()
    reuse_partial_parse(cache, tmp_path / "run2", "env")  # run1 never wrote its parse
    assert not (tmp_path / "run2" / PARTIAL_PARSE).exists()
    (tmp_path / "run2").mkdir()
    (tmp_path / "run2" / PARTIAL_PARSE).write_bytes(b"parsed")
    reuse_partial_parse(cache, tmp_path / "run3", "env")
    assert (tmp_path / "run3" / PARTIAL_PARSE).read_bytes() == b"parsed"
    reuse_partial_parse(cache, tmp_path / "run4", "other env")
    assert not (tmp_path / "run4" / PARTIAL_PARSE).exists()
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    reuse_partial_parse(not_a_folder / "cache", tmp_path / "run5", "env")  # cannot be written: no error


def test_a_dbt_run_dies_with_the_process_that_started_it(tmp_path):
    """A run worker killed mid-build (`kill -9`, the OOM killer) used to leave its dbt running and holding
    the warehouse's lock: the run's retry then failed on the lock."""
    import psutil

    from mlplatform.resources.tied_command import TIED_TO
    from tests.prod.services import wait_until

    caller = textwrap.dedent(f"""
        import time
        from mlplatform.profiles import dbt_resource
        invocation = dbt_resource("local").cli(["parse", "--no-partial-parse"], target_path={str(tmp_path)!r})
        print(invocation.process.pid, flush=True)
        time.sleep(600)
    """)
    with subprocess.Popen([sys.executable, "-c", caller], stdout=subprocess.PIPE, text=True) as process:
        try:
            dbt = psutil.Process(int(process.stdout.readline()))
            seen: dict = {}

            def read() -> bool:
                """Both read again while the tie execs dbt: /proc shows them empty then (seen under load)."""
                seen.update(command=dbt.cmdline(), environment=dbt.environ())
                return bool(seen["command"] and seen["environment"])

            wait_until(read, 10, "dbt's command line and environment")
            # started through the tie, which knows its caller
            assert DBT_EXECUTABLE in seen["command"] and seen["environment"][TIED_TO] == str(process.pid)
        finally:
            process.kill()
    # a whole parse takes seconds more; left to itself, dbt sometimes runs on with its output closed
    wait_until(lambda: not dbt.is_running() or dbt.status() == psutil.STATUS_ZOMBIE, 3, "dbt ending")
