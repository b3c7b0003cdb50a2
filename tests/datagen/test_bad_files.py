"""Each bad file carries exactly its one defect, and nothing else a validator could object to."""

import shutil
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlplatform import schemas
from mlplatform.datagen import BAD_FILE_KINDS, GeneratorConfig, generate, write_bad_file

START = date(2025, 1, 1)
CONFIG = GeneratorConfig(
    start_date=START, days=12, customers=200, merchants=30, transactions_per_day=300, seed=3
)
LAST_DAY = CONFIG.days_generated[-1]
LABEL_KINDS = (
    "missing_column",
    "wrong_type",
    "null_key",
    "duplicate_id",
    "timestamp_outside_partition",
    "empty_file",
    "unreadable_file",
)
ARROW_TYPES = {
    "string": pa.string(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    landing = tmp_path_factory.mktemp("generated") / "landing"
    generate(CONFIG, landing)
    return landing


@pytest.fixture
def landing(tmp_path, generated) -> Path:
    """A landing zone of the test's own, so bad files never meet another test's."""
    return Path(shutil.copytree(generated, tmp_path / "landing"))


def read_all(landing: Path, table: str) -> pd.DataFrame:
    files = sorted((landing / table).glob(f"date=*/{table}.parquet"))
    return pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)


def defects(path: Path, table: schemas.RawTable, landing: Path, day: date) -> set[str]:
    """Every problem a strict validator finds in a landed file, named like BAD_FILE_KINDS."""
    try:
        data = pq.read_table(path)
    except pa.ArrowException:
        return {"unreadable_file"}
    found = set()
    if data.num_rows == 0:
        found.add("empty_file")
    if set(data.column_names) - set(table.columns):
        found.add("unexpected_columns")
    if set(table.columns) - set(data.column_names):
        found.add("missing_column")
    if any(data.schema.field(c).type != ARROW_TYPES[table.columns[c]] for c in data.column_names):
        found.add("wrong_type")
    frame = data.to_pandas()
    key = frame[table.key]
    if key.isna().any():
        found.add("null_key")
    if frame.drop(columns=table.key).isna().any().any():
        found.add("null_value")
    if key.dropna().duplicated().any():
        found.add("duplicate_id")
    if key.isin(read_all(landing, table.name)[table.key]).any():
        found.add("collides_with_landed_rows")
    timestamp = frame[table.partition_timestamp]
    if (timestamp.dt.floor("D") != pd.Timestamp(day, tz="UTC")).any():
        found.add("timestamp_outside_partition")
    if table is schemas.TRANSACTIONS:
        found |= transaction_defects(frame, landing)
    else:
        found |= label_defects(frame, landing)
    return found


def transaction_defects(frame: pd.DataFrame, landing: Path) -> set[str]:
    found = set()
    customers, merchants = read_all(landing, "customers"), read_all(landing, "merchants")
    amount = frame.get("amount", pd.Series(dtype=float))
    if (
        pd.api.types.is_float_dtype(amount)
        and not amount.between(0, schemas.MAX_AMOUNT, inclusive="right").all()
    ):
        found.add("out_of_range_amount")
    if not frame["customer_id"].isin(customers["customer_id"]).all():
        found.add("unknown_customer")
    if not frame["merchant_id"].isin(merchants["merchant_id"]).all():
        found.add("unknown_merchant")
    domains = {"channel": schemas.CHANNELS, "currency": schemas.CURRENCIES, "country": schemas.COUNTRIES}
    if any(not frame[column].isin(domain).all() for column, domain in domains.items()):
        found.add("outside_domain")
    return found


def label_defects(frame: pd.DataFrame, landing: Path) -> set[str]:
    """Labels must be for landed transactions, come after them, and not repeat a landed label."""
    transactions = read_all(landing, "transactions").set_index("transaction_id")["event_ts"]
    labelled = frame.dropna(subset=["transaction_id"])
    found = set()
    if not labelled["transaction_id"].isin(transactions.index).all():
        found.add("unknown_transaction")
    elif (labelled["reported_at"] <= labelled["transaction_id"].map(transactions)).any():
        found.add("reported_before_transaction")
    return found


def test_the_kinds_are_the_documented_ones_in_order():
    assert BAD_FILE_KINDS == (
        "missing_column",
        "wrong_type",
        "null_key",
        "duplicate_id",
        "out_of_range_amount",
        "timestamp_outside_partition",
        "unknown_customer",
        "empty_file",
        "unreadable_file",
    )


@pytest.mark.parametrize("kind", BAD_FILE_KINDS)
def test_a_bad_transactions_file_has_exactly_its_defect(landing, kind):
    path = write_bad_file(landing, kind, LAST_DAY)
    assert path == landing / "transactions" / f"date={LAST_DAY}" / f"bad_{kind}.parquet"
    assert defects(path, schemas.TRANSACTIONS, landing, LAST_DAY) == {kind}


@pytest.mark.parametrize("kind", LABEL_KINDS)
def test_a_bad_labels_file_has_exactly_its_defect(landing, kind):
    path = write_bad_file(landing, kind, LAST_DAY, table="labels")
    assert path == landing / "labels" / f"date={LAST_DAY}" / f"bad_{kind}.parquet"
    assert defects(path, schemas.LABELS, landing, LAST_DAY) == {kind}


def test_the_good_files_are_what_validation_accepts(landing):
    """The checker above finds nothing in the generator's own files: its findings are the defects."""
    for table in (schemas.TRANSACTIONS, schemas.LABELS):
        path = landing / table.name / f"date={LAST_DAY}" / f"{table.name}.parquet"
        assert defects(path, table, landing, LAST_DAY) == {"collides_with_landed_rows"}  # with itself


def test_missing_column_lacks_only_the_amount_and_wrong_type_only_types_it(landing):
    missing = pq.read_table(write_bad_file(landing, "missing_column", LAST_DAY))
    assert missing.column_names == [c for c in schemas.TRANSACTIONS.columns if c != "amount"]
    mistyped = pq.read_table(write_bad_file(landing, "wrong_type", LAST_DAY))
    assert mistyped.schema.field("amount").type == pa.string()
    assert pd.to_numeric(mistyped.column("amount").to_pandas(), errors="coerce").isna().all()


def test_out_of_range_amounts_are_negative_and_too_large(landing):
    amount = pd.read_parquet(write_bad_file(landing, "out_of_range_amount", LAST_DAY))["amount"]
    assert (amount < 0).any() and (amount > schemas.MAX_AMOUNT).any()
    assert amount.between(0, schemas.MAX_AMOUNT, inclusive="right").any()  # most rows stay plausible


def test_the_unreadable_file_is_not_parquet_but_the_empty_one_is(landing):
    with pytest.raises(pa.ArrowException):
        pq.read_table(write_bad_file(landing, "unreadable_file", LAST_DAY))
    empty = pq.read_table(write_bad_file(landing, "empty_file", LAST_DAY))
    assert empty.num_rows == 0 and empty.schema.names == list(schemas.TRANSACTIONS.columns)


def test_bad_files_of_one_partition_never_share_a_key(landing):
    keys = []
    for kind in ("wrong_type", "out_of_range_amount", "timestamp_outside_partition", "unknown_customer"):
        keys += pd.read_parquet(write_bad_file(landing, kind, LAST_DAY))["transaction_id"].tolist()
    assert len(keys) == len(set(keys))
    label_keys = []
    for kind in ("wrong_type", "timestamp_outside_partition"):
        label_keys += pd.read_parquet(write_bad_file(landing, kind, LAST_DAY, table="labels"))[
            "transaction_id"
        ].tolist()
    assert len(label_keys) == len(set(label_keys))


def test_the_good_files_stay_untouched(landing, generated):
    write_bad_file(landing, "duplicate_id", LAST_DAY)
    good = f"transactions/date={LAST_DAY}/transactions.parquet"
    assert (landing / good).read_bytes() == (generated / good).read_bytes()


def test_the_same_seed_gives_the_same_file_and_another_seed_another(landing):
    first = pd.read_parquet(write_bad_file(landing, "null_key", LAST_DAY, seed=1))
    again = pd.read_parquet(write_bad_file(landing, "null_key", LAST_DAY, seed=1))
    other = pd.read_parquet(write_bad_file(landing, "null_key", LAST_DAY, seed=2))
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)


