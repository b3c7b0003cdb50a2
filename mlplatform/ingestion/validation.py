"""Great Expectations suites for the landing files, grouped into the checks Dagster shows.

Each landed file is read, validated against a schema suite and, when its schema is sound, a content
suite. Every expectation carries the name of the Dagster asset check it belongs to in its `meta`, so
one GX run feeds several readable checks (schema, not_null, unique_key, ...). Nothing here knows Dagster.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplatform.ingestion.gx_costs import import_gx, one_validation
from mlplatform.schemas import (
    CHANNELS,
    COUNTRIES,
    CURRENCIES,
    MAX_AMOUNT,
    REGIONS,
    RISK_TIERS,
    SEGMENTS,
    RawTable,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

CHECK_DESCRIPTIONS = {
    "schema": "The file is readable, not empty, has exactly the contract's columns and their types.",
    "not_null": "No required value (keys, amounts, timestamps, categories) is missing.",
    "unique_key": (
        "The key is unique within the file, across the partition's other files (the file at fault is the one "
        "not already loaded, else the later one) and, for transactions, across every day already loaded."
    ),
    "value_ranges": "Amounts within (0, MAX_AMOUNT]; categorical values inside their known domains.",
    "inside_partition": "Every timestamp falls inside the file's daily partition (UTC).",
    "known_entities": "Referential integrity: every customer and merchant exists in the latest snapshots.",
    "known_transactions": "Every label is for a transaction already loaded (any day), else quarantined.",
}
# tables whose key is unique across every partition (a label, by contrast, may be corrected on a later
# day: the later `reported_at` wins in dbt, so a labels key seen on another day is a correction)
UNIQUE_ACROSS_DAYS = frozenset({"transactions"})
# partitioned tables whose key must name a row already loaded in another table: {table: (column, table)}
REFERENCES = {"labels": ("transaction_id", "transactions")}
CROSS_DAY_RULE = "id_already_loaded_on_another_day"
CROSS_FILE_RULE = "id_in_another_file_of_the_partition"
CONTENT_CHECKS = ("not_null", "unique_key", "value_ranges", "inside_partition", "known_entities")

# Parquet text is read as pandas' string dtype stored in Arrow (`read_landing_file`): no Python string per
# value, so the read, GX's null and set checks, the key lookups and the load stay vectorized
TEXT_STORAGE = "pyarrow"

# pandas dtype names (or per-value Python type names for object columns) accepted per logical type
ACCEPTED_TYPES = {
    # StringDtype: parquet text is read as pandas' string dtype (`read_landing_file`), so GX checks the
    # column's dtype once instead of the Python type of every value (an object column); see `validating`
    "string": ["str", "string", "object", "StringDtype"],
    "float": ["float64", "float32", "Float64", "int64", "int32", "Int64"],
    "bool": ["bool", "boolean"],
    "timestamp": ["datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]"],
    "date": ["date", "datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]"],
}

DOMAINS = {
    "currency": CURRENCIES,
    "channel": CHANNELS,
    "segment": SEGMENTS,
    "region": REGIONS,
    "risk_tier": RISK_TIERS,
    "home_country": COUNTRIES,
}


class UnreadableFileError(ValueError):
    """The file cannot be parsed as its format at all."""


def checks_for(table: RawTable) -> list[str]:
    """The Dagster asset checks a raw table gets."""
    checks = ["schema", "not_null", "unique_key"]
    if "amount" in table.columns or set(DOMAINS) & set(table.columns):  # a check with nothing to judge
        checks.append("value_ranges")  # would "pass" on every file: only where it has ranges to check
    if table.partition_timestamp:
        checks.append("inside_partition")
    if {"customer_id", "merchant_id"} <= set(table.columns) and table.partitioned:
        checks.append("known_entities")
    if table.name in REFERENCES:
        checks.append("known_transactions")
    return checks


def read_landing_file(path: Path, table: RawTable, *, for_validation: bool = False) -> pd.DataFrame:
    """Read a parquet or CSV landing file; timestamps become naive UTC, the warehouse's convention.

    `for_validation`: the frame Great Expectations judges (and the loader loads). Parquet text columns
    come as pandas' string dtype stored in Arrow (`TEXT_STORAGE`) and timestamps in nanoseconds, the
    dtypes GX checks vectorized (on object columns its type check tests every value's Python type; on
    microsecond timestamps its range check compares value by value): the values are the same, the loader
    gives them the warehouse's types.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = pd.StringDtype(TEXT_STORAGE)
    text_as_string = {pa.string(): text, pa.large_string(): text}.get
    try:
        if path.suffix == ".csv":
            content = _without_nul_byte(path.read_bytes())  # pandas' parser would cut the value at it
            frame = pd.read_csv(io.BytesIO(content), dtype=str, keep_default_na=True)
            frame = _coerce_csv_columns(frame, table)
        elif for_validation:
            frame = _valid_columns(pq.read_table(path)).to_pandas(types_mapper=text_as_string)
        else:
            frame = pq.read_table(path).to_pandas()
    except Exception as error:  # any parser error means the same thing: the bytes are not a table
        raise UnreadableFileError(f"{path.name} is not a readable {path.suffix[1:]} file: {error}") from error
    for column, kind in table.columns.items():
        if kind == "timestamp" and column in frame and isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
        if for_validation and kind == "timestamp" and column in frame:
            frame[column] = _as_nanoseconds(frame[column])
    return frame


