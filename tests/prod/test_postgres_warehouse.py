"""PostgresWarehouse against the real Postgres: replace-by-partition, transactions, dtypes like DuckDB."""

from datetime import date, datetime

import pandas as pd
import psycopg
import pyarrow as pa
import pytest

from mlplatform.ingestion.ingest import loaded_on_other_days, lookup_connection, unloaded_keys
from mlplatform.resources import DuckDBWarehouse, PostgresConnection, PostgresWarehouse
from mlplatform.schemas import TRANSACTIONS
from tests.prod.conftest import PG_HOST, PG_PASSWORD, PG_PORT, PG_USER


@pytest.fixture(scope="module")
def warehouse(throwaway_database) -> PostgresWarehouse:
    return PostgresWarehouse(
        postgres=PostgresConnection(
            host=PG_HOST, port=PG_PORT, user=PG_USER, password=PG_PASSWORD, database=throwaway_database("wh")
        )
    )


def transactions(day: date, n: int, prefix: str = "T") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "transaction_id": [f"{prefix}-{day}-{i}" for i in range(n)],
            "customer_id": [f"C{i:06d}" for i in range(n)],
            "merchant_id": ["M00001"] * n,
            "amount": [10.0 + i / 3 for i in range(n)],
            "currency": ["EUR"] * n,
            "channel": ["pos"] * n,
            "country": ["FR"] * n,
            "event_ts": pd.to_datetime(
                [datetime(day.year, day.month, day.day, 9, i) for i in range(n)]
            ).astype("datetime64[us]"),
            "_source_file": ["a.parquet"] * n,
            "_partition_date": [day] * n,
            "_loaded_at": [datetime(2026, 3, 5, 12)] * n,
        }
    )


def count_by_day(warehouse) -> dict[str, int]:
    rows = warehouse.read_sql(
        "select cast(_partition_date as varchar) as day, count(*) as n from raw.transactions group by 1"
    )
    return dict(zip(rows["day"], rows["n"], strict=True))


def test_replacing_a_partition_is_idempotent_and_leaves_the_others(warehouse):
    first, second = date(2026, 3, 1), date(2026, 3, 2)
    warehouse.replace_raw_rows(TRANSACTIONS, transactions(first, 5), first)
    warehouse.replace_raw_rows(TRANSACTIONS, transactions(second, 3), second)
    warehouse.replace_raw_rows(TRANSACTIONS, transactions(first, 5), first)
    assert count_by_day(warehouse) == {"2026-03-01": 5, "2026-03-02": 3}
    warehouse.replace_raw_rows(TRANSACTIONS, transactions(first, 2, prefix="U"), first)
    assert count_by_day(warehouse) == {"2026-03-01": 2, "2026-03-02": 3}
    ids = warehouse.read_sql(
        "select transaction_id from raw.transactions where _partition_date = '2026-03-01'"
    )
    assert sorted(ids["transaction_id"]) == ["U-2026-03-01-0", "U-2026-03-01-1"]


def test_a_failing_load_changes_nothing(warehouse):
    day = date(2026, 3, 3)
    warehouse.replace_raw_rows(TRANSACTIONS, transactions(day, 4), day)
    before = count_by_day(warehouse)
    broken = transactions(day, 6, prefix="X").astype({"amount": object})
    broken.loc[5, "amount"] = "not a number"  # the COPY fails on the last row, after the delete ran
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        warehouse.replace_raw_rows(TRANSACTIONS, broken, day)
    assert count_by_day(warehouse) == before
    kept = warehouse.read_sql(f"select transaction_id from raw.transactions where _partition_date = '{day}'")
    assert sorted(kept["transaction_id"]) == [f"T-{day}-{i}" for i in range(4)]


def test_replace_partitions_creates_then_replaces_only_the_given_days(warehouse):
    frame = pd.DataFrame(
        {
            "transaction_id": ["a", "b", "c"],
            "score": [0.1, 0.5, float("nan")],
            "decision": [0, 1, 0],
            "_partition_date": [date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 2)],
        }
    )
    warehouse.replace_partitions(
        "inference", "scores", frame, "_partition_date", [date(2026, 3, 1), date(2026, 3, 2)]
    )
    again = frame.iloc[1:2].assign(score=0.9)
    warehouse.replace_partitions("inference", "scores", again, "_partition_date", [date(2026, 3, 2)])
    rows = warehouse.read_sql("select * from inference.scores order by transaction_id")
    assert rows["transaction_id"].tolist() == ["a", "b"]
    assert rows["score"].tolist() == [0.1, 0.9]


