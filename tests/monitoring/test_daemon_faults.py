"""Under the real `dagster-daemon` with the project's own dagster.yaml: a run whose worker is killed with
`kill -9` is marked FAILED, alerted, and run again by Dagster's run retries (the partition is not left
behind); a run launched from the CLI that fails is alerted too."""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.instance.ref import InstanceRef

from mlplatform.settings import PROJECT_ROOT
from tests.prod.services import process, wait_until

BIN = PROJECT_ROOT / ".venv" / "bin"
PID = re.compile(r"Started process for run \(pid: (\d+)\)")


def alerts(state: Path) -> list[dict]:
    path = state / "alerts" / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_pid(instance: DagsterInstance, run_id: str) -> int | None:
    for entry in instance.all_logs(run_id):
        found = PID.search(entry.message or "")
        if found:
            return int(found.group(1))
    return None


def test_a_killed_run_is_failed_alerted_and_retried_and_a_cli_failure_alerts(generated_landing, tmp_path):
    state = tmp_path / "state"
    # one snapshot: one short ingestion run for the daemon to launch (and for us to kill)
    shutil.copytree(generated_landing / "customers", state / "landing" / "customers")
    home = state / "dagster"
    home.mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "MLPLATFORM_STATE_DIR": str(state),
        "MLPLATFORM_PROFILE": "local",
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    # dbt runs on snapshots alone would only add noise to this test: automation off, the rest as shipped
    subprocess.run(
        [str(BIN / "dagster"), "sensor", "stop", "automation", "-w", "workspace.yaml"],
        env=env, cwd=PROJECT_ROOT, check=True, capture_output=True,
    )  # fmt: skip
    instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    assert instance.run_monitoring_enabled and instance.run_retries_enabled

    command = [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"]
    with process(command, env, logs / "daemon.log", cwd=PROJECT_ROOT):
        # the landing sensor asks for the snapshot; kill the run's worker as soon as it started
        wait_until(
            lambda: bool(instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED]))), 240, "a run"
        )
        [victim] = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED]))
        wait_until(lambda: run_pid(instance, victim.run_id) is not None, 60, "the run worker's pid")
        os.kill(run_pid(instance, victim.run_id), signal.SIGKILL)
        killed_at = time.monotonic()

        wait_until(
            lambda: instance.get_run_by_id(victim.run_id).status == DagsterRunStatus.FAILURE, 120, "FAILED"
        )
        detected = time.monotonic() - killed_at
        retry = lambda: instance.get_runs(RunsFilter(tags={"dagster/parent_run_id": victim.run_id}))  # noqa: E731
        wait_until(lambda: bool(retry()), 120, "a retry of the killed run")
        wait_until(lambda: retry()[0].status == DagsterRunStatus.SUCCESS, 600, "the retry succeeding")
        retried = time.monotonic() - killed_at
        wait_until(lambda: any(a["run_id"] == victim.run_id for a in alerts(state)), 120, "an alert")

        # a run from the CLI (no code-location origin) that fails: transactions with nothing landed
        cli = subprocess.run(
            [str(BIN / "dagster"), "asset", "materialize", "-m", "mlplatform.definitions",
             "--select", "raw_transactions", "--partition", "2026-03-01"],
            env=env, cwd=PROJECT_ROOT, capture_output=True, text=True,
        )  # fmt: skip
        assert cli.returncode != 0
        [cli_run] = instance.get_runs(RunsFilter(tags={}, statuses=[DagsterRunStatus.FAILURE]), limit=1)
        assert cli_run.remote_job_origin is None  # launched from the CLI, not from the code location
        wait_until(
            lambda: any(a["run_id"] == cli_run.run_id for a in alerts(state)), 120, "the CLI run's alert"
        )

    [cli_alert] = [a for a in alerts(state) if a["run_id"] == cli_run.run_id]
    assert cli_alert["failed_steps"] == ["raw_transactions"] and cli_alert["partition"] == "2026-03-01"
    [killed_alert] = [a for a in alerts(state) if a["run_id"] == victim.run_id]
    assert "marked as failed" in killed_alert["error"] and killed_alert["assets"] == ["raw_customers"]
    print(f"kill -9 -> FAILED in {detected:.1f} s; -> retry succeeded in {retried:.1f} s")
