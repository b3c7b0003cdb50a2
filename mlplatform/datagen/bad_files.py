"""Deliberately broken landing files, one defect each, to show validation and quarantine at work.

A bad file is built from plausible rows (known card holders and merchants, transaction ids that collide
with nothing, labels for transactions still waiting for theirs) so that its one defect is the only
reason to reject it.
"""

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlplatform import schemas
from mlplatform.datagen.generator import (
    BAD_FILE_SEQUENCE_START,
    COUNTRY_CURRENCY,
    MAX_LABEL_DELAY_DAYS,
    NEW_CATEGORY,
    SECONDS_PER_DAY,
    UNITS_PER_EUR,
    arrow_schema,
    find_landed_file,
    numbered_ids,
    partition_dir,
    transaction_ids,
)
from mlplatform.schemas import BAD_FILE_KINDS

SUPPORTED_KINDS = {
    "transactions": BAD_FILE_KINDS,
    "labels": tuple(k for k in BAD_FILE_KINDS if k not in ("out_of_range_amount", "unknown_customer")),
}
DAMAGED_COLUMN = {"transactions": "amount", "labels": "is_fraud"}  # dropped or mistyped
BAD_FILE_ROWS = 40
DAMAGED_ROWS = 8  # rows carrying the defect, for defects that concern single values
IDS_PER_KIND = 10_000  # each kind draws transaction ids from its own block, so bad files never collide


@dataclass(frozen=True)
class Sample:
    """Plausible rows of one table in the contract's form, and what they were drawn against."""

    rows: pd.DataFrame
    table: schemas.RawTable
    known_customers: frozenset[str]


def write_bad_file(
    landing_dir: Path, kind: str, day: date, *, table: str = "transactions", seed: int = 0
) -> Path:
    """Write `<landing_dir>/<table>/date=<day>/bad_<kind>.parquet`, next to the day's good files."""
    if table not in SUPPORTED_KINDS:
        raise ValueError(f"bad files exist for the tables {sorted(SUPPORTED_KINDS)}, not {table!r}")
    if kind not in SUPPORTED_KINDS[table]:
        raise ValueError(
            f"bad file kind {kind!r} is not supported for {table}; choose one of {SUPPORTED_KINDS[table]}"
        )
    landing_dir = Path(landing_dir)
    kind_index = BAD_FILE_KINDS.index(kind)
    rng = np.random.default_rng([seed, day.toordinal(), kind_index])
    sample_rows = plausible_transactions if table == "transactions" else plausible_labels
    sample = sample_rows(landing_dir, day, kind_index, rng)
    path = partition_dir(landing_dir, table, day) / f"bad_{kind}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "unreadable_file":
        path.write_bytes(truncated_parquet(sample))
    else:
        pq.write_table(DEFECTS[kind](sample, rng), path)
    return path


# --- plausible rows -------------------------------------------------------------------------------------


def plausible_transactions(landing_dir: Path, day: date, kind_index: int, rng: np.random.Generator) -> Sample:
    """Everyday purchases by known customers at known merchants, with ids from a block of their own."""
    customers = latest_snapshot(landing_dir, "customers")
    merchants = latest_snapshot(landing_dir, "merchants")
    merchants = merchants[merchants["category"] != NEW_CATEGORY]  # it only trades under drift
    customer = customers.iloc[rng.integers(0, len(customers), BAD_FILE_ROWS)]
    merchant = merchants.iloc[rng.integers(0, len(merchants), BAD_FILE_ROWS)]
    currency = customer["home_country"].map(COUNTRY_CURRENCY).to_numpy()
    amount_eur = rng.lognormal(np.log(40.0), 0.8, BAD_FILE_ROWS)
    first_sequence = BAD_FILE_SEQUENCE_START + kind_index * IDS_PER_KIND + 1
    rows = pd.DataFrame(
        {
            "transaction_id": transaction_ids(day, BAD_FILE_ROWS, first_sequence),
            "customer_id": customer["customer_id"].to_numpy(),
            "merchant_id": merchant["merchant_id"].to_numpy(),
            "amount": np.round(amount_eur * pd.Series(currency).map(UNITS_PER_EUR).to_numpy(), 2),
            "currency": currency,
            "channel": rng.choice(["pos", "contactless", "online"], BAD_FILE_ROWS),
            "country": merchant["country"].to_numpy(),
            "event_ts": times_during(day, BAD_FILE_ROWS, rng),
        }
    )
    return Sample(rows, schemas.TRANSACTIONS, frozenset(customers["customer_id"]))