def test_reads_have_the_dtypes_duckdb_gives(warehouse, tmp_path):
    """The same table written and read back through both warehouses is the same frame: text that looks
    like a NULL marker, quotes, separators and line breaks included; other objects as their text."""
    frame = pd.DataFrame(
        {
            "s": ["x", "", None, "\\N", 'a "quoted",\nline', "NULL", "é 🙂"],
            "f": [1.0 / 3, float("nan"), 2.5e-17, -0.0, 1e300, 5e-324, 7.0],
            "i": [1, 2, 3, 4, 5, 6, 7],
            "b": [True, False, True, True, False, True, False],
            "ts": pd.to_datetime(
                ["2026-03-01 01:02:03.123456", "2026-03-02", None, "2026-03-04", None, None, None],
                format="ISO8601",
            ).astype("datetime64[us]"),
            "d": [date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3), None, None, None, None],
            "mixed": [1, "two", None, 3.5, "\\N", "", (6,)],
        }
    )
    duck = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"), feature_export_dir=str(tmp_path / "x"))
    for store in (warehouse, duck):
        store.write_table("t", "types", frame.drop(columns="mixed"))
    query = (
        "select s, f, i, b, ts, d, cast(i as double precision) / 2 as ratio, count(*) over () as n, "
        "case when i = 2 then null else i end as maybe from t.types order by i"
    )
    assert warehouse.read_sql(query)["s"].tolist() == [*frame["s"][:2], None, *frame["s"][3:]]
    warehouse.write_table("t", "objects", frame[["i", "mixed"]])
    objects = warehouse.read_sql("select mixed from t.objects order by i")["mixed"]
    assert objects.tolist() == ["1", "two", None, "3.5", "\\N", "", "(6,)"]
    pd.testing.assert_frame_equal(warehouse.read_sql(query), duck.read_sql(query))
    assert warehouse.sample_rows("t.types", 2).equals(warehouse.sample_rows("t.types", 2))
    assert len(warehouse.sample_rows("t.types", 2)) == 2
    assert warehouse.table_exists("t", "types") and not warehouse.table_exists("t", "missing")


def test_a_table_written_in_chunks_is_replaced_whole_or_not_at_all(warehouse):
    warehouse.write_table("training", "chunked", transactions(date(2026, 3, 9), 5))

    def chunks():
        yield transactions(date(2026, 3, 10), 3)
        raise RuntimeError("the retrieval of the second chunk failed")

    with pytest.raises(RuntimeError, match="second chunk"):
        warehouse.write_chunks("training", "chunked", chunks())
    kept = warehouse.read_sql("select transaction_id from training.chunked order by event_ts")
    assert kept["transaction_id"].tolist() == [f"T-2026-03-09-{i}" for i in range(5)]
    days = [transactions(date(2026, 3, d), 2) for d in (11, 12)]
    assert warehouse.write_chunks("training", "chunked", iter(days)) == 4
    written = warehouse.read_sql("select transaction_id from training.chunked order by event_ts")
    assert written["transaction_id"].tolist() == [*days[0]["transaction_id"], *days[1]["transaction_id"]]


def test_ingestion_key_lookups_answer_as_on_duckdb(warehouse, tmp_path):
    """The lookups ingestion validates against (keys never loaded, keys loaded on another day) give the
    same answers through Postgres' IN lists as through DuckDB's joins."""
    first, second = date(2026, 4, 1), date(2026, 4, 2)
    duck = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"), feature_export_dir=str(tmp_path / "x"))
    for store in (warehouse, duck):
        store.replace_raw_rows(TRANSACTIONS, transactions(first, 3, prefix="K"), first)
    keys = pa.array([f"K-{first}-0", f"K-{first}-2", "K-never-1", "K-never-2"])
    with lookup_connection(duck) as con:
        on_duckdb = (
            unloaded_keys(duck, TRANSACTIONS, keys, con),
            loaded_on_other_days(duck, TRANSACTIONS, str(second), keys, con),
        )
    on_postgres = (
        unloaded_keys(warehouse, TRANSACTIONS, keys),
        loaded_on_other_days(warehouse, TRANSACTIONS, str(second), keys),
    )
    assert on_postgres == on_duckdb
    assert on_duckdb == (
        frozenset({"K-never-1", "K-never-2"}),
        {f"K-{first}-0": str(first), f"K-{first}-2": str(first)},
    )
