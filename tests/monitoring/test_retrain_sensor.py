"""The retrain sensor on constructed instance histories: labels, degradation, and the in-progress guard."""

import tempfile
import time

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSeverity,
    AssetMaterialization,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    RunRequest,
    SkipReason,
    build_sensor_context,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationPlanned
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.events.log import EventLogEntry

from mlplatform.checks import not_judged
from mlplatform.definitions import models
from mlplatform.ingestion.assets import raw_labels, raw_transactions
from mlplatform.monitoring.retraining import (
    EVIDENCE_TAG,
    Evidence,
    LabelEvent,
    backoff_seconds,
    decide,
    retrain_reason,
)
from mlplatform.resources import ModelRegistry, MonitoringSettings

POLICY = MonitoringSettings(retrain_min_new_labels=1_000)
RETRAIN_SENSOR = models["fraud_model"].retrain_sensor
FEATURE_DRIFT = models["fraud_model"].drift.key
MODEL_PERFORMANCE = models["fraud_model"].monitoring.performance.key


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


# asked only before a request, whether the model is retired: a registry where it never was
REGISTRY = ModelRegistry(
    tracking_uri=f"sqlite:///{tempfile.mkdtemp()}/mlflow.db", audit_log=f"{tempfile.mkdtemp()}/audit.jsonl"
)


def tick(instance):
    return RETRAIN_SENSOR(
        build_sensor_context(instance=instance, resources={"monitoring": POLICY, "model_registry": REGISTRY})
    )


def labels_landed(instance, *row_counts):
    for n, rows in enumerate(row_counts):
        instance.report_runless_asset_event(
            AssetMaterialization(
                raw_labels.key, partition=f"2026-11-{n + 1:02d}", metadata={"dagster/row_count": rows}
            )
        )


def champion_promoted(instance):
    instance.report_runless_asset_event(AssetMaterialization(models["fraud_model"].champion.key))


def check_failed(instance, asset_key, name, severity, passed=False, day=None):
    instance.report_runless_asset_event(
        AssetCheckEvaluation(
            asset_key=asset_key,
            check_name=name,
            passed=passed,
            severity=severity,
            metadata={"judged": True},
            partition=day,
        )
    )


def check_not_judged(instance, asset_key, name):
    result = not_judged("no labelled rows", asset_key=asset_key, check_name=name)
    instance.report_runless_asset_event(
        AssetCheckEvaluation(
            asset_key=asset_key,
            check_name=name,
            passed=False,
            severity=result.severity,
            metadata=result.metadata,
        )
    )


def check_planned(instance, asset_key, name, run_id="m" * 8):
    """A monitoring run in flight: Dagster stores a planned evaluation as the check's latest record."""
    if instance.get_run_by_id(run_id) is None:
        instance.add_run(DagsterRun(job_name="monitoring", run_id=run_id, status=DagsterRunStatus.STARTED))
    event = DagsterEvent(
        event_type_value=DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED.value,
        job_name="monitoring",
        event_specific_data=AssetCheckEvaluationPlanned(asset_key=asset_key, check_name=name),
    )
    instance.store_event(
        EventLogEntry(
            error_info=None,
            level="debug",
            user_message="",
            run_id=run_id,
            timestamp=time.time(),
            dagster_event=event,
        )
    )
    record = instance.get_latest_asset_check_evaluation_record(AssetCheckKey(asset_key, name))
    assert (record is not None and record.evaluation is None) or not hasattr(record.evaluation, "passed")


def retraining_finished(instance, request, run_id, status=DagsterRunStatus.FAILURE):
    """The retraining a request asked for ran and did not promote its candidate (rejected or failed)."""
    instance.add_run(
        DagsterRun(job_name="retrain_fraud_model", run_id=run_id, status=status, tags=dict(request.tags))
    )