def plausible_labels(landing_dir: Path, day: date, kind_index: int, rng: np.random.Generator) -> Sample:
    """Labels for landed transactions that have none yet, reported during `day`, a day or more later."""
    # each kind labels its own share of the pending transactions, so bad files never share a key
    pending = pending_transaction_ids(landing_dir, day)[kind_index :: len(BAD_FILE_KINDS)]
    if len(pending) == 0:
        raise ValueError(
            f"no landed transaction before {day} is waiting for its label, so a bad labels file cannot be "
            f"built from plausible rows; generate data up to {day} first"
        )
    transaction_id = rng.choice(pending, min(BAD_FILE_ROWS, len(pending)), replace=False)
    rows = pd.DataFrame(
        {
            "transaction_id": transaction_id,
            "is_fraud": rng.random(len(transaction_id)) < 0.05,
            "reported_at": times_during(day, len(transaction_id), rng),
        }
    )
    return Sample(rows, schemas.LABELS, frozenset())


def pending_transaction_ids(landing_dir: Path, day: date) -> np.ndarray:
    """Sorted ids of landed transactions that no landed labels file mentions yet.

    Only transactions from at least a day before `day` qualify, so any label time during `day` (even
    one moved back a day) still comes after the transaction.
    """
    days = [day - timedelta(days=d) for d in range(MAX_LABEL_DELAY_DAYS, 1, -1)]
    landed = [read_column(path, "transaction_id") for path in landed_files(landing_dir, "transactions", days)]
    label_files = sorted((landing_dir / "labels").glob("date=*/*.*"))
    labelled = [read_column(p, "transaction_id") for p in label_files if p.suffix in (".parquet", ".csv")]
    return np.setdiff1d(concatenated(landed), concatenated(labelled))


def landed_files(landing_dir: Path, table: str, days: list[date]) -> list[Path]:
    return [path for day in days if (path := find_landed_file(landing_dir, table, day)) is not None]


def latest_snapshot(landing_dir: Path, table: str) -> pd.DataFrame:
    """The newest landed snapshot of a table, as the loader would pick it."""
    days = sorted((landing_dir / table).glob("date=*"), reverse=True)
    for folder in days:
        path = find_landed_file(landing_dir, table, date.fromisoformat(folder.name.removeprefix("date=")))
        if path is not None:
            return pd.read_csv(path, dtype=str) if path.suffix == ".csv" else pd.read_parquet(path)
    raise FileNotFoundError(f"no {table} snapshot under {landing_dir / table}; generate data first")


def read_column(path: Path, column: str) -> np.ndarray:
    """One column of a landing file; the bad files in the landing zone may be unreadable and are skipped."""
    try:
        if path.suffix == ".csv":
            return pd.read_csv(path, usecols=[column], dtype=str)[column].dropna().to_numpy(dtype=str)
        return pq.read_table(path, columns=[column]).column(column).drop_null().to_numpy(zero_copy_only=False)
    except (pa.ArrowException, ValueError, KeyError):
        return np.array([], dtype=str)


def concatenated(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays).astype(str) if arrays else np.array([], dtype=str)


def times_during(day: date, n: int, rng: np.random.Generator) -> pd.Series:
    seconds = np.sort(rng.integers(0, SECONDS_PER_DAY, n))
    return pd.Series(pd.Timestamp(day, tz="UTC") + pd.to_timedelta(seconds, unit="s"))


# --- defects --------------------------------------------------------------------------------------------


def damaged_rows(sample: Sample, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(len(sample.rows), min(DAMAGED_ROWS, len(sample.rows)), replace=False))


def as_contract_table(
    rows: pd.DataFrame, table: schemas.RawTable, schema: pa.Schema | None = None
) -> pa.Table:
    return pa.Table.from_pandas(rows, schema=schema or arrow_schema(table), preserve_index=False)


