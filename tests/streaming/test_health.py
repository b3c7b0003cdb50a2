"""streaming_health on the health log a real consumer wrote: the day's figures, the dead-letter check
failing with ERROR and alerting, and a day without traffic not judged."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from dagster import AssetCheckSeverity, DagsterInstance, materialize

from mlplatform.checks import was_judged
from mlplatform.resources.prediction_log import PredictionLogWriter
from mlplatform.streaming.consumer import Consumer
from mlplatform.streaming.health import streaming_health
from mlplatform.streaming.messages import encode
from mlplatform.streaming.replay import send
from tests.streaming.conftest import drain
from tests.streaming.test_consumer import last_day_rows

pytestmark = pytest.mark.e2e


def run_health(resources, day: str):
    with DagsterInstance.ephemeral() as instance:
        result = materialize([streaming_health], partition_key=day, resources=resources, instance=instance)
    assert result.success
    (materialization,) = result.asset_materializations_for_node("streaming_health")
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    return {k: v.value for k, v in materialization.metadata.items()}, checks


def test_streaming_health_reads_the_consumers_day(stream_state, scorer, redis_db):
    state, resources = stream_state
    settings = resources["streaming"]
    health = PredictionLogWriter(state / "streaming")
    consumer = Consumer(settings, scorer, name="health", health_log=health)
    rows = last_day_rows(resources, 8)
    send(settings, rows + rows[:1])
    for fields in ({"transaction": "{"}, encode({**rows[0], "amount": 0})):
        redis_db.xadd(settings.input_stream, fields)
    drain(consumer, redis_db, settings)
    health.close()

    today = f"{datetime.now(UTC):%Y-%m-%d}"
    figures, checks = run_health(resources, today)
    assert (figures["messages"], figures["scored"], figures["duplicates"], figures["dead_letters"]) == (
        11,
        8,
        1,
        2,
    )
    assert 0 < figures["latency_p50_ms"] <= figures["latency_p99_ms"]
    assert checks["stream_latency_p99"].passed
    dead_check = checks["dead_letter_rate"]
    assert not dead_check.passed and dead_check.severity == AssetCheckSeverity.ERROR
    alerts = [json.loads(line) for line in (state / "alerts" / "alerts.jsonl").read_text().splitlines()]
    assert any(a.get("check") == "dead_letter_rate" for a in alerts)

    quiet = f"{datetime.now(UTC) - timedelta(days=3):%Y-%m-%d}"
    figures, checks = run_health(resources, quiet)
    assert figures["messages"] == 0
    assert all(not c.passed and not was_judged(c.metadata) for c in checks.values())


def test_streaming_health_runs_for_the_day_that_just_ended_once_a_night(tmp_path):
    from dagster import Definitions, evaluate_automation_conditions

    from mlplatform.profiles import build_resources
    from mlplatform.streaming.health import STREAMING_HEALTH

    defs = Definitions(assets=[streaming_health], resources=build_resources(profile="local", state=tmp_path))

    with DagsterInstance.ephemeral() as instance:
        first = evaluate_automation_conditions(
            defs=defs,
            instance=instance,
            evaluation_time=datetime(2026, 11, 29, 23, 0, tzinfo=UTC),
        )
        assert first.total_requested == 0  # nothing before the first tick
        at_tick = evaluate_automation_conditions(
            defs=defs,
            instance=instance,
            cursor=first.cursor,
            evaluation_time=datetime(2026, 11, 30, 2, 31, tzinfo=UTC),
        )
        assert at_tick.get_requested_partitions(STREAMING_HEALTH) == {"2026-11-29"}
        later = evaluate_automation_conditions(
            defs=defs,
            instance=instance,
            cursor=at_tick.cursor,
            evaluation_time=datetime(2026, 11, 30, 3, 0, tzinfo=UTC),
        )
        assert later.total_requested == 0  # once per night
