"""Raw tables: landing files, validated by Great Expectations, loaded into the warehouse's `raw` schema."""

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    DailyPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
    asset,
)

from mlplatform.checks import judged, not_judged
from mlplatform.ingestion.ingest import CheckSummary, IngestionReport, NothingLandedError, ingest_partition
from mlplatform.ingestion.landing_watch import FINGERPRINT, landed_fingerprint
from mlplatform.ingestion.validation import CHECK_DESCRIPTIONS, SuiteRunner, checks_for
from mlplatform.k8s import INGESTION
from mlplatform.profiles import warehouse_kind
from mlplatform.resources import LandingZone, Warehouse
from mlplatform.resources.landing import not_date_folders
from mlplatform.schemas import CUSTOMERS, LABELS, MERCHANTS, TRANSACTIONS, RawTable
from mlplatform.settings import partitions_start_date

if TYPE_CHECKING:
    import pyarrow as pa

# end_offset=1: today's partition exists, so files landing during the day can be ingested. The first
# partition is where the data starts (MLPLATFORM_PARTITIONS_START, else the oldest landed day).
DAILY_PARTITIONS = DailyPartitionsDefinition(start_date=partitions_start_date(), end_offset=1)

DESCRIPTIONS = {
    "transactions": "Card transactions as they landed, one partition per event day.",
    "labels": "Fraud labels (chargebacks and confirmations), one partition per day they were reported.",
    "customers": "The latest customer (card holder) snapshot: segment, region, home country.",
    "merchants": "The latest merchant snapshot: category, country, risk tier.",
}


# Where data comes from: written by the source systems, never by Dagster (an external asset), so the
# lineage starts at the files that land
landing_zone = AssetSpec(
    "landing_zone",
    group_name="ingestion",
    kinds={"file"},
    owners=["team:data-platform"],
    description=(
        "Files the source systems land: `<table>/date=YYYY-MM-DD/*.parquet|csv` under the landing folder "
        "(daily transactions and labels, customer and merchant snapshots). Watched by "
        "`landing_zone_sensor`; rejected files move to the quarantine folder with their reason."
    ),
)


def raw_key(table: RawTable) -> AssetKey:
    return AssetKey(f"raw_{table.name}")


def build_raw_asset(table: RawTable, upstream: tuple[RawTable, ...] = ()) -> AssetsDefinition:
    """A raw asset with one blocking GX-backed check per concern (schema, nulls, keys, ranges, ...)."""
    key = raw_key(table)
    check_specs = [
        AssetCheckSpec(name, asset=key, blocking=True, description=CHECK_DESCRIPTIONS[name])
        for name in checks_for(table)
    ]
    column_schema = TableSchema(columns=[TableColumn(name, kind) for name, kind in table.columns.items()])
    snapshot_note = "" if table.partitioned else " The newest `date=` folder is the snapshot."

    @asset(
        key=key,
        group_name="ingestion",
        kinds={"pandas", "greatexpectations", warehouse_kind()},
        owners=["team:data-platform"],
        partitions_def=DAILY_PARTITIONS if table.partitioned else None,
        deps=[landing_zone, *(raw_key(t) for t in upstream)],
        check_specs=check_specs,
        op_tags=INGESTION,
        metadata={"dagster/column_schema": column_schema, "landing_path": f"landing/{table.name}/date=*/"},
        description=(
            f"{DESCRIPTIONS[table.name]}{snapshot_note} Files failing validation are quarantined with "
            "their reason; a partition loads only when all its files pass, replacing what it held."
        ),
    )
    def raw_asset(context: AssetExecutionContext, landing_zone: LandingZone, warehouse: Warehouse):
        day = context.partition_key if table.partitioned else landing_zone.latest_snapshot_day(table.name)
        for folder in not_date_folders(Path(landing_zone.landing_dir), table.name):
            context.log.warning(f"ignored {folder}: a landing folder must be named date=YYYY-MM-DD")
        if day is None:
            raise Failure(
                f"no {table.name} snapshot has landed under {landing_zone.landing_dir}/{table.name}"
            )
        known = _known_entities(warehouse) if "known_entities" in checks_for(table) else {}
        fingerprint = landed_fingerprint(landing_zone.files(table.name, day))
        try:
            report = ingest_partition(table, day, landing_zone, warehouse, SuiteRunner.shared(), **known)
        except NothingLandedError as error:
            raise Failure(str(error)) from error
        for name, target in report.quarantined.items():
            context.log.error(f"quarantined {name} -> {target}")
        yield MaterializeResult(metadata={**_report_metadata(report), FINGERPRINT: fingerprint})
        # yielded after the materialization, not inside it: Dagster then looks up the materialization each
        # verdict targets once, instead of a second time just to learn a key the result already names
        for summary in report.check_summaries():
            yield _check_result(key, summary)

    return raw_asset


