"""The retrain sensor on constructed instance histories: labels, degradation, and the in-progress guard."""

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetMaterialization,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    RunRequest,
    SkipReason,
    build_sensor_context,
)

from mlplatform.ingestion.assets import raw_labels
from mlplatform.monitoring.assets import FEATURE_DRIFT, MODEL_PERFORMANCE
from mlplatform.monitoring.retraining import retrain_reason, retrain_sensor
from mlplatform.resources import MonitoringSettings
from mlplatform.training.fraud_model import fraud_model_champion

POLICY = MonitoringSettings(retrain_min_new_labels=1_000)


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


def tick(instance):
    return retrain_sensor(build_sensor_context(instance=instance, resources={"monitoring": POLICY}))


def labels_landed(instance, *row_counts):
    for n, rows in enumerate(row_counts):
        instance.report_runless_asset_event(
            AssetMaterialization(
                raw_labels.key, partition=f"2026-11-{n + 1:02d}", metadata={"dagster/row_count": rows}
            )
        )


def champion_promoted(instance):
    instance.report_runless_asset_event(AssetMaterialization(fraud_model_champion.key))


def check_failed(instance, asset_key, name, severity):
    instance.report_runless_asset_event(
        AssetCheckEvaluation(
            asset_key=asset_key, check_name=name, passed=False, severity=severity, metadata={}
        )
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


def test_never_a_second_retraining_while_one_runs(instance):
    champion_promoted(instance)
    labels_landed(instance, 5_000)
    instance.add_run(
        DagsterRun(job_name="retrain_fraud_model", run_id="r" * 8, status=DagsterRunStatus.STARTED)
    )
    skipped = tick(instance)
    assert isinstance(skipped, SkipReason) and "in progress" in skipped.skip_message
