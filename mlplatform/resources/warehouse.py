"""The warehouse: where raw data is loaded and dbt builds its models.

Assets talk to the `Warehouse` interface; the profile decides which implementation backs it.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
from dagster import ConfigurableResource

from mlplatform.schemas import LOAD_COLUMNS, RawTable

RAW_SCHEMA = "raw"


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

    def write_table(self, schema: str, table: str, rows: pd.DataFrame) -> None:
        """Create or replace `schema.table` with `rows`."""
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
    sql_types: dict[str, str] = {
        "string": "varchar",
        "float": "double",
        "bool": "boolean",
        "timestamp": "timestamp",
        "date": "date",
    }

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        if not read_only:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        connection = duckdb.connect(self.path, read_only=read_only)
        try:
            yield connection
        finally:
            connection.close()

    def replace_raw_rows(self, table: RawTable, rows: pd.DataFrame, partition_date: date | None) -> int:
        with self.connect() as con:
            con.execute(f"create schema if not exists {RAW_SCHEMA}")
            con.execute(self.raw_table_ddl(table))
            con.register("incoming_rows", rows)
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
        with self.connect() as con:
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

    def read_sql(self, sql: str) -> pd.DataFrame:
        if not Path(self.path).exists():
            raise FileNotFoundError(f"the warehouse {self.path} does not exist yet: ingest data first")
        with self.connect(read_only=True) as con:
            return con.execute(sql).df()

    def write_table(self, schema: str, table: str, rows: pd.DataFrame) -> None:
        with self.connect() as con:
            con.execute(f"create schema if not exists {schema}")
            con.register("incoming_rows", rows)
            con.execute(f"create or replace table {schema}.{table} as select * from incoming_rows")

    def sample_rows(self, table: str, n: int, seed: int = 7) -> pd.DataFrame:
        return self.read_sql(f"select * from {table} using sample reservoir({n} rows) repeatable ({seed})")

    def table_exists(self, schema: str, table: str) -> bool:
        return Path(self.path).exists() and super().table_exists(schema, table)

    def dbt_env(self) -> dict[str, str]:
        Path(self.feature_export_dir).mkdir(parents=True, exist_ok=True)
        return {
            "MLPLATFORM_DUCKDB_PATH": str(Path(self.path).resolve()),
            "MLPLATFORM_FEAST_DATA_DIR": str(Path(self.feature_export_dir).resolve()),
        }