# {(warehouse, table, rows, newest _loaded_at): ids}: the snapshots' ids, read once while they are unchanged
# (every load of a snapshot stamps a new `_loaded_at`); a process keeps the latest version per table only
_KNOWN_IDS: dict[tuple[str, str], tuple[tuple, "pa.Array"]] = {}


def _known_entities(warehouse: Warehouse) -> dict[str, "pa.Array"]:
    """The customer and merchant ids of the latest snapshots, for `known_entities`."""
    import pyarrow as pa

    snapshots = ((CUSTOMERS, "customer_id"), (MERCHANTS, "merchant_id"))
    version_sql = " union all ".join(
        f"select '{t.name}' as t, count(*) as n, cast(max(_loaded_at) as varchar) as at from raw.{t.name}"
        for t, _ in snapshots
    )
    try:
        versions = warehouse.read_sql(version_sql)
    except Exception:  # a snapshot table (or the warehouse) is missing: say which
        for table, _ in snapshots:
            if not warehouse.table_exists("raw", table.name):
                raise Failure(
                    f"{raw_key(table).to_user_string()} must be materialized before transactions"
                ) from None
        raise
    by_table = {
        t: (int(n), str(at)) for t, n, at in zip(versions["t"], versions["n"], versions["at"], strict=True)
    }
    known = {}
    for table, column in snapshots:
        slot = (repr(warehouse), table.name)
        version = by_table[table.name]
        cached = _KNOWN_IDS.get(slot)
        if cached is None or cached[0] != version:
            read = warehouse.read_sql(f"select {column} from raw.{table.name}")[column]
            ids = pa.array(read, pa.large_string())
            _KNOWN_IDS[slot] = cached = (version, ids)
        known[f"known_{table.name}"] = cached[1]
    return known


def _report_metadata(report: IngestionReport) -> dict:
    files = [v.path.name for v in report.validations]
    metadata = {
        "partition_or_snapshot": report.day,
        "files": MetadataValue.json(files),
        "rows_loaded": report.rows_loaded,
        "status": "loaded" if report.passed else "rejected: warehouse unchanged, bad files quarantined",
    }
    if report.passed:
        metadata["dagster/row_count"] = report.rows_loaded
        frames = [v.frame for v in report.validations]
        metadata["preview"] = MetadataValue.md(frames[0].head(5).to_markdown(index=False))
    else:
        reasons = "\n".join(
            f"| {v.path.name} | {v.reason()} | {report.quarantined.get(v.path.name, '-')} |"
            for v in report.validations
            if not v.passed
        )
        metadata["quarantined"] = MetadataValue.md("| file | reason | moved to |\n|---|---|---|\n" + reasons)
    return metadata


def _check_result(key: AssetKey, summary: CheckSummary) -> AssetCheckResult:
    """A verdict when the check looked at every file or found a failure; otherwise "not judged"."""
    failures = [
        {"file": file, "expectation": o.expectation, "column": o.column, "detail": o.describe()}
        for file, o in summary.failures
    ]
    metadata: dict[str, Any] = {
        "files_evaluated": MetadataValue.json(summary.files_evaluated),
        "files_not_judged": MetadataValue.json(summary.files_not_judged),
        "failed_expectations": len(failures),
        "failures": MetadataValue.json(failures),
    }
    if not summary.judged:
        return not_judged(
            f"{', '.join(summary.files_not_judged)} failed `schema`: content not evaluated",
            asset_key=key,
            check_name=summary.name,
            **metadata,
        )
    return judged(
        summary.passed,
        asset_key=key,
        check_name=summary.name,
        description=None if summary.passed else "; ".join(f["detail"] for f in failures)[:1000],
        **metadata,
    )


raw_customers = build_raw_asset(CUSTOMERS)
raw_merchants = build_raw_asset(MERCHANTS)
raw_transactions = build_raw_asset(TRANSACTIONS, upstream=(CUSTOMERS, MERCHANTS))
raw_labels = build_raw_asset(LABELS)

ingestion_assets = [raw_customers, raw_merchants, raw_transactions, raw_labels]
external_sources = [landing_zone]
