"""A burst of landed days ingested by the landing-zone sensor's runs side by side, under a real
`dagster-daemon` on the prod profile (dagster.prod.yaml: QueuedRunCoordinator, up to 8 runs at once),
gives the same tables as the same days ingested serially.

Several days land at once, and adversarially: a new customer snapshot lands in the same tick as the
transactions of the customers it adds (the warehouse holds an older snapshot without them), and labels
land beside the transactions they refer to. Run in the wrong order, a transactions file would be
validated against the older snapshot and quarantined, a labels file quarantined for transactions not
loaded yet, the marts built before the last days are in. The sensor orders what depends on what
(`mlplatform/ingestion/sensors.py`); this test holds it to it: every run succeeds, no file is quarantined,
runs did overlap, and the raw tables, the staging models and the marts equal (row for row, in any order)
a serial build in another database: the snapshots, each day oldest first, then dbt (as `make demo`).

Declarative automation is off in the daemon's instance (`auto_materialize: enabled: false, use_sensors:
false`): it would score the landed days, which needs a champion model (the end-to-end test covers
scoring). The newest landed day holds only labels, so the sensor's last run refreshes the marts and the
online store and scores nothing.
"""

import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from mlplatform.automation import TRIGGER_TAG
from mlplatform.datagen import GeneratorConfig, generate
from mlplatform.demo import ingestion_runs, quiet_run
from mlplatform.ingestion.sensors import table_tag
from mlplatform.profiles import build_resources
from mlplatform.settings import PROJECT_ROOT
from tests.prod.conftest import REDIS_DB, REDIS_HOST, REDIS_PORT, pg_env
from tests.prod.services import TELEMETRY_OFF, WebhookReceiver, daemon_on_a_code_server, wait_until

pytestmark = pytest.mark.e2e

DATA = GeneratorConfig(
    start_date=pd.Timestamp("2026-04-06").date(),
    days=4,
    customers=150,
    merchants=40,
    transactions_per_day=150,
    seed=23,
)
NEWEST = (DATA.start_date + timedelta(days=DATA.days - 1)).isoformat()
# customers and merchants in the burst's snapshots who are not in the snapshots loaded before them
JOINED = {"customers": 30, "merchants": 4}
SCHEMAS = ("raw", "staging", "marts")
WRITTEN_AT = ("_loaded_at", "loaded_at", "scored_at")  # when a row was written: not data
SENSOR_SECONDS = "5"  # the landing zone scanned every 5 s, so the waves of a burst follow quickly
TIMEOUT = 600  # a safety net for a loaded machine, not the expected time (about 3-5 min)


def land_before(generated: Path, landing: Path) -> None:
    """The snapshots the warehouse held before the burst: dated the day before, without the newest
    customers and merchants."""
    day = (DATA.start_date - timedelta(days=1)).isoformat()
    for table, joined in JOINED.items():
        [source] = (generated / table).glob("date=*/*.parquet")
        rows = pd.read_parquet(source).iloc[:-joined]
        folder = landing / table / f"date={day}"
        folder.mkdir(parents=True)
        rows.to_parquet(folder / source.name, index=False)


def run_job(state: Path, instance: DagsterInstance, job: str, keys=None, partition: str | None = None):
    """One in-process run of `job` (of `keys`) on the state's resources (the active profile's)."""
    from mlplatform.definitions import build_definitions

    defs = build_definitions(build_resources(state=state))
    result = quiet_run(defs.resolve_job_def(job), instance, keys, partition, {TRIGGER_TAG: "test"})
    assert result.success, f"{job} {keys} {partition} failed"


def before_the_burst(state: Path, instance: DagsterInstance, feast: bool) -> None:
    """What the deployment held: the older snapshots loaded (and Feast's registry applied)."""
    from mlplatform.features.assets import feast_registry
    from mlplatform.ingestion.assets import raw_customers, raw_merchants

    run_job(state, instance, "landed_day", [*raw_customers.keys, *raw_merchants.keys])
    if feast:
        run_job(state, instance, "refresh_features_and_model", list(feast_registry.keys))


def tables(state: Path) -> dict[str, pd.DataFrame]:
    """Every table of the raw, staging and marts schemas, without write times, in a stable row order."""
    from tests.transform.test_incremental import comparable

    warehouse = build_resources(state=state)["warehouse"]
    names = warehouse.read_sql(
        "select table_schema, table_name from information_schema.tables "
        f"where table_schema in ({', '.join(repr(s) for s in SCHEMAS)})"
    )
    found = {}
    for schema, name in names.itertuples(index=False):
        rows = warehouse.read_sql(f"select * from {schema}.{name}")
        rows = rows.drop(columns=[c for c in rows.columns if c in WRITTEN_AT])
        found[f"{schema}.{name}"] = comparable(rows)  # floats to 12 digits, then sorted: a stable order
    return found


