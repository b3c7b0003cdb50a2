"""The warehouse: where raw data is loaded and dbt builds its models.

Assets talk to the `Warehouse` interface; the profile decides which implementation backs it.
"""

from __future__ import annotations

import io
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import date, datetime
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING

from dagster import ConfigurableResource

from mlplatform.resources.postgres import ENV_VARS, PostgresConnection
from mlplatform.schemas import LOAD_COLUMNS, RawTable

RAW_SCHEMA = "raw"
# DuckDB's buffer pool in every DuckDB the local profile runs (the warehouse, dbt's, the offline store's);
# beyond it joins, sorts and windows spill to disk. DuckDB's own default, 80% of RAM, let a year's dbt
# build reach 21 GB (benchmarks/scale.py).
DUCKDB_MEMORY_LIMIT = "4GB"
# Rows per row group in the tables the platform appends to day by day (raw tables, predictions; DuckDB's
# default: 122,880). An append smaller than a row group fills the table's last, partly filled group,
# which every checkpoint (each time the file is released) compresses again whole: at ~30k transactions a
# day, releasing the file after a day's load took 20-290 ms (2.6 s over 34 days, `benchmarks/ingestion.py`);
# with groups of 16,384 rows full groups are written as the rows are inserted: 0.17 s in all. Tables
# written whole keep DuckDB's default: a year's training set stored in small groups took 1.5 GB more
# memory to read back (`benchmarks/scale.py`).
DUCKDB_ROW_GROUP_SIZE = 16_384
READ_BATCH_ROWS = 1_000_000  # rows DuckDB hands over at a time in a large read (its default)
BUILDING_SUFFIX = "__building"  # a table being written in chunks, renamed when whole
if TYPE_CHECKING:  # pyarrow is imported by the reads that use it
    import duckdb
    import pandas as pd
    import psycopg
    import pyarrow as pa


def sql_literals(values) -> str:
    """Values from landed files as quoted SQL literals (a ' inside is doubled), never pasted raw."""
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)


def compact_frame(table: pa.Table) -> pd.DataFrame:
    """`table` in pandas with its text left in arrow buffers (pandas' pyarrow string dtype, NaN when
    missing as in an object column), not one Python str per value: at 9.8M labels of 10 text columns
    the objects took 8 GB. `table` is consumed: each column is freed once converted (pass a table
    nothing else refers to)."""
    import pyarrow as pa

    for position, field in enumerate(table.schema):
        # text copied out of the producer's batches: DuckDB frees a batch it exported as a whole, so a
        # text column kept in pandas would keep every column of its batches
        if is_text(field.type):
            copied = owned(table.column(position).chunks, field.type)
            table = table.set_column(position, field, pa.chunked_array([copied], field.type))
    return pandas_frame(table)


def owned_batches(reader: pa.RecordBatchReader) -> pa.Table:
    """The reader's batches as a table whose every column owns its memory, copied batch by batch.

    DuckDB frees a batch it exported only once every column of it is released: converted from a table of
    its batches, no batch went before the last column was done, so the answer, the copies of its text and
    the frame were all in memory at once (a year's training set: 7.1 GB for a 2.9 GB frame). Copied as
    they come, each batch goes as soon as it is copied, and each column once it is converted."""
    import pyarrow as pa

    copies: list[list[pa.Array]] = [[] for _ in reader.schema]
    for batch in reader:
        for column, copied in zip(batch.columns, copies, strict=True):
            copied.append(owned([column], column.type))
    columns = [pa.chunked_array(c, f.type) for c, f in zip(copies, reader.schema, strict=True)]
    return pa.Table.from_arrays(columns, schema=reader.schema)


def owned(chunks: list[pa.Array], arrow_type: pa.DataType) -> pa.Array:
    """The chunks as one array in buffers of its own (arrow's concatenation always copies)."""
    import pyarrow as pa

    return pa.concat_arrays([*chunks, pa.array([], arrow_type)])


def is_text(arrow_type: pa.DataType) -> bool:
    import pyarrow as pa

    return arrow_type in (pa.string(), pa.large_string())


