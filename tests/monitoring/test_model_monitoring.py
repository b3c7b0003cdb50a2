"""A model's monitoring before it has scored anything (no champion yet: a manual promotion pending, or a
first version its gates refused) says so and never fails the day's run; its report says what waits for
labels whatever the model's asset names."""

from dagster import DagsterInstance

from mlplatform.definitions import all_assets, models
from mlplatform.monitoring.plots import _figure
from mlplatform.profiles import build_resources
from tests.conftest import run_assets


def test_performance_of_a_model_that_scored_nothing_is_not_judged_and_the_run_succeeds(tmp_path):
    resources = build_resources(profile="local", state=tmp_path)
    monitoring = models["merchant_risk"].monitoring
    assert monitoring is not None
    with DagsterInstance.ephemeral() as instance:
        result = run_assets(
            all_assets, resources, instance, partition_key="2026-03-10", selection=[monitoring.performance]
        )
    assert result.success
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and not check.metadata["judged"].value
    assert "merchant_risk_predictions holds no decision yet" in check.metadata["not_judged_reason"].value


def test_a_missing_labelled_figure_waits_for_labels_for_every_model():
    for name in ("model_performance.roc_auc", "merchant_risk_performance.recall_at_threshold"):
        assert _figure(name, float("nan")) == "not enough labels yet"
    assert _figure("serving_health.latency_p99_ms", float("nan")) == "no data"
