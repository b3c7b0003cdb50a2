"""Each model's nightly schedule picks the right days: the one whose labels have just come in, and
yesterday's online traffic."""

from datetime import UTC, datetime

from dagster import DefaultScheduleStatus, build_schedule_context

from mlplatform.definitions import models


def test_each_models_nightly_judges_the_labelled_day_and_yesterdays_traffic():
    context = build_schedule_context(scheduled_execution_time=datetime(2026, 11, 23, 2, 45, tzinfo=UTC))
    for name, expected_labelled in (("fraud_model", "2026-11-15"), ("merchant_risk", "2026-11-08")):
        chain = models[name]
        assert chain.nightly is not None and chain.slo is not None and chain.monitoring is not None
        assert chain.nightly.default_status == DefaultScheduleStatus.RUNNING
        labelled, traffic = chain.nightly(context)
        assert labelled.partition_key == expected_labelled
        assert set(labelled.asset_selection) == {chain.slo.quality.key, chain.monitoring.performance.key}
        assert traffic.partition_key == "2026-11-22"
        assert set(traffic.asset_selection) == {
            chain.slo.serving.key,
            chain.monitoring.serving_health.key,
            chain.monitoring.serving_skew.key,
        }
        assert labelled.run_key != traffic.run_key  # both run, once each
