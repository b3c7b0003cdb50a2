"""The loop under the real `dagster-daemon` and the prediction API as processes, with the project's own
dagster.local.yaml, on a copy of the built medium state: a landed day whose run worker is killed with
`kill -9` is marked FAILED, alerted and retried from where it stopped (the marts rebuilt before the day
is scored, the online store after the day came in), and retrains nothing; a drifted day then fails its
transaction drift check, alerts, retrains once and ends with a new champion answering `/predict`; a
failing run launched from the CLI alerts too."""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from mlplatform.automation import TRIGGER_TAG
from mlplatform.datagen import DriftConfig, GeneratorConfig, generate
from mlplatform.resources.model_registry import CHAMPION
from mlplatform.settings import PROJECT_ROOT
from mlplatform.training.spec import FRAUD_MODEL
from tests.conftest import MEDIUM, copy_applied_state
from tests.prod.services import (
    local_loop,
    materialized_at,
    served_champion,
    wait_until,
)

pytestmark = pytest.mark.e2e
BIN = PROJECT_ROOT / ".venv" / "bin"
PID = re.compile(r"Started process for run \(pid: (\d+)\)")
DRIFT = DriftConfig(amount_shift=2.0, new_fraud_pattern=True, new_merchant_category=True)


def land(config: GeneratorConfig, landing: Path, staging: Path) -> None:
    """The generator's new files for `config`, moved into the landing zone together (renames), as one
    delivery: it writes one table's file after the other, and a sensor tick between the two once started a
    run for the day's transactions alone (then another for its labels), which this test does not expect."""
    shutil.copytree(landing, staging)  # the generator reports labels for the transactions already landed
    generate(config, staging)
    for folder in sorted(staging.glob("*/date=*")):
        target = landing / folder.relative_to(staging)
        if not target.exists():
            target.parent.mkdir(exist_ok=True)
            folder.rename(target)


def alerts(state: Path) -> list[dict]:
    path = state / "alerts" / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def alerted(state: Path, run_id: str) -> bool:
    return any(a.get("run_id") == run_id for a in alerts(state))


def run_pid(instance: DagsterInstance, run_id: str) -> int | None:
    for entry in instance.all_logs(run_id):
        found = PID.search(entry.message or "")
        if found:
            return int(found.group(1))
    return None


def ingested(instance: DagsterInstance, day) -> list[float | None]:
    return [materialized_at(instance, f"raw_{table}", str(day)) for table in ("transactions", "labels")]


DBT_LOG = re.compile(r"view the dbt debug log: (\S+?dbt\.log)")


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""


def step_failures(instance: DagsterInstance, run_id: str) -> list[str]:
    """The steps of a run that failed, with their errors, stacks and causes, and the end of the dbt debug log
    a failed dbt step names (dbt's own error is there when it died before logging one): what a failed
    retry or a stalled loop shows."""
    failures = []
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        error = entry.dagster_event.event_specific_data.error.to_string()
        logs = [f"--- {path}:\n{tail(Path(path))}" for path in dict.fromkeys(DBT_LOG.findall(error))]
        failures.append("\n".join([f"{entry.step_key}: {error[:3000]}", *logs]))
    return failures


def loop_state(instance: DagsterInstance, state: Path, landed_at: float) -> str:
    """What the loop did since the drifted day landed: every run with its status, trigger and reason, the
    steps of each failed one, and the alerts sent: what a stalled loop is reported with."""
    lines = []
    since = RunsFilter(created_after=datetime.fromtimestamp(landed_at, UTC))
    for record in reversed(instance.get_run_records(since)):
        run = record.dagster_run
        tags = {k: v for k, v in run.tags.items() if k.startswith(("mlplatform/", "dagster/partition"))}
        lines.append(f"{run.job_name} {run.status.value} {tags}")
        if run.status == DagsterRunStatus.FAILURE:
            lines.extend(f"  {failure}" for failure in step_failures(instance, run.run_id))
    lines.extend(f"alert: {a.get('kind')} {a.get('message')}" for a in alerts(state)[-10:])
    return "\n".join(lines)


def day_runs(instance: DagsterInstance, day: str) -> list:
    return instance.get_runs(RunsFilter(tags={TRIGGER_TAG: "landing_zone_sensor", "dagster/partition": day}))


