"""Unit tests of reading and validating single landing files (real Great Expectations, no Dagster)."""

import threading
from datetime import date

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlplatform.ingestion.validation import (
    CONTENT_CHECKS,
    CROSS_DAY_RULE,
    CROSS_FILE_RULE,
    TEXT_STORAGE,
    PartitionContext,
    SuiteRunner,
    UnreadableFileError,
    blame_collisions,
    checks_for,
    read_landing_file,
    validate_file,
    validating,
)
from mlplatform.schemas import CUSTOMERS, LABELS, TRANSACTIONS

DAY = date(2026, 3, 2)
CONTEXT = PartitionContext(
    day=DAY,
    known_customers=pa.array(["C1", "C2"], pa.large_string()),
    known_merchants=pa.array(["M1"], pa.large_string()),
)


@pytest.fixture(scope="module")
def runner():
    return SuiteRunner()


def transactions(**overrides) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "transaction_id": ["T1", "T2", "T3"],
            "customer_id": ["C1", "C2", "C1"],
            "merchant_id": ["M1", "M1", "M1"],
            "amount": [12.5, 80.0, 4100.0],
            "currency": ["EUR", "EUR", "GBP"],
            "channel": ["pos", "online", "atm"],
            "country": ["DE", "DE", "GB"],
            "event_ts": pd.to_datetime(
                ["2026-03-02T00:00:00", "2026-03-02T13:30:00", "2026-03-02T23:59:59"], utc=True
            ),
        }
    )
    return frame.assign(**overrides)


def write(tmp_path, frame, name="part.parquet"):
    path = tmp_path / name
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def failed_checks(validation) -> set[str]:
    return {o.check for o in validation.failures}


def test_valid_file_passes_every_check(tmp_path, runner):
    validation = validate_file(write(tmp_path, transactions()), TRANSACTIONS, CONTEXT, runner)
    assert validation.passed, validation.reason()
    assert {o.check for o in validation.outcomes} == set(checks_for(TRANSACTIONS))


@pytest.mark.parametrize("column", ["customer_id", "currency"])
def test_text_of_another_type_fails_the_schema_and_pandas_keeps_its_default(tmp_path, runner, column):
    """Arrow-stored text passes the type list (`validating`); numbers where text is due do not, and the
    storage GX validated with is not left as pandas' default."""
    default = pd.get_option("mode.string_storage")
    validation = validate_file(
        write(tmp_path, transactions(**{column: [1, 2, 3]})), TRANSACTIONS, CONTEXT, runner
    )
    assert [(o.check, o.column) for o in validation.failures] == [("schema", column)]
    assert pd.get_option("mode.string_storage") == default != TEXT_STORAGE


def test_overlapping_validations_in_two_threads_keep_the_text_storage_until_the_last_ends():
    """pandas' options are process-wide: the first validation to end must not restore the default under
    one still running, and the last must restore it."""
    default = pd.get_option("mode.string_storage")
    first_in, first_out = threading.Event(), threading.Event()
    seen = {}

    def first():
        with validating():
            first_in.set()
            assert first_out.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    assert first_in.wait(10)
    with validating():
        first_out.set()
        thread.join(10)
        seen["after the first ended"] = pd.get_option("mode.string_storage")
    assert seen == {"after the first ended": TEXT_STORAGE}
    assert pd.get_option("mode.string_storage") == default


def test_timestamps_are_read_as_naive_utc(tmp_path):
    frame = transactions(event_ts=pd.to_datetime(["2026-03-02T01:00:00+01:00"] * 3, utc=True))
    read = read_landing_file(write(tmp_path, frame), TRANSACTIONS)
    assert read["event_ts"].dt.tz is None
    assert read["event_ts"].iloc[0] == pd.Timestamp("2026-03-02T00:00:00")


def test_partition_boundaries_are_half_open(tmp_path, runner):
    late = transactions(event_ts=pd.to_datetime(["2026-03-03T00:00:00"] * 3, utc=True))
    validation = validate_file(write(tmp_path, late), TRANSACTIONS, CONTEXT, runner)
    assert failed_checks(validation) == {"inside_partition"}