def pandas_frame(table: pa.Table) -> pd.DataFrame:
    """`table` (consumed) in pandas, text as pandas' pyarrow strings with NaN for missing, one block per
    column (a column can be deleted without copying the others)."""
    import numpy as np
    import pandas as pd

    text = pd.StringDtype("pyarrow", na_value=np.nan)
    return table.to_pandas(
        types_mapper=lambda arrow_type: text if is_text(arrow_type) else None,
        self_destruct=True,
        split_blocks=True,
    )


def detached(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` copied into memory of its own, text included: a slice of a `compact_frame` shares the arrow
    buffers of all the rows it was cut from (pandas' `copy()` shares them too) and keeps them alive."""
    import pyarrow as pa

    return compact_frame(pa.Table.from_pandas(frame, preserve_index=False))


def release_unused_memory() -> None:
    """Hand back to the system the memory of freed `compact_frame`s: pyarrow's allocator keeps it
    otherwise (2 GB once a year of training rows was freed, measured)."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


@dataclass
class _Attachment:
    alias: str
    read_only: bool
    users: Counter[int] = dataclass_field(default_factory=Counter)  # open connections by thread


class AttachedFiles:
    """One in-memory DuckDB per process, with each database file attached to it only while connections
    use it.

    Opening a DuckDB database costs ~20 ms of CPU whatever it holds (its built-in extensions register
    their functions), attaching a file to an open one ~1 ms: a run opened the warehouse dozens of times.
    A file is detached as soon as its last connection closes, which releases its lock for other processes
    (dbt, other runs) exactly as closing a database did. A read-only attachment serves read-write
    connections only once it is detached: a thread asking for one while it holds a read-only connection
    is refused (it would wait for itself); other threads wait."""

    _shared: AttachedFiles | None = None
    _lock = threading.Lock()

    def __init__(self, temp_directory: str) -> None:
        import duckdb

        # DuckDB's allocator hands freed memory back to the system in the background: otherwise it kept
        # what a large read freed (~1 GB after a year's training rows), under the classifier's fit
        self._database = duckdb.connect(
            ":memory:", config={"temp_directory": temp_directory, "allocator_background_threads": True}
        )
        self._memory_limit: str | None = None
        self._attachments: dict[str, _Attachment] = {}
        self._changed = threading.Condition()
        self._aliases = count()

    @classmethod
    def shared(cls, temp_directory: str) -> AttachedFiles:
        """The process's instance; it spills beyond its memory limit into the first caller's
        `temp_directory` (DuckDB's default: beside a database file, or the working directory)."""
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls(temp_directory)
            return cls._shared

    @contextmanager
    def connect(
        self, path: str, read_only: bool, memory_limit: str, row_group_size: int | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection whose default database is the file at `path`, in a buffer pool of `memory_limit`
        (one pool per process: the last connection's limit holds). A file attached for writing by this
        connection gets row groups of `row_group_size` rows (None: DuckDB's default); one already attached
        keeps its own."""
        path = str(Path(path).resolve())
        attachment = self._acquire(path, read_only, memory_limit, row_group_size)
        try:
            connection = self._database.cursor()
            try:
                connection.execute(f"use {attachment.alias}")
                yield connection
            finally:
                connection.close()
        finally:
            self._release(path)

    def _acquire(
        self, path: str, read_only: bool, memory_limit: str, row_group_size: int | None
    ) -> _Attachment:
        me = threading.get_ident()
        with self._changed:
            if memory_limit != self._memory_limit:
                self._database.execute("set memory_limit = ?", [memory_limit])
                self._memory_limit = memory_limit
            while (held := self._attachments.get(path)) and held.read_only and not read_only:
                if held.users[me]:
                    raise RuntimeError(f"a read-write connection to {path} inside a read-only one")
                self._changed.wait()
            if held is None:
                alias = f"attached_{next(self._aliases)}"
                quoted = path.replace("'", "''")
                mode = ""
                if read_only:
                    mode = " (read_only)"
                elif row_group_size:
                    mode = f" (row_group_size {int(row_group_size)})"
                self._database.execute(f"attach '{quoted}' as {alias}{mode}")
                held = self._attachments[path] = _Attachment(alias, read_only)
            held.users[me] += 1
            return held

    def _release(self, path: str) -> None:
        with self._changed:
            held = self._attachments[path]
            held.users[threading.get_ident()] -= 1
            if not +held.users:  # no connection left open
                del self._attachments[path]
                self._database.execute(f"detach {held.alias}")
                self._changed.notify_all()


class Warehouse(ConfigurableResource):
    """Replace-by-partition loads and reads; every load is one transaction, so a re-run never duplicates."""

    sql_types: dict[str, str] = {}

    def raw_table_ddl(self, table: RawTable) -> str:
        columns = {**table.columns, **LOAD_COLUMNS}
        body = ", ".join(f"{name} {self.sql_types[kind]}" for name, kind in columns.items())
        return f"create table if not exists {RAW_SCHEMA}.{table.name} ({body})"

    def replace_raw_rows(self, table: RawTable, rows: pd.DataFrame, partition_date: date | None) -> int:
        """Make `rows` the whole content of the partition (or of the table for snapshots)."""
        raise NotImplementedError

    def replace_partitions(
        self, schema: str, table: str, rows: pd.DataFrame, partition_column: str, partitions: list[date]
    ) -> int:
        """Make `rows` the whole content of `partitions` of `schema.table` (created from `rows` if new)."""
        raise NotImplementedError

    def read_sql(self, sql: str) -> pd.DataFrame:
        raise NotImplementedError

    def read_large(self, sql: str) -> pd.DataFrame:
        """`read_sql` for millions of rows: text kept compact (`compact_frame`) where the engine answers
        in arrow."""
        return self.read_sql(sql)

    def write_table(self, schema: str, table: str, rows: pd.DataFrame) -> None:
        """Create or replace `schema.table` with `rows`."""
        self.write_chunks(schema, table, [rows])

    def write_chunks(self, schema: str, table: str, chunks: Iterable[pd.DataFrame]) -> int:
        """Create or replace `schema.table` with the rows of every chunk, taken one at a time (a table larger
        than memory can be written); readers see the old table until the whole new one replaces it."""
        raise NotImplementedError

    def sample_rows(self, table: str, n: int, seed: int = 7) -> pd.DataFrame:
        """A repeatable random sample of up to `n` rows."""
        raise NotImplementedError

    def table_exists(self, schema: str, table: str) -> bool:
        found = self.read_sql(
            "select count(*) as n from information_schema.tables "
            f"where table_schema = '{schema}' and table_name = '{table}'"
        )
        return bool(found["n"].iloc[0])

    def dbt_env(self) -> dict[str, str]:
        """Environment variables the dbt profile reads to reach this warehouse."""
        raise NotImplementedError


class DuckDBWarehouse(Warehouse):
    """A DuckDB file: the embedded warehouse of the local profile.

    dbt also exports the feature marts as parquet into `feature_export_dir`, for Feast's file offline store.
    """

    path: str
    feature_export_dir: str
    memory_limit: str = DUCKDB_MEMORY_LIMIT  # here and in dbt's DuckDB
    appended_row_group_size: int = DUCKDB_ROW_GROUP_SIZE  # of the tables appended to by partition
    sql_types: dict[str, str] = {
        "string": "varchar",
        "float": "double",
        "bool": "boolean",
        "timestamp": "timestamp",
        "date": "date",
    }

    @contextmanager
    def connect(
        self, read_only: bool = False, appending: bool = False
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """`appending`: for loads that add a partition to a table (see DUCKDB_ROW_GROUP_SIZE)."""
        if not read_only:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        files = AttachedFiles.shared(temp_directory=f"{self.path}.tmp")
        row_group_size = self.appended_row_group_size if appending else None
        with files.connect(self.path, read_only, self.memory_limit, row_group_size) as connection:
            yield connection

    def replace_raw_rows(self, table: RawTable, rows: pd.DataFrame, partition_date: date | None) -> int:
        import pyarrow as pa

        with self.connect(appending=True) as con:
            con.execute(f"create schema if not exists {RAW_SCHEMA}")
            con.execute(self.raw_table_ddl(table))
            # as Arrow: DuckDB scans it a third faster than the frame (its dates are Python objects)
            con.register("incoming_rows", pa.Table.from_pandas(rows, preserve_index=False))
            con.execute("begin transaction")
            if partition_date is None:
                con.execute(f"delete from {RAW_SCHEMA}.{table.name}")
            else:
                con.execute(
                    f"delete from {RAW_SCHEMA}.{table.name} where _partition_date = ?", [partition_date]
                )
            con.execute(f"insert into {RAW_SCHEMA}.{table.name} by name select * from incoming_rows")
            con.execute("commit")
        return len(rows)

    def replace_partitions(
        self, schema: str, table: str, rows: pd.DataFrame, partition_column: str, partitions: list[date]
    ) -> int:
        with self.connect(appending=True) as con:
            con.execute(f"create schema if not exists {schema}")
            con.register("incoming_rows", rows)
            con.execute(f"create table if not exists {schema}.{table} as from incoming_rows limit 0")
            con.execute("begin transaction")
            con.execute(
                f"delete from {schema}.{table} where list_contains(?, {partition_column})", [partitions]
            )
            con.execute(f"insert into {schema}.{table} by name select * from incoming_rows")
            con.execute("commit")
        return len(rows)

    @contextmanager
    def reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if not Path(self.path).exists():
            raise FileNotFoundError(f"the warehouse {self.path} does not exist yet: ingest data first")
        with self.connect(read_only=True) as con:
            yield con

    def read_sql(self, sql: str) -> pd.DataFrame:
        with self.reading() as con:
            return con.execute(sql).df()

    def read_large(self, sql: str) -> pd.DataFrame:
        with self.reading() as con:
            # streamed: DuckDB hands batches over as it goes instead of holding the whole answer too
            return pandas_frame(owned_batches(con.sql(sql).to_arrow_reader(READ_BATCH_ROWS)))

    def write_chunks(self, schema: str, table: str, chunks: Iterable[pd.DataFrame]) -> int:
        building, written = f"{schema}.{table}{BUILDING_SUFFIX}", 0
        try:
            for number, rows in enumerate(chunks):
                with self.connect() as con:  # one per chunk: the file is free while the next is computed
                    con.register("incoming_rows", rows)
                    if number == 0:
                        con.execute(f"create schema if not exists {schema}")
                        con.execute(f"create or replace table {building} as select * from incoming_rows")
                    else:
                        con.execute(f"insert into {building} by name select * from incoming_rows")
                written += len(rows)
        except BaseException:
            with self.connect() as con:
                con.execute(f"drop table if exists {building}")
            raise
        with self.connect() as con:
            con.execute("begin transaction")
            con.execute(f"drop table if exists {schema}.{table}")
            con.execute(f"alter table {building} rename to {table}")
            con.execute("commit")
        return written

    def sample_rows(self, table: str, n: int, seed: int = 7) -> pd.DataFrame:
        return self.read_sql(f"select * from {table} using sample reservoir({n} rows) repeatable ({seed})")

    def table_exists(self, schema: str, table: str) -> bool:
        return Path(self.path).exists() and super().table_exists(schema, table)

    def dbt_env(self) -> dict[str, str]:
        Path(self.feature_export_dir).mkdir(parents=True, exist_ok=True)
        return {
            "MLPLATFORM_DUCKDB_PATH": str(Path(self.path).resolve()),
            "MLPLATFORM_DUCKDB_MEMORY_LIMIT": self.memory_limit,
            "MLPLATFORM_FEAST_DATA_DIR": str(Path(self.feature_export_dir).resolve()),
        }


class PostgresWarehouse(Warehouse):
    """Postgres: the warehouse of the prod profile (dbt's `prod` target).

    Loads are COPYs inside one transaction with the delete they replace, so readers see the old
    partition or the new one, never neither or both. Reads come back with the pandas dtypes DuckDB gives
    (`postgres_frame`), so the assets behave the same on both warehouses. Feast reads the marts here too:
    nothing is exported. Runs side by side may create the same schema and table at once: `create_missing`
    serializes that.
    """

    postgres: PostgresConnection
    sql_types: dict[str, str] = {
        "string": "text",
        "float": "double precision",
        "bool": "boolean",
        "timestamp": "timestamp",
        "date": "date",
    }

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """One transaction: committed when the block ends, rolled back when it raises."""
        import psycopg

        with psycopg.connect(self.postgres.conninfo()) as connection:
            yield connection

    def replace_raw_rows(self, table: RawTable, rows: pd.DataFrame, partition_date: date | None) -> int:
        with self.connect() as con:
            create_missing(con, RAW_SCHEMA, table.name, self.raw_table_ddl(table))
            if partition_date is None:
                con.execute(f"delete from {RAW_SCHEMA}.{table.name}")
            else:
                con.execute(
                    f"delete from {RAW_SCHEMA}.{table.name} where _partition_date = %s", [partition_date]
                )
            copy_rows(con, f"{RAW_SCHEMA}.{table.name}", rows)
        return len(rows)

    def replace_partitions(
        self, schema: str, table: str, rows: pd.DataFrame, partition_column: str, partitions: list[date]
    ) -> int:
        with self.connect() as con:
            create_missing(
                con, schema, table, create_table_sql(f"{schema}.{table}", rows, if_not_exists=True)
            )
            con.execute(
                f"delete from {schema}.{table} where {partition_column} = any(%s)", [list(partitions)]
            )
            copy_rows(con, f"{schema}.{table}", rows)
        return len(rows)

    def read_sql(self, sql: str) -> pd.DataFrame:
        with self.connect() as con, con.cursor() as cursor:
            cursor.execute(sql)
            return postgres_frame(cursor.description, cursor.fetchall())

    def write_chunks(self, schema: str, table: str, chunks: Iterable[pd.DataFrame]) -> int:
        written = 0
        with self.connect() as con:  # one transaction: readers see the old table until it commits
            lock_schema(con, schema)  # a replacement: always under the lock, so two never interleave
            con.execute(f"create schema if not exists {schema}")
            con.execute(f"drop table if exists {schema}.{table}")
            for number, rows in enumerate(chunks):
                if number == 0:
                    con.execute(create_table_sql(f"{schema}.{table}", rows))
                copy_rows(con, f"{schema}.{table}", rows)
                written += len(rows)
        return written

    def sample_rows(self, table: str, n: int, seed: int = 7) -> pd.DataFrame:
        # ordered by a hash of the row's content: the same rows for the same table and seed, whatever
        # the physical order
        return self.read_sql(
            f"select * from {table} as sampled order by md5(sampled::text || '{seed}') limit {n}"
        )

    def dbt_env(self) -> dict[str, str]:
        p = self.postgres.params()
        return {
            **{var: str(p[field]) for field, var in ENV_VARS.items()},
            "MLPLATFORM_PG_SSLMODE": p["sslmode"],
        }


def lock_schema(con: psycopg.Connection, schema: str) -> None:
    """Hold the schema's advisory lock until the transaction ends (commit or rollback)."""
    con.execute("select pg_advisory_xact_lock(hashtext(%s))", [f"mlplatform.schema.{schema}"])


def create_missing(con: psycopg.Connection, schema: str, table: str, table_ddl: str) -> None:
    """Create `schema` and `table` (`table_ddl`: a `create table if not exists`) inside the caller's
    transaction when the table does not exist yet.

    Postgres' `create schema/table if not exists` is not safe side by side: two transactions creating the
    same object at once both pass the existence test, and the second fails on the catalog's unique index
    (`duplicate key value violates unique constraint "pg_namespace_nspname_index"`; seen with 8 loads into
    a fresh database, tests/prod/test_concurrent_landing.py). So a transaction that does not see the table
    takes the schema's advisory lock first: the next one waits until the first committed, then finds the
    objects and creates nothing. Once the table exists no lock is taken, and loads stay side by side.
    """
    if con.execute("select to_regclass(%s)", [f"{schema}.{table}"]).fetchone() == (None,):
        lock_schema(con, schema)
    con.execute(f"create schema if not exists {schema}")
    con.execute(table_ddl)


COPY_CHUNK_ROWS = 50_000
# Postgres type OIDs of the result columns that need converting to DuckDB's pandas dtypes
PG_BOOL, PG_INTS, PG_FLOATS = 16, {20, 21, 23}, {700, 701, 1700}
PG_DATE, PG_TIMESTAMP, PG_TIMESTAMPTZ = 1082, 1114, 1184


def postgres_type(column: pd.Series) -> str:
    """The Postgres type DuckDB would give a pandas column in `create table as select * from frame`."""
    import numpy as np
    import pandas as pd

    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "bigint"
    if pd.api.types.is_float_dtype(dtype):
        return "double precision"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "timestamptz"
    if pd.api.types.is_datetime64_dtype(dtype):
        return "timestamp"
    values = column.dropna()
    first = values.iloc[0] if len(values) else None
    if isinstance(first, datetime):
        return "timestamptz" if first.tzinfo else "timestamp"
    if isinstance(first, date):
        return "date"
    if isinstance(first, bool | np.bool_):
        return "boolean"
    return "text"


def create_table_sql(name: str, rows: pd.DataFrame, if_not_exists: bool = False) -> str:
    body = ", ".join(f'"{column}" {postgres_type(rows[column])}' for column in rows.columns)
    return f"create table {'if not exists ' if if_not_exists else ''}{name} ({body})"


def copy_rows(con: psycopg.Connection, name: str, rows: pd.DataFrame) -> None:
    """COPY `rows` into `name` by column name, as CSV in which every value is quoted and a NULL is not:
    no text is ever read back as NULL (an empty string, or a `\\N`, stays the string it was)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    columns = ", ".join(f'"{column}"' for column in rows.columns)
    table = pa.Table.from_arrays(
        [copyable(rows[c]) for c in rows.columns], names=[str(c) for c in rows.columns]
    )
    options = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
    with con.cursor().copy(f"copy {name} ({columns}) from stdin (format csv)") as copy:
        for start in range(0, len(rows), COPY_CHUNK_ROWS):
            buffer = io.BytesIO()
            pacsv.write_csv(table.slice(start, COPY_CHUNK_ROWS), buffer, options)
            copy.write(buffer.getbuffer())


def copyable(values: pd.Series) -> pa.Array:
    """`values` as Arrow's CSV writer writes them for Postgres; other columns (mixed objects, durations,
    categories of them) as their text, as pandas wrote every value before."""
    import pyarrow as pa

    try:
        array = pa.array(values, from_pandas=True)
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        types = pa.types
        written = (types.is_string, types.is_large_string, types.is_integer, types.is_floating,
                   types.is_boolean, types.is_date, types.is_timestamp, types.is_decimal)  # fmt: skip
        if any(is_written(array.type) for is_written in written):
            return array
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    return pa.array(values.map(str).where(values.notna(), None), type=pa.string())


def postgres_frame(description, records: list[tuple]) -> pd.DataFrame:
    """A query result with the dtypes DuckDB's `.df()` gives: int64 (Int64 when NULLs occur), float64
    (numeric too), bool (boolean with NULLs), datetime64[us] for dates and timestamps, UTC for timestamptz."""
    import pandas as pd

    names = [column.name for column in description]
    frame = pd.DataFrame.from_records(records, columns=names, coerce_float=False)
    for position, column in enumerate(description):
        values = frame.iloc[:, position]
        has_nulls = bool(values.isna().any())
        if column.type_code in PG_INTS:
            converted = values.astype("Int64" if has_nulls else "int64")
        elif column.type_code in PG_FLOATS:
            converted = values.astype("float64")
        elif column.type_code == PG_BOOL:
            converted = values.astype("boolean" if has_nulls else "bool")
        elif column.type_code in (PG_DATE, PG_TIMESTAMP):
            converted = pd.to_datetime(values).astype("datetime64[us]")
        elif column.type_code == PG_TIMESTAMPTZ:
            converted = pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]")
        else:
            continue
        frame[names[position]] = converted
    return frame