def missing_column(sample: Sample, rng: np.random.Generator) -> pa.Table:
    column = DAMAGED_COLUMN[sample.table.name]
    schema = arrow_schema(sample.table)
    schema = schema.remove(schema.get_field_index(column))
    return as_contract_table(sample.rows.drop(columns=[column]), sample.table, schema)


def wrong_type(sample: Sample, rng: np.random.Generator) -> pa.Table:
    """Amounts as formatted text ("12,50 EUR"), or flags as "yes"/"no": readable, but not the type."""
    column = DAMAGED_COLUMN[sample.table.name]
    rows = sample.rows.copy()
    if column == "amount":
        rows[column] = rows["amount"].map("{:.2f}".format).str.replace(".", ",") + " " + rows["currency"]
    else:
        rows[column] = rows[column].map({True: "yes", False: "no"})
    schema = arrow_schema(sample.table)
    schema = schema.set(schema.get_field_index(column), pa.field(column, pa.string()))
    return as_contract_table(rows, sample.table, schema)


def null_key(sample: Sample, rng: np.random.Generator) -> pa.Table:
    rows = sample.rows.copy()
    rows.loc[damaged_rows(sample, rng), sample.table.key] = None
    return as_contract_table(rows, sample.table)


def duplicate_id(sample: Sample, rng: np.random.Generator) -> pa.Table:
    """Some rows repeat the key of another row, with different content."""
    rows = sample.rows.copy()
    pairs = rng.choice(len(rows), 2 * (min(DAMAGED_ROWS, len(rows) // 2)), replace=False).reshape(2, -1)
    rows.loc[pairs[1], sample.table.key] = rows.loc[pairs[0], sample.table.key].to_numpy()
    return as_contract_table(rows, sample.table)


def out_of_range_amount(sample: Sample, rng: np.random.Generator) -> pa.Table:
    """Refunds booked as negative purchases, and amounts no card allows."""
    rows = sample.rows.copy()
    damaged = damaged_rows(sample, rng)
    negative, too_large = damaged[::2], damaged[1::2]
    rows.loc[negative, "amount"] = -rows.loc[negative, "amount"]
    rows.loc[too_large, "amount"] = np.round(schemas.MAX_AMOUNT * rng.uniform(1.5, 20.0, len(too_large)), 2)
    return as_contract_table(rows, sample.table)


def timestamp_outside_partition(sample: Sample, rng: np.random.Generator) -> pa.Table:
    """Rows of the previous day delivered in this day's file."""
    rows = sample.rows.copy()
    column = sample.table.partition_timestamp
    rows.loc[damaged_rows(sample, rng), column] -= pd.Timedelta(days=1)
    return as_contract_table(rows, sample.table)


def unknown_customer(sample: Sample, rng: np.random.Generator) -> pa.Table:
    """Card holders the customer snapshot does not know yet (ids above every known one)."""
    rows = sample.rows.copy()
    damaged = damaged_rows(sample, rng)
    numbers = (c.removeprefix("C") for c in sample.known_customers)
    highest = max((int(n) for n in numbers if n.isdigit()), default=0)
    rows.loc[damaged, "customer_id"] = numbered_ids("C", len(damaged), 6, first=highest + 1)
    return as_contract_table(rows, sample.table)


def empty_file(sample: Sample, rng: np.random.Generator) -> pa.Table:
    return as_contract_table(sample.rows.iloc[:0], sample.table)


def truncated_parquet(sample: Sample) -> bytes:
    """The first half of a valid file: what an interrupted upload leaves behind."""
    buffer = io.BytesIO()
    pq.write_table(as_contract_table(sample.rows, sample.table), buffer)
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


DEFECTS: dict[str, Callable[[Sample, np.random.Generator], pa.Table]] = {
    "missing_column": missing_column,
    "wrong_type": wrong_type,
    "null_key": null_key,
    "duplicate_id": duplicate_id,
    "out_of_range_amount": out_of_range_amount,
    "timestamp_outside_partition": timestamp_outside_partition,
    "unknown_customer": unknown_customer,
    "empty_file": empty_file,
}
