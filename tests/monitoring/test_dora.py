"""DORA figures from a constructed registry history with known answers."""

import math
from datetime import datetime, timedelta

from mlplatform.monitoring.dora import dora_metrics

T0 = datetime(2026, 11, 1)


def at(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


AUDIT = [
    {"at": at(10), "action": "promote", "version": "1", "replaced": None},
    {"at": at(58), "action": "promote", "version": "2", "replaced": "1"},
    {"at": at(64), "action": "rollback", "version": "1", "replaced": "2"},  # v2 undone after 6 hours
    {"at": at(130), "action": "promote", "version": "3", "replaced": "1"},
]
LANDED = [T0 + timedelta(hours=h) for h in (2, 8, 50, 55, 100, 120)]


def test_known_history_gives_known_figures():
    figures = dora_metrics(AUDIT, LANDED, window=timedelta(weeks=1))
    assert figures["deployments"] == 3
    assert figures["deployments_per_week"] == 3
    # lead times: v1 10-2 = 8 h, v2 58-50 = 8 h, v3 130-100 = 30 h -> median 8 h
    assert figures["lead_time_hours_median"] == 8
    assert math.isclose(figures["change_failure_rate"], 1 / 3)
    assert figures["time_to_restore_hours_mean"] == 6


def test_the_window_limits_what_counts_and_no_history_is_no_deployment():
    recent = dora_metrics(AUDIT, LANDED, window=timedelta(hours=100))  # from hour 30 on
    assert recent["deployments"] == 2 and recent["deployments_per_week"] == 2 / (100 / 168)
    assert dora_metrics([], LANDED, window=timedelta(weeks=1)) == {"deployments": 0}
    clean = dora_metrics(AUDIT[:1], LANDED, window=timedelta(weeks=1))
    assert clean["change_failure_rate"] == 0 and math.isnan(clean["time_to_restore_hours_mean"])


def test_the_asset_reads_the_audit_trail_and_the_ingestion_history(tmp_path):
    import json
    from datetime import UTC

    from dagster import AssetMaterialization, DagsterInstance, materialize

    from mlplatform.definitions import models
    from mlplatform.ingestion.assets import raw_transactions
    from mlplatform.resources import ModelRegistry

    now = datetime.now(UTC)
    audit = tmp_path / "audit.jsonl"
    records = [
        {
            "at": (now + timedelta(hours=1)).isoformat(),
            "action": "promote",
            "model": "fraud_model",
            "version": "1",
        },
        {
            "at": (now + timedelta(hours=2)).isoformat(),
            "action": "promote",
            "model": "fraud_model",
            "version": "2",
        },
        {
            "at": (now + timedelta(hours=3)).isoformat(),
            "action": "rollback",
            "model": "fraud_model",
            "version": "1",
            "replaced": "2",
        },
    ]
    audit.write_text("".join(json.dumps(r) + "\n" for r in records))
    registry = ModelRegistry(
        tracking_uri="sqlite:///unused.db", artifact_root=str(tmp_path), audit_log=str(audit)
    )
    with DagsterInstance.ephemeral() as instance:
        instance.report_runless_asset_event(
            AssetMaterialization(raw_transactions.key, partition="2026-11-22")
        )
        result = materialize(
            [models["fraud_model"].monitoring.delivery],
            resources={"model_registry": registry},
            instance=instance,
        )
    figures = {
        k: v.value for k, v in result.get_asset_materialization_events()[0].materialization.metadata.items()
    }
    assert figures["deployments"] == 2 and figures["change_failure_rate"] == 0.5
    assert figures["time_to_restore_hours_mean"] == 1.0
    assert 0.9 < figures["lead_time_hours_median"] < 1.1  # data landed just now, first champion an hour later
