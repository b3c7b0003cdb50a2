"""The incremental dbt models on Postgres (dbt-postgres, the prod target): the same SQL as on DuckDB, a
landed day rebuilds that day only, and the tables equal a build from scratch and DuckDB's."""

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import psycopg

from mlplatform.datagen import generate
from mlplatform.ingestion.ingest import warehouse_rows
from mlplatform.ingestion.validation import read_landing_file
from mlplatform.postgres_offline_store import looked_up_views, lookup_index
from mlplatform.resources import (
    DuckDBWarehouse,
    LandingZone,
    PostgresConnection,
    PostgresWarehouse,
    Warehouse,
)
from mlplatform.resources.feature_store import PostgresRedisFeastFeatureStore
from mlplatform.schemas import RAW_TABLES
from tests.conftest import SMALL
from tests.prod.conftest import PG_HOST, PG_PASSWORD, PG_PORT, PG_USER, REDIS_DB, REDIS_HOST, REDIS_PORT
from tests.transform.test_incremental import INCREMENTAL_MODELS, comparable, run_dbt

LAST_DAY = SMALL.start_date + timedelta(days=SMALL.days - 1)


def load(landing: LandingZone, warehouse: Warehouse, days: set[str], snapshots: bool = True) -> None:
    """The landed files of `days` (and the snapshots) into the raw tables with the ingestion's loader (the
    checks are the ingestion tests' subject; here it is dbt). A snapshot loaded again is a new snapshot."""
    for name, table in RAW_TABLES.items():
        for day in landing.landed_days(name):
            if day in days if table.partitioned else snapshots:
                frames = [
                    SimpleNamespace(path=p, frame=read_landing_file(p, table))
                    for p in landing.files(name, day)
                ]
                rows = warehouse_rows(table, day, frames, datetime.now(UTC).replace(tzinfo=None))  # type: ignore[arg-type]
                warehouse.replace_raw_rows(
                    table, rows, date.fromisoformat(day) if table.partitioned else None
                )


def models(warehouse: Warehouse) -> dict:
    return {
        f"{schema}.{model}": comparable(
            warehouse.read_sql(f"select * from {schema}.{model}").drop(columns="_loaded_at", errors="ignore")
        )
        for schema, names in INCREMENTAL_MODELS.items()
        for model in names
    }


def marts_looked_up(connection: PostgresConnection) -> dict[str, bool]:
    """For each view on a dbt mart, as the prod feature store registers it, whether the prod offline
    store looks its rows up event by event through an index of the tables dbt built (else it hash-joins
    them)."""
    features = PostgresRedisFeastFeatureStore(
        postgres=connection, redis_connection=f"{REDIS_HOST}:{REDIS_PORT},db={REDIS_DB}"
    )
    features.apply()
    return looked_up_views(features.store(), ["customer_stats", "merchant_stats"])


def indexes_as_lookup_index_creates(connection: PostgresConnection) -> dict[str, bool]:
    """For each feature mart dbt built, whether its indexes are exactly the one `lookup_index` (what the
    benchmark and the store's tests create on tables loaded without dbt) creates on an empty copy."""

    def indexes(con: psycopg.Connection, table: str) -> list[str]:  # method and columns, without names
        found = con.execute(
            "select pg_get_indexdef(indexrelid) from pg_index where indrelid = %s::regclass", (table,)
        )
        return [definition.split(" USING ", 1)[1] for (definition,) in found.fetchall()]

    same = {}
    with psycopg.connect(connection.conninfo()) as con:  # a transaction, rolled back: the copies go too
        for mart, key in (("customer_features", "customer_id"), ("merchant_features", "merchant_id")):
            con.execute(f"create temporary table copy_of_{mart} (like marts.{mart})")
            con.execute(lookup_index(f"copy_of_{mart}", [key]))
            same[mart] = indexes(con, f"marts.{mart}") == indexes(con, f"copy_of_{mart}")
        con.rollback()
    return same


def test_incremental_on_postgres_equals_a_full_refresh_and_duckdb(throwaway_database, tmp_path):
    generate(SMALL, tmp_path / "landing")
    landing = LandingZone(landing_dir=str(tmp_path / "landing"), quarantine_dir=str(tmp_path / "quarantine"))
    connection = PostgresConnection(
        host=PG_HOST, port=PG_PORT, user=PG_USER, password=PG_PASSWORD, database=throwaway_database("dbt")
    )
    postgres = PostgresWarehouse(postgres=connection)
    duckdb = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"), feature_export_dir=str(tmp_path / "feast"))
    history = {d for d in landing.landed_days("transactions") if d < LAST_DAY.isoformat()}
    load(landing, postgres, history)
    run_dbt(postgres.dbt_env(), "prod", tmp_path / "pg-target")
    last = {LAST_DAY.isoformat()} | {d for d in landing.landed_days("labels") if d >= LAST_DAY.isoformat()}
    load(landing, postgres, last, snapshots=False)

    compiled = run_dbt(postgres.dbt_env(), "prod", tmp_path / "pg-target")
    # the index dbt creates with each mart (feast_lookup_indexes) serves the store's lookups
    assert marts_looked_up(connection) == {"customer_stats": True, "merchant_stats": True}
    assert indexes_as_lookup_index_creates(connection) == {
        "customer_features": True,
        "merchant_features": True,
    }

    assert f"feature_date >= cast('{LAST_DAY}' as date)" in compiled
    incremental = models(postgres)
    run_dbt(postgres.dbt_env(), "prod", tmp_path / "pg-target", "--full-refresh")
    assert marts_looked_up(connection) == {"customer_stats": True, "merchant_stats": True}  # rebuilt with it
    load(landing, duckdb, set(landing.landed_days("transactions")) | set(landing.landed_days("labels")))
    run_dbt(duckdb.dbt_env(), "local", tmp_path / "duck-target")
    for name, full in models(postgres).items():
        assert len(full) > 0, name
        assert incremental[name].equals(full), name
        local = models(duckdb)[name]
        assert list(local.columns) == list(full.columns), name
        assert (local.astype(str).to_numpy() == full.astype(str).to_numpy()).all(), name
