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


def settle(resources, instance, cursor=None, limit: int = 10) -> tuple[list, object, str | None]:
    """Tick until a tick requests nothing (the runs of a tick are taken as done by the next one): the
    ticks that requested runs, the quiet one and the cursor."""
    waves = []
    for _ in range(limit):
        result, cursor = tick(resources, instance, cursor)
        if not result.run_requests:
            return waves, result, cursor
        waves.append(result)
    raise AssertionError(f"still requesting runs after {limit} ticks")


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


def test_every_landed_partition_is_asked_for_once_in_dependency_order_and_then_nothing(resources, instance):
    """A backlog lands in waves, so runs side by side never read a table another run is still loading:
    the snapshots (with their day), then the days that need only them, labels once the earlier days'
    transactions are in, and the newest day last, alone."""
    waves, quiet, _ = settle(resources, instance)
    days = [str(SMALL.start_date + pd.Timedelta(days=n)) for n in range(SMALL.days)]
    first = str(SMALL.start_date)
    # snapshots first, within their day's run, so transactions find their customers
    assert requested(waves[0]) == [
        ("raw_customers", None),
        ("raw_merchants", None),
        ("raw_transactions", first),
    ]
    wave_of = {run: n for n, wave in enumerate(waves) for run in requested(wave)}
    assert len(wave_of) == sum(len(requested(wave)) for wave in waves)  # each partition once
    assert sorted(p for a, p in wave_of if a == "raw_transactions") == days
    for (asset, day), n in wave_of.items():
        if asset == "raw_transactions" and day != first:
            assert n > wave_of[("raw_customers", None)]
        if asset == "raw_labels":
            assert all(wave_of[("raw_transactions", d)] < n for d in days if d < day), day
    # the newest day alone in the last tick; every run key names its day and files
    [newest] = waves[-1].run_requests
    assert newest.partition_key == days[-1]
    keys = [r.run_key for wave in waves for r in wave.run_requests]
    assert len(set(keys)) == len(keys)
    assert "no new or changed" in quiet.skip_reason.skip_message


def test_a_partition_waits_while_a_run_loading_what_it_needs_is_queued_or_running():
    """What another run still loads holds a partition back (next tick); finished runs do not."""
    day = str(SMALL.start_date + pd.Timedelta(days=SMALL.days - 1))
    in_flight = {("customers", None), ("transactions", str(SMALL.start_date))}
    ready, waiting = sensors.sequence({day: {"transactions": "a", "labels": "b"}}, in_flight)
    assert ready == {} and waiting == {("transactions", day), ("labels", day)}
    ready, waiting = sensors.sequence({day: {"labels": "b"}}, {("transactions", day)})
    assert waiting == {("labels", day)}  # the newest day waits for anything in flight: it refreshes the marts
    older = str(SMALL.start_date + pd.Timedelta(days=1))
    ready, waiting = sensors.sequence({older: {"labels": "b"}, day: {"labels": "c"}}, {("transactions", day)})
    assert ready == {older: {"labels": "b"}} and waiting == {("labels", day)}
    assert sensors.sequence({day: {"transactions": "a", "labels": "b"}}, set()) == (
        {day: {"transactions": "a", "labels": "b"}},
        set(),
    )


def test_a_file_seen_twice_runs_once_and_a_replaced_file_runs_again(resources, state, instance):
    _, _, cursor = settle(resources, instance)
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
    _, _, cursor = settle(resources, instance)
    source = next((state / "landing" / "transactions" / f"date={SMALL.start_date}").glob("*.parquet"))
    burst = [str(SMALL.start_date + pd.Timedelta(days=100 + n)) for n in range(30)]
    for day in burst:
        folder = state / "landing" / "transactions" / f"date={day}"
        folder.mkdir(parents=True)
        shutil.copy(source, folder / "transactions.parquet")
    monkeypatch.setattr(sensors, "MAX_RUNS_PER_TICK", 12)

    seen = []
    for expected in (12, 12, 5, 1, 0):  # the newest day, which refreshes the marts, alone and last
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
    _, _, cursor = settle(resources, instance)
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
    waves, _, _ = settle(resources, instance)
    *backlog, newest = [r for wave in waves for r in wave.run_requests]
    assert all(followed(r) == set() for r in backlog)  # automation scores a backlog after, once
    assert newest.partition_key == str(SMALL.start_date + pd.Timedelta(days=SMALL.days - 1))
    assert {"stg_transactions", "customer_features", "online_customer_stats", "online_merchant_stats"} <= (
        followed(newest)
    )
    scored = {"batch_predictions", "feature_drift", "model_performance", "monitoring_report"}
    assert scored <= followed(newest)
    assert not followed(newest) & {"training_set", "fraud_model", "serving_health", "serving_skew"}


def test_a_day_of_labels_alone_refreshes_the_marts_but_scores_nothing(resources, state, instance):
    _, _, cursor = settle(resources, instance)
    day = str(SMALL.start_date + pd.Timedelta(days=SMALL.days))
    source = next((state / "landing" / "labels").glob("date=*/*.parquet"))
    (state / "landing" / "labels" / f"date={day}").mkdir()
    shutil.copy(source, state / "landing" / "labels" / f"date={day}" / "labels.parquet")
    result, _ = tick(resources, instance, cursor)
    [run] = result.run_requests
    assert requested(result) == [("raw_labels", day)] and run.partition_key == day
    assert "training_labels" in followed(run) and "batch_predictions" not in followed(run)
