"""The DuckDB warehouse: a table replaced from chunks is replaced whole or not at all; large reads and the
frames cut from them hold only their own memory; the file is locked exactly while a connection is open."""

import subprocess
import sys
import threading
import time
from datetime import date

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

from mlplatform.resources import DuckDBWarehouse
from mlplatform.resources.warehouse import DUCKDB_ROW_GROUP_SIZE, compact_frame, detached
from mlplatform.schemas import LABELS


@pytest.fixture
def warehouse(tmp_path) -> DuckDBWarehouse:
    return DuckDBWarehouse(
        path=str(tmp_path / "warehouse.duckdb"), feature_export_dir=str(tmp_path / "feast")
    )


def frame(start: int, n: int) -> pd.DataFrame:
    return pd.DataFrame({"id": range(start, start + n), "name": [f"n{i}" for i in range(start, start + n)]})


def test_chunks_become_one_table_in_their_order(warehouse):
    written = warehouse.write_chunks("training", "t", iter([frame(0, 3), frame(3, 0), frame(3, 4)]))
    assert written == 7
    assert warehouse.read_sql("select id from training.t")["id"].tolist() == list(range(7))
    assert not warehouse.table_exists("training", "t__building")


def test_a_write_that_fails_midway_leaves_the_old_table_whole(warehouse):
    warehouse.write_table("training", "t", frame(0, 5))

    def chunks():
        yield frame(100, 3)
        raise RuntimeError("the retrieval of the second chunk failed")

    with pytest.raises(RuntimeError, match="second chunk"):
        warehouse.write_chunks("training", "t", chunks())
    assert warehouse.read_sql("select id from training.t")["id"].tolist() == list(range(5))
    assert not warehouse.table_exists("training", "t__building")


def test_large_reads_keep_text_in_arrow_with_nan_for_missing(warehouse):
    warehouse.write_table("training", "t", pd.DataFrame({"name": ["a", None], "x": [1.0, None]}))
    read = warehouse.read_large("select * from training.t")
    assert read["name"].dtype == pd.StringDtype("pyarrow", na_value=float("nan"))
    assert read["name"].isna().tolist() == [False, True]
    pd.testing.assert_frame_equal(
        read.astype({"name": object}), warehouse.read_sql("select * from training.t")
    )
    assert compact_frame(pa.table({"s": ["x"]}))["s"].dtype.storage == "pyarrow"


def test_a_large_read_copies_each_batch_as_it_comes_and_equals_the_plain_read(warehouse, monkeypatch):
    """Every kind of column, missing values included, over several batches: the same frame as `read_sql`
    (text as arrow strings), each column in memory of its own (arrow's, not DuckDB's batches)."""
    import mlplatform.resources.warehouse as module

    rows = pd.DataFrame(
        {
            "name": [f"c-{i}" if i % 5 else None for i in range(23)],
            "x": [i / 3 if i % 4 else None for i in range(23)],
            "n": range(23),
            "flag": [i % 2 == 0 for i in range(23)],
            "ts": pd.date_range("2026-03-01", periods=23, freq="h", tz="UTC"),
        }
    )
    warehouse.write_table("training", "t", rows)
    monkeypatch.setattr(module, "READ_BATCH_ROWS", 5)
    read = warehouse.read_large("select * from training.t order by n")
    assert read["name"].array._pa_array.num_chunks == 5  # copied batch by batch, never concatenated again
    plain = warehouse.read_sql("select * from training.t order by n")
    pd.testing.assert_frame_equal(read.astype({"name": object}), plain)
    with warehouse.reading() as con:
        before = pa.total_allocated_bytes()
        table = module.owned_batches(con.sql("select * from training.t").to_arrow_reader(5))
        assert pa.total_allocated_bytes() - before >= table.nbytes  # all of it copied into arrow's memory


def test_a_detached_slice_holds_its_own_rows_only(warehouse):
    rows = pd.DataFrame({"name": [f"customer-{i:06d}" for i in range(10_000)], "x": range(10_000)})
    warehouse.write_table("training", "t", rows.astype({"x": float}))
    read = warehouse.read_large("select * from training.t")
    tail = read.iloc[9_000:]

    def text_bytes(frame: pd.DataFrame) -> int:
        return sum(buffer.size for buffer in frame["name"].array._pa_array.chunks[0].buffers() if buffer)

    assert text_bytes(tail.copy()) == text_bytes(read)  # pandas' copy keeps every row's text alive
    own = detached(tail)
    assert text_bytes(own) < text_bytes(read) / 5
    pd.testing.assert_frame_equal(own, tail.reset_index(drop=True))