NUL_IN_TEXT = "text holds a NUL character (U+0000), which Postgres can't store"


def _valid_columns(read: pa.Table) -> pa.Table:
    """`read`, every column checked whole (its text UTF-8 among the rest): text stored in Arrow is never
    decoded by Python, which used to find bad bytes; ~2 ms a day's file. Raises naming the column.

    Text holding a NUL character (U+0000) is refused too: Postgres text cannot store one, so the prod load
    would fail after validation, on every retry; the file is refused on both profiles."""
    import pyarrow as pa

    for name, column in zip(read.column_names, read.columns, strict=True):
        try:
            column.validate(full=True)
        except pa.ArrowInvalid as error:
            raise ValueError(f"column `{name}`: {error}") from error
        if _holds_nul(column):
            raise ValueError(f"column `{name}`: {NUL_IN_TEXT}")
    return read


def _holds_nul(column: pa.ChunkedArray) -> bool:
    """Whether a text column (dictionary-encoded or not) holds a NUL character anywhere."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_string_view(column.type):
        column = column.cast(pa.large_string())
    text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    return text and pc.any(pc.match_substring(column, "\x00")).as_py()


def _without_nul_byte(content: bytes) -> bytes:
    """A CSV file's `content`, read once; raises naming the line of its first NUL byte (see
    `_valid_columns`)."""
    if (at := content.find(b"\x00")) >= 0:
        line = content.count(b"\n", 0, at) + 1
        raise ValueError(f"line {line}: {NUL_IN_TEXT}")
    return content


def text_array(values: pd.Series) -> pa.Array:
    """A column as Arrow text: as it is for text read as `TEXT_STORAGE`, other types written as text."""
    import pandas as pd
    import pyarrow as pa

    return pa.array(values.astype(pd.StringDtype(TEXT_STORAGE)), pa.large_string())


def _as_nanoseconds(values: pd.Series) -> pd.Series:
    """A naive datetime column in nanoseconds when every value fits (years 1677-2262); else unchanged
    (the range check then compares value by value, and a value outside the day still fails it)."""
    import pandas as pd

    if not pd.api.types.is_datetime64_dtype(values.dtype) or values.dtype == "datetime64[ns]":
        return values
    try:
        return values.astype("datetime64[ns]")
    except (OverflowError, ValueError):  # pandas' OutOfBoundsDatetime is a ValueError
        return values


def _coerce_csv_columns(frame: pd.DataFrame, table: RawTable) -> pd.DataFrame:
    """Give CSV text columns their contract type, but only when every value parses.

    A column with values that do not parse stays text, so the schema check reports the wrong type
    instead of the values silently becoming nulls.
    """
    import pandas as pd

    parsers = {
        "float": lambda s: pd.to_numeric(s, errors="coerce"),
        "bool": lambda s: s.str.lower().map({"true": True, "false": False, "1": True, "0": False}),
        "timestamp": lambda s: pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601"),
        "date": lambda s: pd.to_datetime(s, errors="coerce", format="ISO8601").dt.date,
    }
    for column, kind in table.columns.items():
        if column not in frame or kind not in parsers:
            continue
        parsed = parsers[kind](frame[column])
        if parsed.isna().sum() == frame[column].isna().sum():
            frame[column] = parsed.astype(bool) if kind == "bool" else parsed
    return frame


@dataclass(frozen=True)
class ExpectationOutcome:
    check: str
    expectation: str
    column: str | None
    success: bool
    unexpected_count: int | None = None
    sample: list[Any] = field(default_factory=list)
    observed: Any = None

    def describe(self) -> str:
        where = f" on `{self.column}`" if self.column else ""
        detail = ""
        if self.unexpected_count:
            detail = f": {self.unexpected_count} unexpected value(s), e.g. {self.sample[:3]}"
        elif self.observed is not None:
            detail = f": observed {self.observed}"
        return f"{self.expectation}{where}{detail}"


@dataclass
class FileValidation:
    path: Path
    outcomes: list[ExpectationOutcome]
    frame: pd.DataFrame | None

    @property
    def passed(self) -> bool:
        return all(o.success for o in self.outcomes)

    @property
    def schema_sound(self) -> bool:
        """Readable with the contract's columns and types: its content can be judged."""
        schema = [o for o in self.outcomes if o.check == "schema"]
        return self.frame is not None and bool(schema) and all(o.success for o in schema)

    def judged(self, check: str) -> bool:
        return any(o.check == check for o in self.outcomes)

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def reason(self) -> str:
        """One readable sentence per failed check, for the quarantine note and the UI."""
        lines = [f"[{o.check}] {o.describe()}" for o in self.failures]
        return f"{self.path.name} failed validation: " + "; ".join(lines)


