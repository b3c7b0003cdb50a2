"""The landing-zone sensor: one run per landed day, from its files to its monitoring.

Under the run queue (dagster.prod.yaml: up to 8 runs at once) the runs of a burst run side by side, so the
sensor itself orders what one run's result depends on (`waits_for`, `landing_in_flight`): a partition is
requested only once what it is validated against is loaded, and the newest day's run, which refreshes the
marts, only once nothing else of the landing is queued or running. Concurrent runs then give the tables
serial runs give (tests/prod/test_concurrent_landing.py, under a real daemon).
"""

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AssetSelection,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    define_asset_job,
    sensor,
)

from mlplatform.automation import TRIGGER_TAG
from mlplatform.ingestion.assets import ingestion_assets, raw_key
from mlplatform.ingestion.landing_watch import FINGERPRINT, landed_changes, partition_fingerprint, scan
from mlplatform.ingestion.validation import REFERENCES, checks_for
from mlplatform.resources import LandingZone
from mlplatform.resources.landing import not_date_folders
from mlplatform.schemas import RAW_TABLES
from mlplatform.settings import landing_scan_seconds

MAX_RUNS_PER_TICK = 50  # a bigger burst is spread over the next ticks, never dropped
SENSOR_NAME = "landing_zone_sensor"
# a run of the sensor that has not finished: its tables may not be loaded yet
IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]
SNAPSHOTS = frozenset(name for name, table in RAW_TABLES.items() if not table.partitioned)
# tables whose files are validated against the snapshots (`known_entities`)
NEED_SNAPSHOTS = frozenset(
    name for name, table in RAW_TABLES.items() if "known_entities" in checks_for(table)
)

Work = tuple[str, str | None]  # (table, day): a partition, or a snapshot (day: its folder's, or unknown)


def table_tag(table: str) -> str:
    """The run tag naming the fingerprint of the files a run ingests for `table`."""
    return f"mlplatform/{table}_{FINGERPRINT}"


def landing_in_flight(instance: DagsterInstance) -> set[Work]:
    """(table, day) that runs of this sensor still queued or running will ingest (read from their tags)."""
    runs = instance.get_runs(RunsFilter(statuses=IN_FLIGHT, tags={TRIGGER_TAG: SENSOR_NAME}))
    return {
        (table, run.tags.get("dagster/partition"))
        for run in runs
        for table in RAW_TABLES
        if table_tag(table) in run.tags
    }


def waits_for(table: str, day: str, elsewhere: set[Work]) -> bool:
    """Whether ingesting `table` on `day` must wait for `elsewhere` (other runs' tables, queued, running
    or about to be requested): its files would be validated against tables those runs have not loaded
    yet, and good files quarantined (or the run failed) by a race. Transactions wait for any snapshot
    (their customers and merchants), labels for the transactions of earlier days they refer to. Within
    one run Dagster orders them itself (raw_transactions depends on the snapshots)."""
    if table in NEED_SNAPSHOTS and any(other in SNAPSHOTS for other, _ in elsewhere):
        return True
    if table in REFERENCES:
        referenced = REFERENCES[table][1]
        return any(other == referenced and d is not None and d < day for other, d in elsewhere)
    return False


def sequence(
    changed: dict[str, dict[str, str]], in_flight: set[Work], more_later: bool = False
) -> tuple[dict[str, dict[str, str]], set[Work]]:
    """Split {day: {table: fingerprint}} into what can run now and what waits for a later tick.

    A partition waits for what it is validated against (`waits_for`) when another day's run of this tick
    or a run in flight holds it. The newest day's run refreshes the marts, the online store and scores the
    day: it is requested alone, once nothing else of the landing is pending or in flight, so those read
    every landed day (as serial runs would). With `more_later` (newer days held back for a later tick: a
    burst bigger than a tick takes), the newest day here is not the newest landed and waits for nothing.
    A burst therefore lands in a few waves: the snapshots, the days that only need them (side by side),
    the labels, then the newest day.
    """
    pending = {(table, day) for day, tables in changed.items() for table in tables}
    ready: dict[str, dict[str, str]] = defaultdict(dict)
    waiting: set[Work] = set()
    for day, tables in changed.items():
        elsewhere = in_flight | {(t, d) for t, d in pending if d != day}
        for table, fingerprint in tables.items():
            if waits_for(table, day, elsewhere):
                waiting.add((table, day))
            else:
                ready[day][table] = fingerprint
    newest = max(changed, default=None)
    if not more_later and newest in ready and (len(ready) > 1 or waiting or in_flight):
        waiting |= {(table, newest) for table in ready.pop(newest)}
    return dict(ready), waiting


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
    changed: dict[str, dict[str, str]],
    refresh: Sequence[AssetKey],
    day_chain: Sequence[AssetKey],
    newest: str | None,
) -> list[RunRequest]:
    """One run per landed day (oldest first) from {day: {table: fingerprint}}.

    Each run ingests the day's changed tables (snapshots before the partitions that read them). The run of
    the `newest` landed day (None: no run of these) also refreshes what follows every landing (`refresh`:
    the marts, the online store) and, when transactions landed, scores and monitors the day
    (`day_chain`): a day lands in one run instead of one per hop. Older days of a backlog are only
    ingested; declarative automation scores them after, once.
    """
    requests = []
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
                    TRIGGER_TAG: SENSOR_NAME,
                    **{table_tag(t): fp for t, fp in tables.items()},  # one tag per table
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
        name=SENSOR_NAME,
        job=landed_day,
        minimum_interval_seconds=landing_scan_seconds(),
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "One run per landed day with a new or changed file: its ingestion, then the marts, the online "
            "store, the day's scoring and monitoring. Run key: the day and the files' contents, so a file "
            "seen twice runs once and a replaced file runs again. A partition waits (for a later tick) "
            "while the snapshots or earlier transactions it is validated against are still being loaded, "
            "and the newest day until nothing else of the landing is queued or running."
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
        deferred: set[Work] = set()
        skipped: list[str] = []
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
        in_flight = landing_in_flight(context.instance) if changed else set()
        ready, waiting = sequence(changed, in_flight, more_later=bool(deferred))
        deferred |= waiting
        # deferred days stay out of the cursor, so the next tick finds them again
        cursor = {str(f.path): current[str(f.path)] for f in files if (f.table, f.day) not in deferred}
        if skipped:
            context.log.info(f"already ingested with the same files: {', '.join(skipped)}")
        if waiting:
            context.log.info(
                "waiting for the landing's queued or running runs (next tick): "
                + ", ".join(f"{table}/{day}" for table, day in sorted(waiting))
            )
        # the refresh goes with the newest landed day only: none while newer days are held back
        newest = None if deferred - waiting else max(changed, default=None)
        requests = day_runs(ready, refresh, day_chain, newest=newest)
        skip = (
            "waiting for the landing's queued or running runs"
            if waiting
            else "no new or changed files in the landing zone"
        )
        return SensorResult(
            run_requests=requests, cursor=json.dumps(cursor), skip_reason=None if requests else skip
        )

    return landing_zone_sensor
