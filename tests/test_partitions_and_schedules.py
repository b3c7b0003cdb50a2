"""The loop's schedules are on by default, and the daily partitions start where the data starts."""

import os
import subprocess
import sys

import pytest
from dagster import DefaultScheduleStatus

from mlplatform.definitions import defs
from mlplatform.settings import PARTITIONS_START_ENV_VAR, partitions_start_date


def test_the_nightly_schedules_are_on_by_default():
    assert defs.resolve_schedule_def("nightly_batch_scoring").default_status == DefaultScheduleStatus.RUNNING
    for schedule in defs.schedules:
        assert defs.resolve_schedule_def(schedule.name).default_status == DefaultScheduleStatus.RUNNING


def test_partitions_start_at_the_oldest_landed_day_unless_configured(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPLATFORM_STATE_DIR", str(tmp_path))
    monkeypatch.delenv(PARTITIONS_START_ENV_VAR)
    for day in ("2026-10-03", "2026-10-01", "2026-10-02", "latest"):
        (tmp_path / "landing" / "transactions" / f"date={day}").mkdir(parents=True)
    assert partitions_start_date() == "2026-10-01"
    monkeypatch.setenv(PARTITIONS_START_ENV_VAR, "2026-09-15")
    assert partitions_start_date() == "2026-09-15"
    monkeypatch.setenv(PARTITIONS_START_ENV_VAR, "15/09/2026")
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        partitions_start_date()


def test_the_code_location_uses_the_setting(tmp_path):
    (tmp_path / "landing" / "transactions" / "date=2026-10-01").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != PARTITIONS_START_ENV_VAR}
    code = "from mlplatform.ingestion.assets import DAILY_PARTITIONS as p; print(p.get_first_partition_key())"
    first = subprocess.run(
        [sys.executable, "-c", code], env={**env, "MLPLATFORM_STATE_DIR": str(tmp_path)},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert first.stdout.strip() == "2026-10-01"
