"""Point-in-time retrieval on the prod offline store (Postgres) against the local one (DuckDB): the same
marts, the same events, the same process, the same run.

    python benchmarks/offline_stores.py --state <a built local state> [--repeats 3] [--label 16_days]
        [--hash-join]

The state's feature marts are copied into a fresh Postgres database (127.0.0.1:5432, user postgres unless
MLPLATFORM_PG_* say otherwise; dropped at the end) under `marts`, where dbt builds them in prod, with the
index dbt gives them there (so the store looks each event's rows up; without it, `--hash-join`, the store
hash-joins every view: the report says which), vacuumed and analyzed as autovacuum would leave them, and
registered with the prod profile's Feast configuration (Postgres offline store and SQL registry; the Redis
online store is configured, database 11, and not read). `features_as_of_events` for the fraud model's
service (the 25 stored features and the on-demand view: what training sets and batch scoring call) is
timed on both stores for every labelled transaction (training-set size) and for the last day's
transactions (batch-scoring size), best of `--repeats` interleaved, on Postgres as the prod profile
configures it (the events split over its connections), on one connection, and with no view fetched
(`fetched_rows_per_event=0`: every view joined by Postgres, as before the store fetched). Figures (JSON in
benchmarks/results/offline_stores.json, one run per `--label`, the others kept): seconds per store,
Postgres' time over DuckDB's, rows differing (0: every value equal, nulls included).
"""

import argparse
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from features import STORED_VIEWS, best_of, rows_differing
from harness import built_state_arguments, keep_run
from psycopg import sql

from mlplatform.features.retrieval import features_as_of_events
from mlplatform.inference.scoring import TRANSACTION_FIELDS
from mlplatform.postgres_offline_store import looked_up_views, lookup_index
from mlplatform.profiles import build_resources
from mlplatform.resources.feature_store import PostgresRedisFeastFeatureStore
from mlplatform.resources.postgres import PostgresConnection
from mlplatform.training.spec import FRAUD_MODEL

RESULTS = Path(__file__).parent / "results" / "offline_stores.json"
MARTS = {"customer_features": "customer_id", "merchant_features": "merchant_id"}  # and their join key


def copy_marts(warehouse, connection: PostgresConnection, indexed: bool) -> dict[str, int]:
    """The local warehouse's feature marts as tables of `marts` in the Postgres database, `indexed` as dbt
    builds them there (or not, as tables built before the index was declared), vacuumed and analyzed as
    autovacuum leaves a table."""
    import adbc_driver_postgresql.dbapi as adbc

    rows = {}
    params = connection.params()
    params["dbname"] = params.pop("database")
    with adbc.connect(psycopg.conninfo.make_conninfo(**params)) as conn, conn.cursor() as cur:
        cur.execute("create schema marts")
        for mart, key in MARTS.items():
            with warehouse.connect(read_only=True) as con:
                table = con.sql(f"select * from marts.{mart}").to_arrow_table()
            cur.adbc_ingest(mart, table, mode="create", db_schema_name="marts")
            rows[mart] = table.num_rows
            if indexed:
                cur.execute(lookup_index(f"marts.{mart}", [key]))
        conn.commit()
    with psycopg.connect(psycopg.conninfo.make_conninfo(**params), autocommit=True) as con:
        for mart in MARTS:
            con.execute(f"vacuum analyze marts.{mart}")
    return rows


def compare(local_store, prod_store, one_connection, never_fetching, events, repeats: int) -> dict:
    """DuckDB against Postgres as configured (the events split over its connections), on one connection,
    and with no view fetched (every view joined by Postgres), best of `repeats` interleaved; every value
    compared with DuckDB's."""
    stores = {
        "duckdb": local_store,
        "postgres": prod_store,
        "postgres_one_connection": one_connection,
        "postgres_never_fetching": never_fetching,
    }
    measured = best_of(
        repeats,
        {
            name: lambda s=s: features_as_of_events(s, events, FRAUD_MODEL.feature_service)
            for name, s in stores.items()
        },
    )
    duckdb_s, _, by_duckdb = measured["duckdb"]
    features = [c for c in by_duckdb.columns if "__" in c]
    return {
        "events": len(events),
        "features": len(features),
        "postgres_connections": prod_store.config.offline_store.retrieval_connections,
        **{f"{name}_s": round(seconds, 3) for name, (seconds, _, _) in measured.items()},
        "postgres_over_duckdb": round(measured["postgres"][0] / duckdb_s, 2),
        "postgres_one_connection_over_duckdb": round(measured["postgres_one_connection"][0] / duckdb_s, 2),
        "postgres_never_fetching_over_duckdb": round(measured["postgres_never_fetching"][0] / duckdb_s, 2),
        "peak_rss_added_mb": {name: round(mb) for name, (_, mb, _) in measured.items()},
        "rows_differing": {
            name: rows_differing(by_store, by_duckdb, features)
            for name, (_, _, by_store) in measured.items()
            if name != "duckdb"
        },
    }


def main() -> None:
    parser = built_state_arguments(argparse.ArgumentParser())
    parser.add_argument(
        "--hash-join",
        action="store_true",
        help="copy the marts without the index dbt gives them in prod: the store hash-joins every view",
    )
    args = parser.parse_args()
    os.environ["FEAST_USAGE"] = "False"

    local = build_resources(profile="local", state=args.state)
    warehouse = local["warehouse"]
    database = f"mlplatform_bench_{uuid.uuid4().hex[:8]}"
    login = {
        "host": os.environ.get("MLPLATFORM_PG_HOST", "127.0.0.1"),
        "port": int(os.environ.get("MLPLATFORM_PG_PORT", "5432")),
        "user": os.environ.get("MLPLATFORM_PG_USER", "postgres"),
        "password": os.environ.get("MLPLATFORM_PG_PASSWORD", ""),
    }
    admin = psycopg.connect(**{**login, "password": login["password"] or None}, dbname="postgres")
    admin.autocommit = True
    admin.execute(sql.SQL("create database {}").format(sql.Identifier(database)))
    try:
        connection = PostgresConnection(**login, database=database)
        copied = copy_marts(warehouse, connection, indexed=not args.hash_join)
        prod = PostgresRedisFeastFeatureStore(postgres=connection, redis_connection="127.0.0.1:6379,db=11")
        prod.apply()
        labelled = warehouse.read_sql("select * from marts.training_labels").drop(
            columns=["home_country", "category"]
        )
        last_day = warehouse.read_sql(
            f"select {', '.join(TRANSACTION_FIELDS)} from raw.transactions "
            "where _partition_date = (select max(_partition_date) from raw.transactions)"
        )
        one_connection = prod.store()
        one_connection.config.offline_store.retrieval_connections = 1
        never_fetching = prod.store()
        never_fetching.config.offline_store.fetched_rows_per_event = 0.0
        stores = (local["feature_store"].store(), prod.store(), one_connection, never_fetching)
        report = {
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "load_average_start": os.getloadavg(),
            "mart_rows": copied,
            "views_looked_up": looked_up_views(stores[1], list(STORED_VIEWS)),
            "fetched_rows_per_event": stores[1].config.offline_store.fetched_rows_per_event,
            "training_set_size": compare(*stores, labelled, args.repeats),
            "batch_scoring_size": compare(*stores, last_day, args.repeats),
            "load_average_end": os.getloadavg(),
        }
    finally:
        admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(database)))
    keep_run(RESULTS, args.label, report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