def test_under_the_daemon_a_killed_day_is_retried_and_a_drifted_day_ends_with_a_new_champion_served(
    built_state, tmp_path
):
    state, resources = copy_applied_state(built_state[0], tmp_path / "state")
    registry = resources["model_registry"]
    champion_before = registry.version_for(FRAUD_MODEL.name, CHAMPION)
    normal_day = MEDIUM.start_date + timedelta(days=MEDIUM.days)
    drifted_day = normal_day + timedelta(days=1)

    with local_loop(state, tmp_path / "logs") as (instance, port, env):
        assert instance.run_monitoring_enabled and instance.run_retries_enabled

        # a normal day: kill its run's worker once the day's files are in, before the marts are rebuilt
        land(replace(MEDIUM, start_date=normal_day, days=1), state / "landing", tmp_path / "normal")
        wait_until(lambda: bool(day_runs(instance, str(normal_day))), 240, "the landed day's run")
        [victim] = day_runs(instance, str(normal_day))
        wait_until(lambda: None not in ingested(instance, normal_day), 300, "the day's files ingested")
        os.kill(run_pid(instance, victim.run_id), signal.SIGKILL)
        wait_until(
            lambda: instance.get_run_by_id(victim.run_id).status == DagsterRunStatus.FAILURE, 180, "FAILED"
        )
        retry = lambda: instance.get_runs(RunsFilter(tags={"dagster/parent_run_id": victim.run_id}))  # noqa: E731
        wait_until(lambda: bool(retry()), 180, "a retry of the killed run")
        # a loaded 2-core machine runs each retried step in its own process: minutes, not seconds
        wait_until(lambda: retry()[0].is_finished, 900, "the retry finishing", 1)
        assert retry()[0].status == DagsterRunStatus.SUCCESS, step_failures(instance, retry()[0].run_id)
        scored = materialized_at(instance, "batch_predictions", str(normal_day))
        assert scored and scored > materialized_at(instance, "raw_transactions", str(normal_day))
        # the marts that scoring reads were rebuilt with the day, and the online store after the day came in
        day_in = max(ingested(instance, normal_day))
        for mart in ("customer_features", "merchant_features"):
            assert day_in < materialized_at(instance, mart) < scored, f"{mart} not rebuilt before scoring"
        assert materialized_at(instance, "online_customer_stats") > day_in
        wait_until(lambda: alerted(state, victim.run_id), 180, "an alert")
        # a normal day retrains nothing
        assert not instance.get_runs(RunsFilter(job_name=f"retrain_{FRAUD_MODEL.name}"))
        assert registry.version_for(FRAUD_MODEL.name, CHAMPION) == champion_before

        # a drifted day: landed -> monitored -> retrained -> promoted -> served by the API
        land(
            replace(MEDIUM, start_date=drifted_day, days=1, drift=DRIFT),
            state / "landing",
            tmp_path / "drift",
        )
        landed, landed_at = time.monotonic(), time.time()

        def until(condition, timeout: float, what: str, interval: float) -> None:
            """`wait_until`, failing with what the loop did since the drifted day landed."""
            try:
                wait_until(condition, timeout, what, interval)
            except TimeoutError as timeout_error:
                raise AssertionError(f"{what}\n{loop_state(instance, state, landed_at)}") from timeout_error

        until(
            lambda: materialized_at(instance, "monitoring_report", str(drifted_day)) is not None,
            600, "the drifted day monitored", 1,
        )  # fmt: skip
        monitored = time.monotonic() - landed
        new_champion = lambda: registry.version_for(FRAUD_MODEL.name, CHAMPION) != champion_before  # noqa: E731
        until(new_champion, 900, "a new champion", 2)
        champion_after = registry.version_for(FRAUD_MODEL.name, CHAMPION)
        promotion = registry.audit_trail(FRAUD_MODEL.name)[-1]
        assert promotion["action"] == "promote" and str(promotion["version"]) == champion_after
        wait_until(lambda: served_champion(port) == champion_after, 60, "the API serving it", 0.5)
        champion_served = time.monotonic() - landed
        [drift_run] = day_runs(instance, str(drifted_day))  # the whole day in one run
        assert drift_run.status == DagsterRunStatus.SUCCESS
        scored = materialized_at(instance, "batch_predictions", str(drifted_day))
        assert max(ingested(instance, drifted_day)) < materialized_at(instance, "customer_features") < scored

        # a run from the CLI (no code-location origin) that fails: transactions with nothing landed
        cli = subprocess.run(
            [str(BIN / "dagster"), "asset", "materialize", "-m", "mlplatform.definitions",
             "--select", "raw_transactions", "--partition", "2026-01-01"],
            env=env, cwd=PROJECT_ROOT, capture_output=True, text=True,
        )  # fmt: skip
        assert cli.returncode != 0
        [cli_run] = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.FAILURE]), limit=1)
        assert cli_run.remote_job_origin is None  # launched from the CLI, not from the code location
        wait_until(lambda: alerted(state, cli_run.run_id), 180, "the CLI run's alert")

    [killed_alert] = [a for a in alerts(state) if a.get("run_id") == victim.run_id]
    assert killed_alert["partition"] == str(normal_day) and "raw_transactions" in killed_alert["assets"]
    assert any(a.get("check") == "transaction_psi" and a["severity"] == "ERROR" for a in alerts(state))
    [retrain] = instance.get_runs(RunsFilter(job_name="retrain_fraud_model"))
    assert "feature_drift:transaction_psi" in retrain.tags["mlplatform/reason"]
    print(f"drifted day landed -> monitored {monitored:.0f} s -> new champion served {champion_served:.0f} s")