def quarantined(state: Path) -> list[str]:
    folder = state / "quarantine"
    return (
        sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        if folder.exists()
        else []
    )


def most_at_once(records) -> int:
    """The most runs that were executing at the same instant."""
    edges = sorted(
        [(r.start_time, 1) for r in records if r.start_time]
        + [(r.end_time, -1) for r in records if r.start_time and r.end_time]
    )
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


@pytest.fixture(scope="module")
def builds(tmp_path_factory, throwaway_database) -> dict:
    root = tmp_path_factory.mktemp("concurrent_landing")
    generated = root / "generated"
    generate(DATA, generated)
    shutil.rmtree(generated / "transactions" / f"date={NEWEST}")  # the newest day: labels only
    assert list((generated / "labels" / f"date={NEWEST}").glob("*"))
    states = {side: root / side for side in ("concurrent", "serial")}
    online = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    online.flushdb()
    results: dict = {}
    with WebhookReceiver() as webhook, pytest.MonkeyPatch.context() as env:
        common = {
            **TELEMETRY_OFF,
            "MLPLATFORM_PROFILE": "prod",
            "MLPLATFORM_REDIS_URL": f"{REDIS_HOST}:{REDIS_PORT},db={REDIS_DB}",
            "MLPLATFORM_ALERT_WEBHOOK_URL": webhook.url,
            "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",  # nothing here trains or scores
            "MLPLATFORM_LANDING_SCAN_SECONDS": SENSOR_SECONDS,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        }
        for name, value in common.items():
            env.setenv(name, value)

        # serially, in process: the snapshots, each day oldest first, then dbt (as `make demo` does)
        state = states["serial"]
        for name, value in {
            **pg_env(throwaway_database("serial")),
            "MLPLATFORM_STATE_DIR": str(state),
        }.items():
            env.setenv(name, value)
        land_before(generated, state / "landing")
        with DagsterInstance.ephemeral() as instance:
            before_the_burst(state, instance, feast=False)
            shutil.copytree(generated, state / "landing", dirs_exist_ok=True)
            started = time.perf_counter()
            landing = build_resources(state=state)["landing_zone"]
            for _, selection, partition in ingestion_runs(landing):
                run_job(state, instance, "landed_day", [k for a in selection for k in a.keys], partition)
            from mlplatform.transform import dbt_models

            run_job(state, instance, "landed_day", list(dbt_models.keys))
        results["serial"] = {"tables": tables(state), "seconds": time.perf_counter() - started}

        # side by side: the sensor's runs, queued and started by a real daemon
        state = states["concurrent"]
        home = root / "dagster_home"
        home.mkdir()
        config = (PROJECT_ROOT / "dagster.prod.yaml").read_text()
        (home / "dagster.yaml").write_text(
            config + "\nauto_materialize:\n  enabled: false\n  use_sensors: false\n"
        )
        settings = {
            **pg_env(throwaway_database("concurrent")),
            "MLPLATFORM_STATE_DIR": str(state),
            "MLPLATFORM_DAGSTER_PG_DATABASE": throwaway_database("concurrent_dagster"),
            "DAGSTER_HOME": str(home),
        }
        for name, value in settings.items():
            env.setenv(name, value)
        land_before(generated, state / "landing")
        with DagsterInstance.from_config(str(home)) as instance:
            assert instance.run_coordinator.get_run_queue_config().max_concurrent_runs == 8
            before_the_burst(state, instance, feast=True)
            shutil.copytree(generated, state / "landing", dirs_exist_ok=True)  # the burst, all at once
            already = {r.run_id for r in instance.get_runs()}
            started = time.perf_counter()
            log = root / "daemon.log"
            with daemon_on_a_code_server(dict(os.environ), root):

                def landed() -> list:
                    return [
                        r
                        for r in instance.get_run_records(
                            RunsFilter(tags={TRIGGER_TAG: "landing_zone_sensor"})
                        )
                        if r.dagster_run.run_id not in already
                    ]

                def done() -> bool:
                    runs = landed()
                    last = [
                        r
                        for r in runs
                        if r.dagster_run.tags.get("dagster/partition") == NEWEST
                        and table_tag("labels") in r.dagster_run.tags
                    ]
                    return bool(last) and all(r.dagster_run.is_finished for r in runs)

                wait_until(done, TIMEOUT, f"the landing's runs (see {log})", interval=1)
                records = landed()
            results["concurrent"] = {
                "tables": tables(state),
                "seconds": time.perf_counter() - started,
                "runs": records,
                "others": [
                    r
                    for r in instance.get_runs()
                    if r.run_id not in already | {x.dagster_run.run_id for x in records}
                ],
                "alerts": list(webhook.received),
            }
    online.flushdb()
    results["quarantined"] = {side: quarantined(state) for side, state in states.items()}
    results["landed"] = sorted(
        (table, folder.name.removeprefix("date="))
        for table in ("transactions", "labels")
        for folder in (generated / table).glob("date=*")
    )
    print(
        f"concurrent landing: {len(results['concurrent']['runs'])} runs, at most "
        f"{most_at_once(results['concurrent']['runs'])} at once, {results['concurrent']['seconds']:.0f} s "
        f"(serial, in process: {results['serial']['seconds']:.0f} s)"
    )
    return results


