"""The day's report reads each check's latest completed evaluation of that day: a planned one (Dagster's
newest record for a check whose run is in flight, or was killed before it evaluated) neither crashes the
report nor hides the day's verdict."""

import time

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationPlanned
from dagster._core.events.log import EventLogEntry

from mlplatform.monitoring.model_monitoring import day_verdicts

DAY = "2026-03-25"
DRIFT = AssetCheckKey(AssetKey("feature_drift"), "prediction_psi")
PERFORMANCE = AssetCheckKey(AssetKey("model_performance"), "roc_auc")


def evaluated(instance: DagsterInstance, key: AssetCheckKey, passed: bool, partition: str = DAY) -> None:
    instance.report_runless_asset_event(
        AssetCheckEvaluation(
            asset_key=key.asset_key,
            check_name=key.name,
            passed=passed,
            severity=AssetCheckSeverity.ERROR,
            metadata={"judged": True},
            description="judged",
            partition=partition,
        )
    )


def planned(instance: DagsterInstance, key: AssetCheckKey, run_id: str = "k" * 8) -> None:
    """What a run killed mid-way leaves: the check planned for the day, never evaluated."""
    instance.add_run(DagsterRun(job_name="landed_day", run_id=run_id, status=DagsterRunStatus.FAILURE))
    from dagster import DailyPartitionsDefinition

    daily = DailyPartitionsDefinition(start_date="2026-03-01")
    subset = daily.subset_with_partition_keys([DAY]).to_serializable_subset()
    event = DagsterEvent(
        event_type_value=DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED.value,
        job_name="landed_day",
        event_specific_data=AssetCheckEvaluationPlanned(
            asset_key=key.asset_key, check_name=key.name, partitions_subset=subset
        ),
    )
    instance.store_event(
        EventLogEntry(
            error_info=None, level="debug", user_message="", run_id=run_id, timestamp=time.time(),
            dagster_event=event,
        )
    )  # fmt: skip


def test_a_check_planned_by_a_killed_run_leaves_the_days_earlier_verdict_and_does_not_crash():
    with DagsterInstance.ephemeral() as instance:
        evaluated(instance, DRIFT, passed=False)
        evaluated(instance, PERFORMANCE, passed=True, partition="2026-03-24")  # another day only
        planned(instance, DRIFT)
        planned(instance, PERFORMANCE, run_id="p" * 8)
        newest = instance.event_log_storage.get_asset_check_execution_history(DRIFT, limit=1)[0]
        assert newest.evaluation is not None and not hasattr(newest.evaluation, "passed")  # what crashed
        verdicts = day_verdicts(instance, [DRIFT, PERFORMANCE], DAY)
    assert [(v.check, v.verdict) for v in verdicts] == [("feature_drift:prediction_psi", "ERROR")]
