"""Ingest one partition: validate every landed file, quarantine the bad ones, load the rest atomically.

A partition loads only when all its files pass; otherwise the warehouse keeps what it had, the failing
files move to quarantine with their reason, and the good files stay in the landing zone for the re-run.
Each file is judged for its own faults: a key it shares with a neighbour is blamed on one file only (see
`blame_collisions`), a key already loaded on another day is the new file's fault, and a label for a
transaction never loaded is quarantined (re-land it once its transaction is loaded).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from mlplatform.ingestion.validation import (
    REFERENCES,
    TEXT_STORAGE,
    UNIQUE_ACROSS_DAYS,
    ExpectationOutcome,
    FileValidation,
    PartitionContext,
    SuiteRunner,
    UnreadableFileError,
    blame_collisions,
    checks_for,
    read_landing_file,
    text_array,
    unreadable,
    validate_frame,
)
from mlplatform.resources.landing import LandingZone
from mlplatform.resources.warehouse import DuckDBWarehouse, Warehouse, sql_literals
from mlplatform.schemas import RAW_TABLES, RawTable

if TYPE_CHECKING:
    import duckdb
    import pandas as pd
    import pyarrow as pa

LOOKUP_CHUNK = 10_000  # keys per warehouse query (an IN list)


class NothingLandedError(RuntimeError):
    """Asked to ingest a partition for which no file has landed."""


@dataclass(frozen=True)
class CheckSummary:
    name: str
    passed: bool
    files_evaluated: list[str]
    failures: list[tuple[str, ExpectationOutcome]]  # (file name, what failed)
    files_not_judged: list[str]  # files this check could not look at (their schema failed)

    @property
    def judged(self) -> bool:
        """A failure found is a verdict; otherwise every file must have been looked at."""
        return bool(self.failures) or (bool(self.files_evaluated) and not self.files_not_judged)


@dataclass
class IngestionReport:
    table: RawTable
    day: str
    validations: list[FileValidation]
    rows_loaded: int
    quarantined: dict[str, Path]

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.validations)

    def check_summaries(self) -> list[CheckSummary]:
        summaries = []
        for name in checks_for(self.table):
            evaluated = [v for v in self.validations if any(o.check == name for o in v.outcomes)]
            failures = [(v.path.name, o) for v in evaluated for o in v.failures if o.check == name]
            not_judged = [v.path.name for v in self.validations if v not in evaluated]
            summaries.append(
                CheckSummary(name, not failures, [v.path.name for v in evaluated], failures, not_judged)
            )
        return summaries


def ingest_partition(
    table: RawTable,
    day: str,
    landing: LandingZone,
    warehouse: Warehouse,
    runner: SuiteRunner,
    *,
    known_customers: pa.Array | None = None,
    known_merchants: pa.Array | None = None,
) -> IngestionReport:
    import pyarrow as pa

    files = landing.files(table.name, day)
    if not files:
        raise NothingLandedError(
            f"no file has landed for {table.name} on {day} "
            f"(looked in {landing.partition_dir(table.name, day)}); the warehouse is unchanged"
        )
    frames: dict[Path, pd.DataFrame | None] = {}
    failed_reads: dict[Path, FileValidation] = {}
    for path in files:
        try:
            frames[path] = read_landing_file(path, table, for_validation=True)
        except UnreadableFileError as error:
            failed_reads[path] = unreadable(path, error)
    keys = {path: frame_keys(frame, table.key) for path, frame in frames.items()}
    every_key = distinct_keys(keys.values())
    with lookup_connection(warehouse) as con:
        elsewhere = (
            loaded_on_other_days(warehouse, table, day, every_key, con)
            if table.name in UNIQUE_ACROSS_DAYS
            else {}
        )
        unloaded_transactions = None
        if table.name in REFERENCES:
            referenced = REFERENCES[table.name][1]
            unloaded = unloaded_keys(warehouse, RAW_TABLES[referenced], every_key, con)
            unloaded_transactions = pa.array(sorted(unloaded), pa.large_string())
        already_loaded = loaded_files(warehouse, table, day, con)
    validations = [
        failed_reads[path]
        if path in failed_reads
        else validate_frame(
            path,
            frames[path],
            table,
            PartitionContext(
                day=date.fromisoformat(day) if table.partition_timestamp else None,
                known_customers=known_customers,
                known_merchants=known_merchants,
                unloaded_transactions=unloaded_transactions,
                loaded_on_other_days=_about_keys(elsewhere, keys[path]),
            ),
            runner,
        )
        for path in files
    ]
    validations = blame_collisions(validations, table.key, already_loaded)

    report = IngestionReport(table, day, validations, rows_loaded=0, quarantined={})
    if report.passed:
        rows = warehouse_rows(table, day, validations, loaded_at=datetime.now(UTC).replace(tzinfo=None))
        report.rows_loaded = warehouse.replace_raw_rows(
            table, rows, partition_date=date.fromisoformat(day) if table.partitioned else None
        )
    else:
        for validation in report.validations:
            if not validation.passed:
                report.quarantined[validation.path.name] = landing.quarantine(
                    validation.path,
                    table.name,
                    day,
                    validation.reason(),
                    [o.__dict__ for o in validation.failures],
                )
    return report


def warehouse_rows(
    table: RawTable, day: str, validations: list[FileValidation], loaded_at: datetime
) -> pd.DataFrame:
    """The validated files as one frame with contract types and lineage columns."""
    import pandas as pd

    frames = []
    for validation in validations:
        frame = validation.frame[list(table.columns)].copy()
        frame["_source_file"] = validation.path.name
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)
    for column, kind in table.columns.items():
        if kind == "float":
            rows[column] = rows[column].astype("float64")
        elif kind == "bool":
            rows[column] = rows[column].astype(bool)
        elif kind == "string":
            rows[column] = rows[column].astype(pd.StringDtype(TEXT_STORAGE))
        elif kind == "timestamp":  # (to_datetime only for text: on a datetime column it walks the values)
            values = rows[column]
            rows[column] = (
                values if pd.api.types.is_datetime64_dtype(values.dtype) else pd.to_datetime(values)
            ).astype("datetime64[us]")
        elif kind == "date":
            rows[column] = pd.to_datetime(rows[column]).dt.date
    rows["_partition_date"] = date.fromisoformat(day)
    rows["_loaded_at"] = loaded_at
    return rows


def frame_keys(frame: pd.DataFrame | None, key: str) -> pa.Array:
    """A file's keys as text, nulls left out: an Arrow array (no Python string per key)."""
    import pyarrow as pa

    if frame is None or key not in frame:
        return pa.array([], pa.large_string())
    return text_array(frame[key].dropna())