def test_every_landing_run_succeeds_side_by_side_and_no_good_file_is_quarantined(builds):
    runs = builds["concurrent"]["runs"]
    failed = [
        (r.dagster_run.run_id, r.dagster_run.tags.get("dagster/partition"), r.dagster_run.status)
        for r in runs
        if r.dagster_run.status != DagsterRunStatus.SUCCESS
    ]
    assert failed == [] and builds["concurrent"]["alerts"] == []
    assert builds["concurrent"]["others"] == []  # nothing but the landing ran
    assert builds["quarantined"] == {"concurrent": [], "serial": []}
    assert most_at_once(runs) >= 2, "the landing's runs should have run side by side"
    # every landed partition, and each new snapshot, was ingested by exactly one run
    ingested = sorted(
        (table, r.dagster_run.tags.get("dagster/partition"))
        for r in runs
        for table in ("customers", "merchants", "transactions", "labels")
        if table_tag(table) in r.dagster_run.tags
    )
    assert [w for w in ingested if w[0] in ("transactions", "labels")] == builds["landed"]
    assert [t for t, _ in ingested].count("customers") == [t for t, _ in ingested].count("merchants") == 1


def test_the_same_tables_as_serial_runs(builds):
    concurrent, serial = builds["concurrent"]["tables"], builds["serial"]["tables"]
    assert sorted(concurrent) == sorted(serial)
    assert {"raw.customers", "raw.transactions", "raw.labels", "marts.customer_features"} <= set(serial)
    assert len(serial["raw.customers"]) == DATA.customers
    for name in serial:
        # a merchant-day is labelled once its 7-day window has closed: a few days hold none
        assert len(serial[name]) > 0 or name.startswith("staging.") or name == "marts.merchant_risk_labels", (
            name
        )
        pd.testing.assert_frame_equal(concurrent[name], serial[name], check_exact=False, rtol=1e-9, obj=name)


def test_runs_creating_the_same_schema_and_table_at_once_all_load(throwaway_database, tmp_path):
    """Eight loads into a fresh database at the same instant: each creates the `raw` schema and the table
    if missing (Postgres' `create ... if not exists` alone fails the losers with a unique violation)."""
    from datetime import UTC, date, datetime
    from types import SimpleNamespace

    from mlplatform.ingestion.ingest import warehouse_rows
    from mlplatform.ingestion.validation import read_landing_file
    from mlplatform.resources import LandingZone, PostgresConnection, PostgresWarehouse
    from mlplatform.schemas import TRANSACTIONS
    from tests.prod.conftest import PG_HOST, PG_PASSWORD, PG_PORT, PG_USER

    config = GeneratorConfig(
        start_date=DATA.start_date, days=8, customers=50, merchants=40, transactions_per_day=20
    )
    generate(config, tmp_path / "landing")
    landing = LandingZone(landing_dir=str(tmp_path / "landing"), quarantine_dir=str(tmp_path / "quarantine"))
    warehouse = PostgresWarehouse(
        postgres=PostgresConnection(
            host=PG_HOST, port=PG_PORT, user=PG_USER, password=PG_PASSWORD, database=throwaway_database("ddl")
        )
    )
    days = landing.landed_days("transactions")

    def read(day: str) -> list[Any]:  # what validation hands the loader: each file's path and rows
        return [
            SimpleNamespace(path=p, frame=read_landing_file(p, TRANSACTIONS))
            for p in landing.files("transactions", day)
        ]

    now = datetime.now(UTC).replace(tzinfo=None)
    frames = {day: warehouse_rows(TRANSACTIONS, day, read(day), now) for day in days}
    start = threading.Barrier(len(days))

    def load(day: str) -> int:
        start.wait()
        return warehouse.replace_raw_rows(TRANSACTIONS, frames[day], date.fromisoformat(day))

    with ThreadPoolExecutor(len(days)) as pool:
        loaded = list(pool.map(load, days))  # raises the first failure
    count = warehouse.read_sql("select count(*) as n from raw.transactions")["n"].iloc[0]
    assert count == sum(loaded) == sum(len(f) for f in frames.values())
