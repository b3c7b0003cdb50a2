"""The landing-zone sensor: one run per landed day, from its files to its monitoring."""

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AssetSelection,
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    define_asset_job,
    sensor,
)

from mlplatform.automation import TRIGGER_TAG
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


def day_runs(
    changed: dict[str, dict[str, str]], refresh: Sequence[AssetKey], day_chain: Sequence[AssetKey]
) -> list[RunRequest]:
    """One run per landed day (oldest first) from {day: {table: fingerprint}}.

    Each run ingests the day's changed tables (snapshots before the partitions that read them). The newest
    day's run also refreshes what follows every landing (`refresh`: the marts, the online store) and, when
    transactions landed, scores and monitors the day (`day_chain`): a day lands in one run instead of one
    per hop. Older days of a backlog are only ingested; declarative automation scores them after, once.
    """
    requests = []
    newest = max(changed, default=None)
    for day in sorted(changed):
        tables = changed[day]
        assets = [raw_key(RAW_TABLES[t]) for t in sorted(tables, key=lambda t: RAW_TABLES[t].partitioned)]
        if day == newest:
            assets += [*refresh, *(day_chain if "transactions" in tables else [])]
        fingerprints = ",".join(f"{table}:{tables[table]}" for table in sorted(tables))
        requests.append(
            RunRequest(
                run_key=f"{day}/{fingerprints}",
                asset_selection=assets,
                partition_key=day if any(RAW_TABLES[t].partitioned for t in tables) else None,
                tags={
                    TRIGGER_TAG: "landing_zone_sensor",
                    **{f"mlplatform/{t}_{FINGERPRINT}": fp for t, fp in tables.items()},  # one tag per table
                },
            )
        )
    return requests


def build_landing_zone_sensor(refresh: Sequence[AssetKey], day_chain: Sequence[AssetKey]) -> SensorDefinition:
    """The sensor, given what a landing refreshes and what a landed day of transactions sets off. Its runs
    are runs of the `landed_day` job (each selecting what its day needs), named so in the UI."""
    landed_day = define_asset_job(
        "landed_day",
        selection=AssetSelection.assets(*ingestion_assets, *refresh, *day_chain),
        description="A landed day: its files validated and loaded, then the marts, the online store, and "
        "for a day of transactions its scoring and monitoring (each run selects what its day needs).",
    )

    @sensor(
        name="landing_zone_sensor",
        job=landed_day,
        minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "One run per landed day with a new or changed file: its ingestion, then the marts, the online "
            "store, the day's scoring and monitoring. Run key: the day and the files' contents, so a file "
            "seen twice runs once and a replaced file runs again."
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
        current, changes = landed_changes(seen, files)
        changed: dict[str, dict[str, str]] = defaultdict(dict)
        deferred, skipped = set(), []
        for (table_name, day), hashes in sorted(changes.items(), key=lambda item: (item[0][1], item[0][0])):
            table = RAW_TABLES[table_name]
            if not table.partitioned and day != landing_zone.latest_snapshot_day(table_name):
                continue  # an older snapshot: the asset only ever reads the newest
            fingerprint = partition_fingerprint(hashes)
            partition = day if table.partitioned else None
            if already_ingested(context.instance, raw_key(table), partition, fingerprint):
                skipped.append(f"{table_name}/{day}")
            elif day not in changed and len(changed) >= MAX_RUNS_PER_TICK:
                deferred.add((table_name, day))
            else:
                changed[day][table_name] = fingerprint
        # deferred days stay out of the cursor, so the next tick finds them again
        cursor = {str(f.path): current[str(f.path)] for f in files if (f.table, f.day) not in deferred}
        if skipped:
            context.log.info(f"already ingested with the same files: {', '.join(skipped)}")
        requests = day_runs(changed, refresh, day_chain)
        return SensorResult(
            run_requests=requests,
            cursor=json.dumps(cursor),
            skip_reason=None if requests else "no new or changed files in the landing zone",
        )

    return landing_zone_sensor