@dataclass(frozen=True)
class PartitionContext:
    """What a file is validated against besides itself."""

    day: date | None = None
    # ids as Arrow arrays: membership is looked up vectorized (`with_known_flags`)
    known_customers: pa.Array | None = None
    known_merchants: pa.Array | None = None
    # for tables in REFERENCES: the partition's referenced keys that no partition holds (usually none)
    unloaded_transactions: pa.Array | None = None
    # keys of this file already loaded on another day: {key: day}
    loaded_on_other_days: dict[str, str] = field(default_factory=dict)


class SuiteRunner:
    """Runs expectation suites on dataframes with one ephemeral GX context (no files, no network).

    One runner serves a whole process (`shared`): the context, its data source and batch definition are
    built once. Each file's suite is validated on the file's batch directly (`Batch.validate`): a
    validation definition would add its registration and a results store that nothing reads (~10 ms a
    file). A suite runs with GX's `BOOLEAN_ONLY` result format (no lists of unexpected values to
    gather); only when something fails does it run again with `SUMMARY`, for the counts and samples the
    quarantine note and the checks' metadata show. Three costs of GX's own that change no result are
    removed when it is first imported (`gx_costs`).
    """

    _shared: SuiteRunner | None = None

    @classmethod
    def shared(cls) -> SuiteRunner:
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    @cached_property
    def _gx(self):
        gx = import_gx()  # imported lazily: ~3 s, only needed when validating
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        batch = context.data_sources.add_pandas("landing").add_dataframe_asset("file")
        return gx, batch.add_batch_definition_whole_dataframe("whole_file")

    def run(self, suite_name: str, expectations: list, frame: pd.DataFrame) -> list[ExpectationOutcome]:
        gx, batch_definition = self._gx
        suite = gx.ExpectationSuite(name=suite_name, expectations=expectations)
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
        with validating():
            result = batch.validate(suite, result_format="BOOLEAN_ONLY")
        if not result.success:
            with validating():
                result = batch.validate(suite, result_format="SUMMARY")
        return [_outcome(r) for r in result.results]

    def expectations(self):
        return self._gx[0].expectations


@contextmanager
def validating() -> Iterator[None]:
    """The span of one GX validation of a frame from `read_landing_file`: each configuration built once
    (`one_validation`), and pandas' default string storage that of the frame's text. GX's type list
    names the string dtype `StringDtype` and compares columns with `pd.StringDtype()`, whose storage is
    the default: Arrow-stored text would otherwise fail the schema check."""
    with one_validation(), _DEFAULT_TEXT_STORAGE.set():
        yield


class _ProcessOption:
    """A pandas option held at a value while any thread needs it: options are process-wide, so the first
    span to start sets it and the last to end restores it (`pd.option_context` in two overlapping
    threads would restore it under the other one)."""

    def __init__(self, name: str, value: str) -> None:
        self.name, self.value = name, value
        self._lock = threading.Lock()
        self._spans = 0
        self._previous: Any = None

    @contextmanager
    def set(self) -> Iterator[None]:
        import pandas as pd

        with self._lock:
            if not self._spans:
                self._previous = pd.get_option(self.name)
                pd.set_option(self.name, self.value)
            self._spans += 1
        try:
            yield
        finally:
            with self._lock:
                self._spans -= 1
                if not self._spans:
                    pd.set_option(self.name, self._previous)


_DEFAULT_TEXT_STORAGE = _ProcessOption("mode.string_storage", TEXT_STORAGE)


