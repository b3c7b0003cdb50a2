"""The landing-zone sensor: ingest each partition when a file lands in it or changes."""

import json
from pathlib import Path

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AssetSelection,
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from mlplatform.ingestion.assets import ingestion_assets, raw_key
from mlplatform.ingestion.landing_watch import FINGERPRINT, landed_changes, partition_fingerprint, scan
from mlplatform.resources import LandingZone
from mlplatform.resources.landing import not_date_folders
from mlplatform.schemas import RAW_TABLES

MAX_RUNS_PER_TICK = 50  # a bigger burst is spread over the next ticks, never dropped


def already_ingested(
    instance: DagsterInstance, key: AssetKey, partition: str | None, fingerprint: str
) -> bool:
    """The newest materialization of the partition read exactly these files (e.g. `make demo` did it)."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None),
        limit=1,
        ascending=False,
    ).records
    if not records:
        return False
    metadata = records[0].event_log_entry.asset_materialization.metadata
    return FINGERPRINT in metadata and metadata[FINGERPRINT].value == fingerprint


@sensor(
    asset_selection=AssetSelection.assets(*ingestion_assets),
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "One ingestion run per landed partition with a new or changed file (run key: table, day and the "
        "files' contents), so a file seen twice runs once and a replaced file runs again."
    ),
)
def landing_zone_sensor(context: SensorEvaluationContext, landing_zone: LandingZone) -> SensorResult:
    seen = json.loads(context.cursor) if context.cursor else {}
    ignored = [f for table in RAW_TABLES for f in not_date_folders(Path(landing_zone.landing_dir), table)]
    if ignored:
        context.log.warning(
            "ignoring landing folders that are not dates (expected date=YYYY-MM-DD): "
            + ", ".join(str(f) for f in ignored)
        )
    files = scan(Path(landing_zone.landing_dir), list(RAW_TABLES))
    current, changed = landed_changes(seen, files)
    requests, deferred, skipped = [], set(), []
    for (table_name, day), hashes in sorted(changed.items(), key=lambda item: (item[0][1], item[0][0])):
        table = RAW_TABLES[table_name]
        if not table.partitioned and day != landing_zone.latest_snapshot_day(table_name):
            continue  # an older snapshot: the asset only ever reads the newest
        partition = day if table.partitioned else None
        fingerprint = partition_fingerprint(hashes)
        if already_ingested(context.instance, raw_key(table), partition, fingerprint):
            skipped.append(f"{table_name}/{day}")
        elif len(requests) >= MAX_RUNS_PER_TICK:
            deferred.add((table_name, day))
        else:
            requests.append(
                RunRequest(
                    run_key=f"{table_name}/{day}/{fingerprint}",
                    asset_selection=[raw_key(table)],
                    partition_key=partition,
                    tags={
                        "mlplatform/trigger": "landing_zone_sensor",
                        f"mlplatform/{FINGERPRINT}": fingerprint,
                    },
                )
            )
    # deferred partitions stay out of the cursor, so the next tick finds them again
    cursor = {str(f.path): current[str(f.path)] for f in files if (f.table, f.day) not in deferred}
    if skipped:
        context.log.info(f"already ingested with the same files: {', '.join(skipped)}")
    return SensorResult(
        run_requests=requests,
        cursor=json.dumps(cursor),
        skip_reason=None if requests else "no new or changed files in the landing zone",
    )
