"""A crash mid-write leaves a truncated prediction log line; a stray `date=latest/` folder lands next to
the snapshots. Neither fails anything: the line is skipped and counted (WARN), the folder ignored."""

import json
from datetime import date
from pathlib import Path

import pandas as pd
from dagster import AssetCheckSeverity, build_sensor_context

from mlplatform.definitions import all_assets, landing_zone_sensor, models
from mlplatform.ingestion.assets import raw_customers, raw_merchants
from mlplatform.resources import PredictionLog
from mlplatform.resources.prediction_log import PredictionLogWriter
from mlplatform.training.spec import FRAUD_MODEL
from tests.conftest import run_assets

DAY = "2026-03-05"


def logged(directory, n: int) -> None:
    writer = PredictionLogWriter(directory)
    for i in range(n):
        writer.record(
            {
                "logged_at": f"{DAY}T10:00:{i:02d}+00:00",
                "request_id": f"r{i}",
                "model_name": FRAUD_MODEL.name,
                "latency_ms": 2.0 + i,
                "customer_id": "C1",
                "merchant_id": "M1",
                "event_ts": f"{DAY}T10:00:{i:02d}",
                "score": 0.1,
                "decision": "pass",
                "model_version": "1",
                "shadow": False,
            }
        )
    writer.close()


def test_a_truncated_last_line_is_skipped_and_counted(tmp_path):
    logged(tmp_path, 5)
    [path] = (tmp_path / f"date={DAY}").glob("*.jsonl")
    with path.open("a") as out:
        out.write('{"logged_at": "2026-03-05T10:01:00+00:00", "request_id": "r9", "lat')  # killed mid-write
    log = PredictionLog(directory=str(tmp_path))
    read = log.read_counted(DAY)
    assert len(read.frame) == 5 and read.corrupt_lines == 1
    assert read.corrupt_files == [f"date={DAY}/{path.name}"]
    assert list(read.frame["request_id"]) == [f"r{i}" for i in range(5)]
    assert isinstance(read.frame["logged_at"].iloc[0], pd.Timestamp)  # same types as before
    pd.testing.assert_frame_equal(log.read(DAY), read.frame)


def test_serving_health_warns_on_corrupt_lines_and_does_not_fail_the_day(resources, instance, state):
    directory = Path(resources["prediction_log"].directory)
    logged(directory, 20)
    [path] = (directory / f"date={DAY}").glob("*.jsonl")
    with path.open("a") as out:
        out.write('{"logged_at": "2026-03-05T1')
    result = run_assets(
        all_assets,
        resources,
        instance,
        partition_key=DAY,
        selection=[models["fraud_model"].monitoring.serving_health],
    )
    assert result.success
    [materialization] = result.asset_materializations_for_node("serving_health")
    assert materialization.metadata["corrupt_log_lines"].value == 1
    assert materialization.metadata["requests"].value == 20
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "log_lines_readable"]
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert "1 corrupt prediction log line" in (check.description or "")


def test_a_folder_that_is_not_a_date_is_ignored_by_the_asset_and_the_sensor(resources, instance, state):
    stray = state / "landing" / "customers" / "date=latest"
    stray.mkdir()
    snapshot = next((state / "landing" / "customers").glob("date=2*/*.parquet"))
    pd.read_parquet(snapshot).head(3).to_parquet(stray / "customers.parquet")
    (state / "landing" / "transactions" / "date=latest").mkdir()
    pd.DataFrame({"x": [1]}).to_parquet(state / "landing" / "transactions" / "date=latest" / "t.parquet")

    landing = resources["landing_zone"]
    assert "latest" not in landing.landed_days("customers")
    assert all(date.fromisoformat(d) for d in landing.landed_days("transactions"))

    context = build_sensor_context(instance=instance, resources={"landing_zone": landing})
    result = landing_zone_sensor(context)
    partitions = {r.partition_key for r in result.run_requests}
    assert any(raw_customers.key in r.asset_selection for r in result.run_requests)
    assert "latest" not in partitions
    assert "date=latest" not in json.dumps(json.loads(result.cursor))

    loaded = run_assets(all_assets, resources, instance, selection=[raw_customers, raw_merchants])
    assert loaded.success
    rows = resources["warehouse"].read_sql("select count(*) as n from raw.customers")["n"].iloc[0]
    assert rows == len(pd.read_parquet(snapshot)) > 3