@pytest.mark.parametrize(
    ("change", "check"),
    [
        ({"transaction_id": ["T1", "T1", "T3"]}, "unique_key"),
        ({"customer_id": ["C1", None, "C1"]}, "not_null"),
        ({"amount": [0.0, 1.0, 2.0]}, "value_ranges"),
        ({"channel": ["pos", "telepathy", "pos"]}, "value_ranges"),
        ({"merchant_id": ["M1", "M404", "M1"]}, "known_entities"),
    ],
)
def test_each_content_problem_fails_its_own_check(tmp_path, runner, change, check):
    validation = validate_file(write(tmp_path, transactions(**change)), TRANSACTIONS, CONTEXT, runner)
    assert failed_checks(validation) == {check}
    assert f"[{check}]" in validation.reason()


def test_keys_loaded_on_another_day_are_duplicates_named_with_their_day(tmp_path, runner):
    context = PartitionContext(day=DAY, loaded_on_other_days={"T2": "2026-02-27"})
    validation = validate_file(write(tmp_path, transactions()), TRANSACTIONS, context, runner)
    [failure] = validation.failures
    assert (failure.check, failure.expectation) == ("unique_key", CROSS_DAY_RULE)
    assert failure.sample == ["T2 (loaded on 2026-02-27)"]
    assert "T2 (loaded on 2026-02-27)" in validation.reason()


def test_a_key_shared_by_two_files_is_the_fault_of_one_file_only(tmp_path, runner):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    good = validate_file(
        write(tmp_path / "a", transactions(), "z-good.parquet"), TRANSACTIONS, CONTEXT, runner
    )
    other = transactions(transaction_id=["T9", "T2", "T8"])
    bad = validate_file(write(tmp_path / "b", other, "a-bad.parquet"), TRANSACTIONS, CONTEXT, runner)
    # neither loaded yet: the earlier name keeps its keys
    blamed = blame_collisions([bad, good], "transaction_id", loaded_files=set())
    assert [v.passed for v in blamed] == [True, False]
    # the good file is already loaded: the newcomer is at fault, whatever its name
    blamed = blame_collisions([bad, good], "transaction_id", loaded_files={"z-good.parquet"})
    assert [v.passed for v in blamed] == [False, True]
    [failure] = blamed[0].failures
    assert failure.expectation == CROSS_FILE_RULE and failure.sample == ["T2 (in z-good.parquet)"]
    # a file failing on its own blames nobody: its keys will never be loaded
    broken = validate_file(
        write(tmp_path / "b", other.assign(amount=-1.0), "a-broken.parquet"), TRANSACTIONS, CONTEXT, runner
    )
    blamed = blame_collisions([broken, good], "transaction_id", loaded_files=set())
    assert failed_checks(blamed[0]) == {"value_ranges"} and blamed[1].passed


def test_labels_for_transactions_never_loaded_are_named(tmp_path, runner):
    labels = pd.DataFrame(
        {
            "transaction_id": ["T1", "T404"],
            "is_fraud": [True, False],
            "reported_at": pd.to_datetime(["2026-03-02T08:00:00", "2026-03-02T09:00:00"], utc=True),
        }
    )
    context = PartitionContext(day=DAY, unloaded_transactions=pa.array(["T404"], pa.large_string()))
    validation = validate_file(write(tmp_path, labels), LABELS, context, runner)
    [failure] = validation.failures
    assert (failure.check, failure.column, failure.sample) == (
        "known_transactions",
        "transaction_id",
        ["T404"],
    )


def test_schema_failure_stops_content_validation(tmp_path, runner):
    validation = validate_file(
        write(tmp_path, transactions().drop(columns="amount")), TRANSACTIONS, CONTEXT, runner
    )
    assert failed_checks(validation) == {"schema"}
    assert {o.check for o in validation.outcomes} == {"schema"}
    assert not any(validation.judged(check) for check in CONTENT_CHECKS)
    assert "amount" in validation.reason()


def test_unreadable_file_is_a_schema_failure(tmp_path, runner):
    path = tmp_path / "garbage.parquet"
    path.write_bytes(b"definitely not parquet")
    with pytest.raises(UnreadableFileError):
        read_landing_file(path, TRANSACTIONS)
    validation = validate_file(path, TRANSACTIONS, CONTEXT, runner)
    assert failed_checks(validation) == {"schema"}
    assert validation.frame is None