def _outcome(result) -> ExpectationOutcome:
    config = result.expectation_config
    details = result.result or {}
    observed = details.get("observed_value")
    mismatched = (details.get("details") or {}).get("mismatched")
    if mismatched:  # column-set expectations: say what is missing or extra, not the whole list
        observed = {k: v for k, v in mismatched.items() if v}
    if result.exception_info and result.exception_info.get("raised_exception"):
        observed = result.exception_info.get("exception_message")
    return ExpectationOutcome(
        check=config.meta["check"],
        expectation=config.meta.get("rule", config.type),
        column=config.kwargs.get("column"),
        success=bool(result.success),
        unexpected_count=details.get("unexpected_count"),
        sample=list(details.get("partial_unexpected_list") or [])[:5],
        observed=observed,
    )


def schema_expectations(
    gxe, table: RawTable, present_columns: list[str], added_columns: list[str] | None = None
) -> list:
    """`added_columns`: columns the platform added to the file's frame (membership flags), never
    reported as extra."""
    expectations = [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=[*table.columns, *(added_columns or [])], exact_match=True, meta={"check": "schema"}
        ),
        gxe.ExpectTableRowCountToBeBetween(min_value=1, meta={"check": "schema"}),
    ]
    expectations += [
        gxe.ExpectColumnValuesToBeInTypeList(
            column=column, type_list=ACCEPTED_TYPES[kind], meta={"check": "schema"}
        )
        for column, kind in table.columns.items()
        if column in present_columns  # a missing column is reported once, by the column-set expectation
    ]
    return expectations


def content_expectations(gxe, table: RawTable, context: PartitionContext) -> list:
    expectations = [
        gxe.ExpectColumnValuesToNotBeNull(column=column, meta={"check": "not_null"})
        for column in table.columns
    ]
    expectations += [
        gxe.ExpectColumnValuesToBeUnique(column=table.key, meta={"check": "unique_key"}),
        # the warehouse lookup narrowed the set to this file's keys that are loaded elsewhere: small
        gxe.ExpectColumnValuesToNotBeInSet(
            column=table.key,
            value_set=sorted(context.loaded_on_other_days),
            meta={"check": "unique_key", "rule": CROSS_DAY_RULE},
        ),
    ]
    if "amount" in table.columns:
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="amount",
                min_value=0,
                max_value=MAX_AMOUNT,
                strict_min=True,
                meta={"check": "value_ranges"},
            )
        )
    expectations += [
        gxe.ExpectColumnValuesToBeInSet(column=column, value_set=list(domain), meta={"check": "value_ranges"})
        for column, domain in DOMAINS.items()
        if column in table.columns
    ]
    if table.partition_timestamp and context.day:
        start = datetime.combine(context.day, time.min)
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=table.partition_timestamp,
                min_value=start,
                max_value=start + timedelta(days=1),
                strict_max=True,
                meta={"check": "inside_partition"},
            )
        )
    expectations += [
        gxe.ExpectColumnValuesToBeInSet(
            column=f"{column}{KNOWN_SUFFIX}", value_set=[True], meta={"check": check}
        )
        for column, (check, _, _) in known_entity_columns(table, context).items()
    ]
    return expectations


KNOWN_SUFFIX = "_is_known"


def known_entity_columns(table: RawTable, context: PartitionContext) -> dict[str, tuple[str, pa.Array, bool]]:
    """{column: (check, ids, whether a known value is among them (else: not among them))} for the
    referential checks that apply."""
    known: dict[str, tuple[str, pa.Array | None, bool]] = {
        "customer_id": ("known_entities", context.known_customers, True),
        "merchant_id": ("known_entities", context.known_merchants, True),
    }
    if table.name in REFERENCES:
        known[REFERENCES[table.name][0]] = ("known_transactions", context.unloaded_transactions, False)
    return {
        column: (check, ids, among)
        for column, (check, ids, among) in known.items()
        if ids is not None and column in table.columns
    }


def with_known_flags(frame: pd.DataFrame, table: RawTable, context: PartitionContext) -> pd.DataFrame:
    """Membership in the snapshots as a boolean column per key, for GX to check.

    Handing GX the whole snapshot as a `value_set` made it copy 50k ids per evaluation: ingestion ran
    130x slower than a plain load at 1M transactions. Membership is looked up by Arrow on the ids as
    they are (a file's 30k customer ids against 50k: 7 ms; a Python set lookup per value 13 ms, and
    `Series.isin` with the ids 440 ms).
    """
    import pyarrow.compute as pc

    flags = {}
    for column, (_, ids, among) in known_entity_columns(table, context).items():
        if column not in frame:  # a missing column is the schema check's finding
            continue
        found = pc.is_in(text_array(frame[column]), value_set=ids).to_numpy(zero_copy_only=False)
        known = found if among else ~found
        # a missing key is the not_null check's finding, not an unknown entity
        flags[f"{column}{KNOWN_SUFFIX}"] = known | frame[column].isna().to_numpy(dtype=bool)
    return frame.assign(**flags)


