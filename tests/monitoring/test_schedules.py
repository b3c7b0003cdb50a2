"""The nightly monitoring schedule picks the right days."""

from datetime import UTC, datetime

from dagster import build_schedule_context

from mlplatform.monitoring.assets import MODEL_PERFORMANCE, SERVING_HEALTH, SERVING_SKEW, nightly_monitoring


def test_nightly_monitoring_covers_yesterdays_traffic_and_the_performance_of_a_week_back():
    context = build_schedule_context(scheduled_execution_time=datetime(2026, 11, 23, 2, 30, tzinfo=UTC))
    serving, performance = nightly_monitoring(context)
    assert serving.partition_key == "2026-11-22"
    assert set(serving.asset_selection) == {SERVING_HEALTH, SERVING_SKEW}
    assert performance.partition_key == "2026-11-15" and performance.asset_selection == [MODEL_PERFORMANCE]
    assert serving.run_key != performance.run_key  # both run, once each


def test_each_models_slo_schedule_judges_the_labelled_day_and_yesterdays_traffic():
    from mlplatform.definitions import models

    context = build_schedule_context(scheduled_execution_time=datetime(2026, 11, 23, 2, 45, tzinfo=UTC))
    for name, expected_labelled in (("fraud_model", "2026-11-15"), ("merchant_risk", "2026-11-08")):
        slo = models[name].slo
        assert slo is not None and slo.serving is not None
        quality, serving = slo.nightly(context)
        assert (quality.partition_key, quality.asset_selection) == (expected_labelled, [slo.quality.key])
        assert (serving.partition_key, serving.asset_selection) == ("2026-11-22", [slo.serving.key])
        assert quality.run_key != serving.run_key