def test_the_reasons_in_order():
    assert retrain_reason(10, 1_000, []) is None
    assert "1,000 labels" in retrain_reason(1_000, 1_000, [])
    assert retrain_reason(5_000, 1_000, ["model_performance:roc_auc"]).startswith("champion degraded")


def test_enough_labels_since_the_champion_request_one_retraining(instance):
    labels_landed(instance, 5_000)  # before the champion: already learned from
    champion_promoted(instance)
    labels_landed(instance, 400, 500)
    assert isinstance(tick(instance), SkipReason)
    labels_landed(instance, 200)
    request = tick(instance)
    assert isinstance(request, RunRequest) and "1,100 labels" in request.tags["mlplatform/reason"]
    assert tick(instance).run_key == request.run_key  # the same evidence asks once (the run key dedups)


def test_an_error_in_score_drift_or_performance_requests_retraining_and_a_warning_does_not(instance):
    champion_promoted(instance)
    check_failed(instance, FEATURE_DRIFT, "prediction_psi", AssetCheckSeverity.WARN)
    check_failed(instance, FEATURE_DRIFT, "feature_psi", AssetCheckSeverity.ERROR)  # inputs alone: not enough
    assert isinstance(tick(instance), SkipReason)
    check_failed(instance, MODEL_PERFORMANCE, "roc_auc", AssetCheckSeverity.ERROR)
    request = tick(instance)
    assert (
        isinstance(request, RunRequest) and "model_performance:roc_auc" in request.tags["mlplatform/reason"]
    )


def test_a_day_landed_before_the_champion_judged_again_is_no_evidence_and_a_new_day_is(instance):
    """Declarative automation judges the drifted day again against the new champion (its scores, its
    training set): that day asked for another retraining after every promotion (seen under the daemon)."""
    instance.report_runless_asset_event(AssetMaterialization(raw_transactions.key, partition="2026-11-01"))
    champion_promoted(instance)
    check_failed(instance, MODEL_PERFORMANCE, "roc_auc", AssetCheckSeverity.ERROR, day="2026-11-01")
    skipped = tick(instance)
    assert isinstance(skipped, SkipReason) and "no new evidence" in skipped.skip_message
    instance.report_runless_asset_event(AssetMaterialization(raw_transactions.key, partition="2026-11-02"))
    check_failed(instance, MODEL_PERFORMANCE, "roc_auc", AssetCheckSeverity.ERROR, day="2026-11-02")
    request = tick(instance)
    assert (
        isinstance(request, RunRequest) and "model_performance:roc_auc" in request.tags["mlplatform/reason"]
    )


def test_never_a_second_retraining_while_one_runs(instance):
    champion_promoted(instance)
    labels_landed(instance, 5_000)
    instance.add_run(
        DagsterRun(job_name="retrain_fraud_model", run_id="r" * 8, status=DagsterRunStatus.STARTED)
    )
    skipped = tick(instance)
    assert isinstance(skipped, SkipReason) and "in progress" in skipped.skip_message


def test_a_planned_evaluation_in_flight_is_no_evidence_and_does_not_crash(instance):
    champion_promoted(instance)
    check_failed(instance, FEATURE_DRIFT, "prediction_psi", AssetCheckSeverity.ERROR)
    check_planned(instance, FEATURE_DRIFT, "prediction_psi")  # the next day's monitoring is running
    check_planned(instance, MODEL_PERFORMANCE, "roc_auc")
    request = tick(instance)
    assert isinstance(request, RunRequest)
    assert "feature_drift:prediction_psi" in request.tags["mlplatform/reason"]


def test_only_planned_evaluations_skip_with_a_reason(instance):
    champion_promoted(instance)
    check_planned(instance, FEATURE_DRIFT, "prediction_psi")
    skipped = tick(instance)
    assert isinstance(skipped, SkipReason) and "no new evidence" in skipped.skip_message