def distinct_keys(keys: Iterable[pa.Array]) -> pa.Array:
    """The keys of every file of a partition, each once: what the warehouse lookups ask about."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.unique(pa.chunked_array(list(keys), pa.large_string()))


def _about_keys(found: dict[str, str], keys: pa.Array) -> dict[str, str]:
    """The entries of `found` (usually none) whose key is among `keys`."""
    if not found:
        return {}
    present = set(keys.to_pylist())
    return {key: value for key, value in found.items() if key in present}


@contextmanager
def lookup_connection(warehouse: Warehouse) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """One read-only DuckDB connection for a partition's lookups (opening the file costs more than a
    small query); None on other warehouses, or before the warehouse file exists."""
    if not isinstance(warehouse, DuckDBWarehouse) or not Path(warehouse.path).exists():
        yield None
        return
    with warehouse.connect(read_only=True) as con:
        yield con


def _raw_table_exists(warehouse: Warehouse, table: RawTable, con) -> bool:
    if con is None:
        return warehouse.table_exists("raw", table.name)
    [(found,)] = con.execute(
        "select count(*) from information_schema.tables where table_schema = 'raw' and table_name = ?",
        [table.name],
    ).fetchall()
    return bool(found)


@contextmanager
def _registered_keys(con: duckdb.DuckDBPyConnection, keys: pa.Array) -> Iterator[str]:
    """`keys` as the view `incoming_keys` of `con` while the block runs; its name."""
    import pyarrow as pa

    con.register("incoming_keys", pa.table({"k": keys}))
    try:
        yield "incoming_keys"
    finally:
        con.unregister("incoming_keys")


def _in_lists(keys: pa.Array):
    for start in range(0, len(keys), LOOKUP_CHUNK):
        yield sql_literals(keys[start : start + LOOKUP_CHUNK].to_pylist())


def loaded_on_other_days(
    warehouse: Warehouse, table: RawTable, day: str, keys: pa.Array, con=None
) -> dict[str, str]:
    """{key: day} for the keys already loaded in another partition of `table`: a semi-join of the file's
    keys with the key column (DuckDB: the keys as a registered arrow table; else chunks of IN lists). Only the
    collisions come back. `con`: the partition's `lookup_connection`."""
    if not len(keys) or not _raw_table_exists(warehouse, table, con):
        return {}
    if con is not None:
        with _registered_keys(con, keys) as incoming:
            collisions = con.execute(
                f"select t.{table.key} as k, cast(min(t._partition_date) as varchar) as d "
                f"from raw.{table.name} as t semi join {incoming} as i on t.{table.key} = i.k "
                "where t._partition_date <> ? group by 1",
                [date.fromisoformat(day)],
            ).fetchall()
        return {str(k): str(d) for k, d in collisions}
    found: dict[str, str] = {}
    for values in _in_lists(keys):
        rows = warehouse.read_sql(
            f"select {table.key} as k, cast(min(_partition_date) as varchar) as d from raw.{table.name} "
            f"where _partition_date <> date '{date.fromisoformat(day)}' and {table.key} in ({values}) "
            "group by 1"
        )
        found.update(zip(rows["k"].astype(str), rows["d"].astype(str), strict=True))
    return found


def unloaded_keys(warehouse: Warehouse, table: RawTable, keys: pa.Array, con=None) -> frozenset[str]:
    """Which of `keys` no partition of `table` holds: an anti-join, so only those (usually none) come
    back, not every key found."""
    if not len(keys):
        return frozenset()
    if not _raw_table_exists(warehouse, table, con):
        return frozenset(keys.to_pylist())
    if con is not None:
        with _registered_keys(con, keys) as incoming:
            unloaded = con.execute(
                f"select i.k from {incoming} as i anti join raw.{table.name} as t on t.{table.key} = i.k"
            ).fetchall()
        return frozenset(str(k) for (k,) in unloaded)
    found: set[str] = set()
    for values in _in_lists(keys):
        rows = warehouse.read_sql(
            f"select distinct {table.key} as k from raw.{table.name} where {table.key} in ({values})"
        )
        found.update(rows["k"].astype(str))
    return frozenset(keys.to_pylist()) - found


def loaded_files(warehouse: Warehouse, table: RawTable, day: str, con=None) -> set[str]:
    """The landing files the warehouse holds for this partition (or snapshot)."""
    if not _raw_table_exists(warehouse, table, con):
        return set()
    where = f" where _partition_date = date '{date.fromisoformat(day)}'" if table.partitioned else ""
    sql = f"select distinct _source_file as f from raw.{table.name}{where}"
    if con is not None:
        return {str(f) for (f,) in con.execute(sql).fetchall()}
    rows = warehouse.read_sql(sql)
    return set(rows["f"].astype(str))
