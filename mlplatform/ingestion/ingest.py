"""Ingest one partition: validate every landed file, quarantine the bad ones, load the rest atomically.

A partition loads only when all its files pass; otherwise the warehouse keeps what it had, the failing
files move to quarantine with their reason, and the good files stay in the landing zone for the re-run.
Each file is judged for its own faults: a key it shares with a neighbour is blamed on one file only (see
`blame_collisions`), a key already loaded on another day is the new file's fault, and a label for a
transaction never loaded is quarantined (re-land it once its transaction is loaded).
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd

from mlplatform.ingestion.validation import (
    REFERENCES,
    UNIQUE_ACROSS_DAYS,
    ExpectationOutcome,
    FileValidation,
    PartitionContext,
    SuiteRunner,
    blame_collisions,
    checks_for,
    validate_content,
    validate_schema,
)
from mlplatform.resources.landing import LandingZone
from mlplatform.resources.warehouse import DuckDBWarehouse, Warehouse, sql_literals
from mlplatform.schemas import RAW_TABLES, RawTable

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
    known_customers: frozenset[str] | None = None,
    known_merchants: frozenset[str] | None = None,
) -> IngestionReport:
    files = landing.files(table.name, day)
    if not files:
        raise NothingLandedError(
            f"no file has landed for {table.name} on {day} "
            f"(looked in {landing.partition_dir(table.name, day)}); the warehouse is unchanged"
        )
    validations = [validate_schema(path, table, runner) for path in files]
    keys = {v.path: file_keys(v, table.key) for v in validations if v.schema_sound}
    every_key = sorted(set().union(*keys.values())) if keys else []
    elsewhere = (
        loaded_on_other_days(warehouse, table, day, every_key) if table.name in UNIQUE_ACROSS_DAYS else {}
    )
    known_transactions = None
    if table.name in REFERENCES:
        referenced = REFERENCES[table.name][1]
        known_transactions = existing_keys(warehouse, RAW_TABLES[referenced], every_key)
    validations = [
        validate_content(
            v,
            table,
            PartitionContext(
                day=date.fromisoformat(day) if table.partition_timestamp else None,
                known_customers=known_customers,
                known_merchants=known_merchants,
                known_transactions=known_transactions,
                loaded_on_other_days={k: elsewhere[k] for k in keys.get(v.path, ()) if k in elsewhere},
            ),
            runner,
        )
        for v in validations
    ]
    validations = blame_collisions(validations, table.key, loaded_files(warehouse, table, day))

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
            rows[column] = rows[column].astype(str)
        elif kind == "timestamp":
            rows[column] = pd.to_datetime(rows[column]).astype("datetime64[us]")
        elif kind == "date":
            rows[column] = pd.to_datetime(rows[column]).dt.date
    rows["_partition_date"] = date.fromisoformat(day)
    rows["_loaded_at"] = loaded_at
    return rows


def file_keys(validation: FileValidation, key: str) -> set[str]:
    if validation.frame is None or key not in validation.frame:
        return set()
    return set(validation.frame[key].dropna().astype(str))


def _in_lists(keys: list[str]):
    for start in range(0, len(keys), LOOKUP_CHUNK):
        chunk = keys[start : start + LOOKUP_CHUNK]
        yield sql_literals(chunk)


def loaded_on_other_days(warehouse: Warehouse, table: RawTable, day: str, keys: list[str]) -> dict[str, str]:
    """{key: day} for the keys already loaded in another partition of `table`: a semi-join of the file's
    keys with the key column (DuckDB: the keys as a registered frame; else chunks of IN lists). Only the
    collisions come back."""
    if not keys or not warehouse.table_exists("raw", table.name):
        return {}
    if isinstance(warehouse, DuckDBWarehouse):
        with warehouse.connect(read_only=True) as con:
            con.register("incoming_keys", pd.DataFrame({"k": keys}))
            rows = con.execute(
                f"select t.{table.key} as k, cast(min(t._partition_date) as varchar) as d "
                f"from raw.{table.name} as t semi join incoming_keys as i on t.{table.key} = i.k "
                "where t._partition_date <> ? group by 1",
                [date.fromisoformat(day)],
            ).df()
        return dict(zip(rows["k"].astype(str), rows["d"].astype(str), strict=True))
    found: dict[str, str] = {}
    for values in _in_lists(keys):
        rows = warehouse.read_sql(
            f"select {table.key} as k, cast(min(_partition_date) as varchar) as d from raw.{table.name} "
            f"where _partition_date <> date '{date.fromisoformat(day)}' and {table.key} in ({values}) "
            "group by 1"
        )
        found.update(zip(rows["k"].astype(str), rows["d"].astype(str), strict=True))
    return found


def existing_keys(warehouse: Warehouse, table: RawTable, keys: list[str]) -> frozenset[str]:
    """Which of `keys` are loaded in `table` (any partition)."""
    if not keys or not warehouse.table_exists("raw", table.name):
        return frozenset()
    if isinstance(warehouse, DuckDBWarehouse):
        with warehouse.connect(read_only=True) as con:
            con.register("incoming_keys", pd.DataFrame({"k": keys}))
            rows = con.execute(
                f"select distinct t.{table.key} as k from raw.{table.name} as t "
                f"semi join incoming_keys as i on t.{table.key} = i.k"
            ).df()
        return frozenset(rows["k"].astype(str))
    found: set[str] = set()
    for values in _in_lists(keys):
        rows = warehouse.read_sql(
            f"select distinct {table.key} as k from raw.{table.name} where {table.key} in ({values})"
        )
        found.update(rows["k"].astype(str))
    return frozenset(found)


def loaded_files(warehouse: Warehouse, table: RawTable, day: str) -> set[str]:
    """The landing files the warehouse holds for this partition (or snapshot)."""
    if not warehouse.table_exists("raw", table.name):
        return set()
    where = f" where _partition_date = date '{date.fromisoformat(day)}'" if table.partitioned else ""
    rows = warehouse.read_sql(f"select distinct _source_file as f from raw.{table.name}{where}")
    return set(rows["f"].astype(str))
