"""dbt run as a command of its own environment: its version read offline, no dbt-core in this process."""

import logging
from pathlib import Path

import pytest
from packaging.version import Version

from mlplatform.profiles import build_resources, dbt_resource
from mlplatform.resources.dbt_command import installed_dbt_core
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
    with caplog.at_level(logging.WARNING):
        invocation = dbt_resource("local").cli(["parse", "--quiet"], target_path=tmp_path / "target")
        assert invocation.wait().is_successful()
    assert (tmp_path / "target" / "manifest.json").exists()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
