"""Retraining on evidence: enough new labels since the champion was trained, or the champion degrading."""

from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetRecordsFilter,
    AssetSelection,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    sensor,
)

from mlplatform.ingestion.assets import raw_labels
from mlplatform.monitoring.assets import FEATURE_DRIFT, MODEL_PERFORMANCE
from mlplatform.resources import MonitoringSettings
from mlplatform.training.assets import training_set
from mlplatform.training.fraud_model import fraud_model, fraud_model_champion

retrain_fraud_model = define_asset_job(
    "retrain_fraud_model",
    selection=AssetSelection.assets(training_set, fraud_model, fraud_model_champion),
    description="Training set, candidate model and its gates, promotion when every gate passes.",
    tags={"mlplatform/workload": "training"},  # the run queue admits one training run at a time
)
# monitoring checks whose ERROR means the champion no longer fits the data
DEGRADATION_CHECKS = (
    AssetCheckKey(FEATURE_DRIFT, "prediction_psi"),
    AssetCheckKey(MODEL_PERFORMANCE, "roc_auc"),
)
ACTIVE = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def retrain_reason(new_labels: int, min_new_labels: int, degradations: list[str]) -> str | None:
    """Why to retrain now, or None: degradation first (it is urgent), then enough new labels."""
    if degradations:
        return f"champion degraded: {', '.join(sorted(degradations))}"
    if new_labels >= min_new_labels:
        return f"{new_labels:,} labels arrived since the champion was trained (threshold {min_new_labels:,})"
    return None


def labels_since(instance: DagsterInstance, after: float | None) -> int:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=raw_labels.key, after_timestamp=after), limit=10_000
    ).records
    return sum(
        int(r.event_log_entry.asset_materialization.metadata["dagster/row_count"].value)
        for r in records
        if "dagster/row_count" in r.event_log_entry.asset_materialization.metadata
    )


def degradations_since(instance: DagsterInstance, after: float | None) -> list[str]:
    """Degradation checks whose latest evaluation, after `after`, failed with ERROR (a later pass clears it).

    Check records keep whole seconds: compared at that resolution."""
    found = []
    for key in DEGRADATION_CHECKS:
        record = instance.get_latest_asset_check_evaluation_record(key)
        evaluation = record.evaluation if record else None
        if (
            evaluation is not None
            and (after is None or record.create_timestamp >= int(after))
            and not evaluation.passed
            and evaluation.severity is AssetCheckSeverity.ERROR
        ):
            found.append(f"{key.asset_key.to_user_string()}:{key.name}")
    return found


@sensor(
    job=retrain_fraud_model,
    minimum_interval_seconds=120,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Requests retraining when enough labels arrived since the champion was promoted, or a score-drift "
        "or performance check failed with ERROR since then; never while a retraining is in progress."
    ),
)
def retrain_sensor(context: SensorEvaluationContext, monitoring: MonitoringSettings):
    instance = context.instance
    if instance.get_runs(RunsFilter(job_name=retrain_fraud_model.name, statuses=ACTIVE), limit=1):
        return SkipReason("a retraining is already in progress")
    champion = instance.get_latest_materialization_event(fraud_model_champion.key)
    since = champion.timestamp if champion else None
    reason = retrain_reason(
        labels_since(instance, since), monitoring.retrain_min_new_labels, degradations_since(instance, since)
    )
    if reason is None:
        return SkipReason("no new evidence since the champion was promoted")
    return RunRequest(
        run_key=f"retrain-after-{since}",
        tags={"mlplatform/trigger": "retrain_sensor", "mlplatform/reason": reason},
    )
