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
