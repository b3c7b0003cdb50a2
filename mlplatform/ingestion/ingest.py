"""Ingest one partition: validate every landed file, quarantine the bad ones, load the rest atomically.

A partition loads only when all its files pass; otherwise the warehouse keeps what it had, the failing
files move to quarantine with their reason, and the good files stay in the landing zone for the re-run.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd

from mlplatform.ingestion.validation import (
    ExpectationOutcome,
    FileValidation,
    PartitionContext,
    SuiteRunner,
    checks_for,
    validate_file,
)
from mlplatform.resources.landing import LandingZone
from mlplatform.resources.warehouse import Warehouse
from mlplatform.schemas import RawTable


class NothingLandedError(RuntimeError):
    """Asked to ingest a partition for which no file has landed."""


@dataclass(frozen=True)
class CheckSummary:
    name: str
    passed: bool
    files_evaluated: list[str]
    failures: list[tuple[str, ExpectationOutcome]]  # (file name, what failed)


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
            summaries.append(CheckSummary(name, not failures, [v.path.name for v in evaluated], failures))
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
    validations: list[FileValidation] = []
    earlier_keys: set[str] = set()
    for path in files:
        context = PartitionContext(
            day=date.fromisoformat(day) if table.partition_timestamp else None,
            known_customers=known_customers,
            known_merchants=known_merchants,
            earlier_keys=frozenset(earlier_keys),
        )
        validation = validate_file(path, table, context, runner)
        validations.append(validation)
        if validation.frame is not None and table.key in validation.frame:
            earlier_keys.update(validation.frame[table.key].dropna().astype(str))

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