def _name_unknown_ids(outcome: ExpectationOutcome, frame: pd.DataFrame) -> ExpectationOutcome:
    """Report a failed membership flag as the ids that are unknown, on the real column."""
    if outcome.success or not (outcome.column or "").endswith(KNOWN_SUFFIX):
        return outcome
    column = outcome.column.removesuffix(KNOWN_SUFFIX)
    unknown = frame.loc[~frame[outcome.column], column]
    return replace(outcome, column=column, sample=list(unknown.head(5)), unexpected_count=len(unknown))


def _name_other_days(outcome: ExpectationOutcome, context: PartitionContext) -> ExpectationOutcome:
    """Report an id loaded on another day with the day it was loaded on."""
    if outcome.success or outcome.expectation != CROSS_DAY_RULE:
        return outcome
    sample = [
        f"{key} (loaded on {context.loaded_on_other_days.get(str(key), '?')})" for key in outcome.sample
    ]
    return replace(outcome, sample=sample)


def validate_file(
    path: Path, table: RawTable, context: PartitionContext, runner: SuiteRunner
) -> FileValidation:
    """Read one landed file and validate it (`validate_frame`); an unreadable file fails `schema`."""
    try:
        frame = read_landing_file(path, table, for_validation=True)
    except UnreadableFileError as error:
        return unreadable(path, error)
    return validate_frame(path, frame, table, context, runner)


def unreadable(path: Path, error: Exception) -> FileValidation:
    failure = ExpectationOutcome("schema", "file_is_readable", None, False, observed=str(error))
    return FileValidation(path, [failure], None)


def validate_frame(
    path: Path, frame: pd.DataFrame, table: RawTable, context: PartitionContext, runner: SuiteRunner
) -> FileValidation:
    """One GX validation of a file: the schema suite and the content suite together.

    Content is only judged once the schema is sound: when a schema expectation fails, the content
    results are dropped (those checks are then "not judged", never passed), exactly as if the content
    suite had not run.
    """
    gxe = runner.expectations()
    flagged = with_known_flags(frame, table, context)
    flags = [column for column in flagged.columns if column not in frame.columns]
    expectations = schema_expectations(gxe, table, list(frame.columns), added_columns=flags)
    expectations += content_expectations(gxe, table, context)
    outcomes = runner.run(f"raw_{table.name}", expectations, flagged)
    schema = [o for o in outcomes if o.check == "schema"]
    if not all(o.success for o in schema):
        return FileValidation(path, schema, frame)
    content = [
        _name_other_days(_name_unknown_ids(o, flagged), context) for o in outcomes if o.check != "schema"
    ]
    return FileValidation(path, schema + content, frame)


def blame_collisions(
    validations: list[FileValidation], key: str, loaded_files: set[str]
) -> list[FileValidation]:
    """Keys shared between files of one partition: decide, per file, which one is at fault.

    Only files that passed on their own take part (a file failing anyway is quarantined, its keys are
    never loaded, so they blame nobody). A file already loaded in the warehouse keeps its keys; among the
    others the earlier name wins. The file at fault gets a `unique_key` failure naming the other file.
    """
    owners: dict[str, str] = {}
    blamed: dict[Path, ExpectationOutcome] = {}
    candidates = [v for v in validations if v.passed and v.frame is not None and key in v.frame]
    if len(candidates) < 2:  # the usual partition of one file: nothing to share a key with
        return validations
    for validation in sorted(candidates, key=lambda v: (v.path.name not in loaded_files, v.path.name)):
        keys = validation.frame[key].dropna().astype(str)  # type: ignore[index]
        clash = keys[keys.isin(owners.keys())]
        if len(clash):
            sample = [f"{k} (in {owners[k]})" for k in clash.head(5)]
            blamed[validation.path] = ExpectationOutcome(
                "unique_key", CROSS_FILE_RULE, key, False, unexpected_count=len(clash), sample=sample
            )
        else:
            owners.update(dict.fromkeys(keys, validation.path.name))
    return [
        FileValidation(v.path, [*v.outcomes, blamed[v.path]], v.frame) if v.path in blamed else v
        for v in validations
    ]