def test_a_bad_file_can_land_in_a_partition_without_good_files(landing):
    day = LAST_DAY + timedelta(days=1)
    path = write_bad_file(landing, "unknown_customer", day)
    assert defects(path, schemas.TRANSACTIONS, landing, day) == {"unknown_customer"}


@pytest.mark.parametrize(
    ("kind", "table"),
    [
        ("out_of_range_amount", "labels"),
        ("unknown_customer", "labels"),
        ("null_key", "customers"),
        ("no_such_kind", "transactions"),
    ],
)
def test_unsupported_combinations_are_refused(landing, kind, table):
    with pytest.raises(ValueError, match=r"not supported|bad files exist"):
        write_bad_file(landing, kind, LAST_DAY, table=table)


def test_bad_files_need_a_generated_landing_zone(tmp_path):
    with pytest.raises(FileNotFoundError, match="snapshot"):
        write_bad_file(tmp_path, "null_key", START)
    with pytest.raises(ValueError, match="waiting for its label"):
        write_bad_file(tmp_path, "null_key", START, table="labels")


def test_bad_labels_work_on_a_csv_landing_zone(tmp_path):
    generate(replace(CONFIG, file_format="csv"), tmp_path)
    path = write_bad_file(tmp_path, "duplicate_id", LAST_DAY, table="labels")
    frame = pd.read_parquet(path)
    assert frame["transaction_id"].duplicated().sum() > 0 and frame["transaction_id"].notna().all()