def test_a_not_judged_evaluation_is_no_evidence_and_does_not_clear_a_failure(instance):
    champion_promoted(instance)
    check_not_judged(instance, MODEL_PERFORMANCE, "roc_auc")
    assert isinstance(tick(instance), SkipReason)
    check_failed(instance, MODEL_PERFORMANCE, "roc_auc", AssetCheckSeverity.ERROR)
    check_not_judged(instance, MODEL_PERFORMANCE, "roc_auc")  # a later day without labels
    request = tick(instance)
    assert isinstance(request, RunRequest) and "roc_auc" in request.tags["mlplatform/reason"]
    check_failed(instance, MODEL_PERFORMANCE, "roc_auc", AssetCheckSeverity.ERROR, passed=True)
    assert isinstance(tick(instance), SkipReason)  # a judged pass clears it


def test_a_rejected_candidate_then_no_new_evidence_does_not_retrain(instance):
    champion_promoted(instance)
    check_failed(instance, FEATURE_DRIFT, "prediction_psi", AssetCheckSeverity.ERROR)
    request = tick(instance)
    assert isinstance(request, RunRequest)
    retraining_finished(instance, request, "a" * 8)  # the candidate failed its gates
    skipped = tick(instance)
    assert isinstance(skipped, SkipReason) and "already retrained on this evidence" in skipped.skip_message


def test_a_rejected_candidate_then_new_evidence_retrains_after_the_backoff(instance, monkeypatch):
    champion_promoted(instance)
    check_failed(instance, FEATURE_DRIFT, "prediction_psi", AssetCheckSeverity.ERROR)
    first = tick(instance)
    assert isinstance(first, RunRequest)
    retraining_finished(instance, first, "a" * 8)
    check_failed(
        instance, FEATURE_DRIFT, "prediction_psi", AssetCheckSeverity.ERROR
    )  # the next day drifts too
    waiting = tick(instance)
    assert isinstance(waiting, SkipReason) and "backing off" in waiting.skip_message
    later = time.time() + backoff_seconds(1) + 1
    monkeypatch.setattr("mlplatform.monitoring.retraining.time.time", lambda: later)
    second = tick(instance)
    assert isinstance(second, RunRequest) and second.run_key != first.run_key
    assert second.tags[EVIDENCE_TAG] != first.tags[EVIDENCE_TAG]


def test_new_labels_after_a_rejection_are_new_evidence(instance, monkeypatch):
    champion_promoted(instance)
    labels_landed(instance, 1_200)
    first = tick(instance)
    assert isinstance(first, RunRequest) and first.tags[EVIDENCE_TAG].startswith("labels:")
    retraining_finished(instance, first, "a" * 8, status=DagsterRunStatus.SUCCESS)  # ran, gates refused
    assert "already retrained" in tick(instance).skip_message
    labels_landed(instance, 50)
    later = time.time() + 10**6
    monkeypatch.setattr("mlplatform.monitoring.retraining.time.time", lambda: later)
    second = tick(instance)
    assert isinstance(second, RunRequest) and "1,250 labels" in second.tags["mlplatform/reason"]


def test_the_decision_is_pure_and_the_backoff_grows():
    evidence = Evidence(labels=[LabelEvent(3, 600), LabelEvent(5, 600)])
    assert decide(evidence, 1_000, now=0).evidence_key == "labels:3-5"
    assert decide(evidence, 1_000, now=0) == decide(evidence, 1_000, now=0)
    assert decide(Evidence(labels=[LabelEvent(3, 600)]), 1_000, now=0).evidence_key is None
    assert backoff_seconds(0) == 0 < backoff_seconds(1) < backoff_seconds(2) < backoff_seconds(3)
    assert backoff_seconds(50) == 24 * 3600
    tried = Evidence(labels=evidence.labels, attempts=[100.0, 200.0])
    assert "backing off" in decide(tried, 1_000, now=200 + backoff_seconds(2) - 1).reason
    assert decide(tried, 1_000, now=200 + backoff_seconds(2)).evidence_key == "labels:3-5"