@pytest.mark.parametrize("column", ["transaction_id", "country"])
def test_text_that_is_not_utf8_is_an_unreadable_file(tmp_path, runner, column):
    """Bytes a lax writer left in a parquet text column (Latin-1 'é'): the file is unreadable, as when
    Python decoded the text, never handed to GX, the lookups or the load."""
    table = pa.Table.from_pandas(transactions(), preserve_index=False)
    latin1 = pa.array([b"A", "Réunion".encode("latin-1"), b"B"], pa.binary()).view(pa.string())
    path = tmp_path / "latin1.parquet"
    pq.write_table(table.set_column(table.schema.get_field_index(column), column, latin1), path)
    validation = validate_file(path, TRANSACTIONS, CONTEXT, runner)
    assert [(o.check, o.expectation) for o in validation.failures] == [("schema", "file_is_readable")]
    assert f"column `{column}`: " in validation.reason() and "Invalid UTF8" in validation.reason()


@pytest.mark.parametrize("name", ["part.parquet", "part.csv", "dictionary.parquet"])
def test_text_holding_a_nul_character_is_an_unreadable_file(tmp_path, runner, name):
    """Postgres text cannot store U+0000: its load failed after validation, on every retry; from a CSV file,
    pandas kept the text before it, in silence. A dictionary-encoded column is read back as one."""
    frame = transactions()
    frame.loc[1, "customer_id"] = "C\x00001"
    if name.startswith("dictionary"):
        frame["customer_id"] = frame["customer_id"].astype("category")
    validation = validate_file(write(tmp_path, frame, name), TRANSACTIONS, CONTEXT, runner)
    assert [(o.check, o.expectation) for o in validation.failures] == [("schema", "file_is_readable")]
    where = "line 3" if name.endswith(".csv") else "column `customer_id`"  # pandas' CSV parser cut it there
    assert f"{where}: text holds a NUL character" in validation.reason()


def test_csv_is_accepted_with_types_restored(tmp_path, runner):
    frame = transactions(event_ts=transactions()["event_ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    validation = validate_file(write(tmp_path, frame, "part.csv"), TRANSACTIONS, CONTEXT, runner)
    assert validation.passed, validation.reason()
    assert validation.frame["amount"].dtype == "float64"


def test_csv_with_unparseable_numbers_is_a_wrong_type_not_nulls(tmp_path, runner):
    frame = transactions(amount=["12.5", "lots", "3"])
    validation = validate_file(write(tmp_path, frame, "part.csv"), TRANSACTIONS, CONTEXT, runner)
    assert failed_checks(validation) == {"schema"}
    assert any(o.column == "amount" for o in validation.failures)


def test_labels_and_snapshots_get_the_checks_that_fit_them():
    # labels have no amount and no categorical domain: no value_ranges check that would judge nothing
    labels_checks = ["schema", "not_null", "unique_key", "inside_partition", "known_transactions"]
    assert checks_for(LABELS) == labels_checks
    assert checks_for(CUSTOMERS) == ["schema", "not_null", "unique_key", "value_ranges"]


def test_unknown_entities_are_reported_by_their_ids(tmp_path, runner):
    frame = transactions(customer_id=["C1", "C404", "C405"])
    validation = validate_file(write(tmp_path, frame), TRANSACTIONS, CONTEXT, runner)
    [failure] = validation.failures
    assert (failure.check, failure.column, failure.unexpected_count) == ("known_entities", "customer_id", 2)
    assert failure.sample == ["C404", "C405"]
    assert "C404" in validation.reason()


@pytest.mark.parametrize("name", ["part.parquet", "part.csv"])
def test_a_missing_key_is_a_null_not_an_unknown_entity(tmp_path, runner, name):
    frame = transactions(customer_id=["C1", None, "C404"])
    validation = validate_file(write(tmp_path, frame, name), TRANSACTIONS, CONTEXT, runner)
    failures = {(o.check, o.column): o.unexpected_count for o in validation.failures}
    assert failures == {("not_null", "customer_id"): 1, ("known_entities", "customer_id"): 1}


def test_the_frame_read_for_validation_holds_the_same_values(tmp_path):
    """Read for GX: pandas' string dtype stored in Arrow and nanosecond timestamps, the same values as the
    plain read."""
    path = write(tmp_path, transactions(customer_id=["C1", None, "C2"]))
    plain = read_landing_file(path, TRANSACTIONS)
    for_gx = read_landing_file(path, TRANSACTIONS, for_validation=True)
    assert for_gx["customer_id"].dtype == pd.StringDtype("pyarrow")
    assert for_gx["event_ts"].dtype == "datetime64[ns]"
    pd.testing.assert_frame_equal(
        for_gx.astype(object).where(for_gx.notna(), None),
        plain.astype(object).where(plain.notna(), None),
        check_dtype=False,
    )