def test_the_warehouse_and_dbt_run_duckdb_inside_the_memory_limit(tmp_path):
    limited = DuckDBWarehouse(
        path=str(tmp_path / "w.duckdb"), feature_export_dir=str(tmp_path / "feast"), memory_limit="1GB"
    )
    with limited.connect() as con:
        assert con.execute("select current_setting('memory_limit')").fetchone() == ("953.6 MiB",)
        # what a read frees goes back to the system, not kept by DuckDB's allocator
        assert con.execute("select current_setting('allocator_background_threads')").fetchone() == (True,)
    assert limited.dbt_env()["MLPLATFORM_DUCKDB_MEMORY_LIMIT"] == "1GB"  # what dbt's profile reads


def other_process_reads(path: str) -> subprocess.CompletedProcess:
    query = "select count(*) from raw.t"
    script = f"import duckdb; print(duckdb.connect({path!r}).execute({query!r}).fetchone()[0])"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)


def test_the_file_is_locked_while_a_connection_is_open_and_free_with_its_writes_once_closed(warehouse):
    """One DuckDB per process with the file attached while in use: other processes (dbt, other runs) find
    it locked exactly while a connection is open, and find every write once it closed."""
    with warehouse.connect() as con:
        con.execute("create schema raw")
        con.execute("create table raw.t as select * from range(5)")
        locked = other_process_reads(warehouse.path)
        assert locked.returncode != 0 and "lock" in locked.stderr.lower()
    free = other_process_reads(warehouse.path)
    assert free.returncode == 0 and free.stdout.strip() == "5", free.stderr[-2000:]
    with warehouse.connect(read_only=True) as con:  # and again, from a fresh attachment
        assert con.execute("select count(*) from raw.t").fetchone() == (5,)
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("insert into raw.t values (6)")


def test_a_read_write_connection_waits_for_other_threads_readers_and_is_refused_inside_its_own(warehouse):
    warehouse.write_table("raw", "t", frame(0, 3))
    with warehouse.connect(read_only=True) as reader:
        with pytest.raises(RuntimeError, match=r"read-write connection .* inside a read-only one"):  # noqa: SIM117
            with warehouse.connect():
                pass
        with warehouse.connect(read_only=True) as nested:  # readers share the attachment
            assert nested.execute("select count(*) from raw.t").fetchone() == (3,)
        written = threading.Event()

        def write() -> None:
            warehouse.write_table("raw", "t", frame(0, 7))
            written.set()

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.5)
        assert not written.is_set()  # waiting for this reader
        assert reader.execute("select count(*) from raw.t").fetchone() == (3,)
    writer.join(30)
    assert written.is_set()
    with warehouse.connect() as con, warehouse.connect(read_only=True) as inside:  # readers share a writer's
        assert con.execute("select count(*) from raw.t").fetchone() == (7,)
        assert inside.execute("select count(*) from raw.t").fetchone() == (7,)


def row_group_sizes(warehouse, table: str) -> list[int]:
    with warehouse.reading() as con:
        return [
            size
            for (size,) in con.execute(
                f"select max(count) from pragma_storage_info('{table}') group by row_group_id"
            ).fetchall()
        ]


def test_partitions_appended_get_small_row_groups_and_tables_written_whole_the_default(warehouse):
    """Small row groups keep the checkpoint of a day's append to the rows appended; a table written whole
    (a training set) keeps DuckDB's groups, cheaper to read back (see DUCKDB_ROW_GROUP_SIZE)."""
    big = 3 * DUCKDB_ROW_GROUP_SIZE
    warehouse.replace_partitions("raw", "appended", frame(0, big), "id", [])
    warehouse.replace_partitions("raw", "appended", frame(10**6, DUCKDB_ROW_GROUP_SIZE + 7), "id", [])
    rows = warehouse.read_sql("select count(*) as n from raw.appended")["n"].tolist()
    assert rows == [4 * DUCKDB_ROW_GROUP_SIZE + 7]
    assert max(row_group_sizes(warehouse, "raw.appended")) <= DUCKDB_ROW_GROUP_SIZE
    day = date(2026, 3, 2)
    labels = pd.DataFrame(
        {
            "transaction_id": [f"T{i}" for i in range(big)],
            "is_fraud": False,
            "reported_at": pd.Timestamp(day),
            "_source_file": "labels.parquet",
            "_partition_date": day,
            "_loaded_at": pd.Timestamp(day),
        }
    )
    assert warehouse.replace_raw_rows(LABELS, labels, day) == big  # a raw partition: appended too
    assert max(row_group_sizes(warehouse, "raw.labels")) <= DUCKDB_ROW_GROUP_SIZE
    warehouse.write_table("training", "whole", frame(0, big))
    assert row_group_sizes(warehouse, "training.whole") == [big]
