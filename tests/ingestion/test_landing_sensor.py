"""The landing-zone sensor with build_sensor_context: cursor, duplicates, replaced files, bursts."""

import shutil

import pandas as pd
from dagster import build_sensor_context

from mlplatform.definitions import all_assets, landing_zone_sensor
from mlplatform.ingestion import ingestion_assets, sensors
from mlplatform.ingestion.assets import raw_customers, raw_merchants, raw_transactions
from tests.conftest import SMALL, run_assets

PARTITIONED = {a.key: a.partitions_def is not None for a in ingestion_assets}


def tick(resources, instance, cursor=None):
    context = build_sensor_context(
        instance=instance, cursor=cursor, resources={"landing_zone": resources["landing_zone"]}
    )
    result = landing_zone_sensor(context)
    return result, result.cursor


def requested(result) -> list[tuple[str, str | None]]:
    """(raw asset, partition) ingested by each requested run, in order."""
    return [
        (key.to_user_string(), r.partition_key if PARTITIONED[key] else None)
        for r in result.run_requests
        for key in r.asset_selection
        if key in PARTITIONED
    ]


def followed(request) -> set[str]:
    """What a requested run does beyond ingesting."""
    return {key.to_user_string() for key in request.asset_selection if key not in PARTITIONED}


def test_the_first_tick_asks_for_every_landed_partition_and_the_next_one_for_nothing(resources, instance):
    result, cursor = tick(resources, instance)
    runs = requested(result)
    assert ("raw_customers", None) in runs and ("raw_merchants", None) in runs
    assert {p for a, p in runs if a == "raw_transactions"} == {
        str(SMALL.start_date + pd.Timedelta(days=n)) for n in range(SMALL.days)
    }
    # one run per landed day, its run key naming the day and the files' contents
    assert len({r.run_key for r in result.run_requests}) == len(result.run_requests) == SMALL.days
    # snapshots come first within a day, so transactions find their customers
    assert runs.index(("raw_customers", None)) < runs.index(("raw_transactions", str(SMALL.start_date)))

    again, _ = tick(resources, instance, cursor)
    assert again.run_requests == [] and "no new or changed" in again.skip_reason.skip_message


def test_a_file_seen_twice_runs_once_and_a_replaced_file_runs_again(resources, state, instance):
    _, cursor = tick(resources, instance)
    day = str(SMALL.start_date)
    landed = next((state / "landing" / "transactions" / f"date={day}").glob("*.parquet"))
    original = landed.read_bytes()

    landed.write_bytes(original)  # rewritten, same content: new mtime only
    touched, cursor = tick(resources, instance, cursor)
    assert touched.run_requests == []

    rows = pd.read_parquet(landed)
    rows.loc[0, "amount"] = rows.loc[0, "amount"] + 1
    rows.to_parquet(landed, index=False)
    replaced, cursor = tick(resources, instance, cursor)
    assert requested(replaced) == [("raw_transactions", day)]

    landed.write_bytes(original)  # back to the first content: a new change again, so it runs again
    restored, _ = tick(resources, instance, cursor)
    assert requested(restored) == [("raw_transactions", day)]
    assert restored.run_requests[0].run_key != replaced.run_requests[0].run_key


def test_a_burst_is_spread_over_ticks_and_nothing_is_lost(resources, state, instance, monkeypatch):
    _, cursor = tick(resources, instance)
    source = next((state / "landing" / "transactions" / f"date={SMALL.start_date}").glob("*.parquet"))
    burst = [str(SMALL.start_date + pd.Timedelta(days=100 + n)) for n in range(30)]
    for day in burst:
        folder = state / "landing" / "transactions" / f"date={day}"
        folder.mkdir(parents=True)
        shutil.copy(source, folder / "transactions.parquet")
    monkeypatch.setattr(sensors, "MAX_RUNS_PER_TICK", 12)

    seen = []
    for expected in (12, 12, 6, 0):
        result, cursor = tick(resources, instance, cursor)
        assert len(result.run_requests) == expected
        seen += [p for _, p in requested(result)]
    assert sorted(seen) == burst


def test_partitions_already_ingested_from_the_same_files_are_not_run_again(resources, instance):
    """A cursor-less first tick after `make demo` must not re-ingest what the demo loaded."""
    day = str(SMALL.start_date)
    assert run_assets(all_assets, resources, instance, selection=[raw_customers, raw_merchants]).success
    assert run_assets(
        all_assets, resources, instance, partition_key=day, selection=[raw_transactions]
    ).success
    result, _ = tick(resources, instance)
    runs = requested(result)
    assert ("raw_transactions", day) not in runs and ("raw_customers", None) not in runs
    assert ("raw_transactions", str(SMALL.start_date + pd.Timedelta(days=1))) in runs


def test_only_the_newest_snapshot_triggers_a_run(resources, state, instance):
    _, cursor = tick(resources, instance)
    newest = sorted((state / "landing" / "customers").glob("date=*"))[-1]
    snapshot = next(newest.glob("*.parquet"))
    older = state / "landing" / "customers" / "date=2000-01-01"
    older.mkdir()
    shutil.copy(snapshot, older / "customers.parquet")
    result, cursor = tick(resources, instance, cursor)
    assert requested(result) == []

    newer = state / "landing" / "customers" / "date=2099-01-01"
    newer.mkdir()
    shutil.copy(snapshot, newer / "customers.parquet")
    result, _ = tick(resources, instance, cursor)
    assert requested(result) == [("raw_customers", None)]


def test_the_newest_day_runs_through_to_its_monitoring_and_a_backlog_is_only_ingested(resources, instance):
    result, _ = tick(resources, instance)
    *backlog, newest = result.run_requests
    assert all(followed(r) == set() for r in backlog)  # automation scores a backlog after, once
    assert newest.partition_key == str(SMALL.start_date + pd.Timedelta(days=SMALL.days - 1))
    assert {"stg_transactions", "customer_features", "online_customer_stats", "online_merchant_stats"} <= (
        followed(newest)
    )
    scored = {"batch_predictions", "feature_drift", "model_performance", "monitoring_report"}
    assert scored <= followed(newest)
    assert not followed(newest) & {"training_set", "fraud_model", "serving_health", "serving_skew"}


def test_a_day_of_labels_alone_refreshes_the_marts_but_scores_nothing(resources, state, instance):
    _, cursor = tick(resources, instance)
    day = str(SMALL.start_date + pd.Timedelta(days=SMALL.days))
    source = next((state / "landing" / "labels").glob("date=*/*.parquet"))
    (state / "landing" / "labels" / f"date={day}").mkdir()
    shutil.copy(source, state / "landing" / "labels" / f"date={day}" / "labels.parquet")
    result, _ = tick(resources, instance, cursor)
    [run] = result.run_requests
    assert requested(result) == [("raw_labels", day)] and run.partition_key == day
    assert "training_labels" in followed(run) and "batch_predictions" not in followed(run)
