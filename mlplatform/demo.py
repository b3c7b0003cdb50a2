"""`make demo`: generate sample data and materialize the whole asset graph on the local profile.

Runs go through a real Dagster instance (the one under `$DAGSTER_HOME`), so the UI opened by
`make dev` shows them afterwards: one run for the snapshots, one per landed day, one for the rest up to
the champion model, one scoring every landed day, one monitoring run per day of the last week.
"""

import logging
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from dagster import AssetKey, DagsterInstance, JobDefinition

from mlplatform.automation import TRIGGER_TAG
from mlplatform.checks import NOT_JUDGED_REASON, was_judged
from mlplatform.datagen import GeneratorConfig, generate
from mlplatform.ingestion.assets import raw_customers, raw_labels, raw_merchants, raw_transactions
from mlplatform.profiles import build_resources
from mlplatform.resources import LandingZone, Warehouse
from mlplatform.resources.model_registry import CHAMPION, ModelRegistry
from mlplatform.settings import CODE_LOCATION, DEFINITIONS_MODULE, PROJECT_ROOT
from mlplatform.training.spec import FRAUD_MODEL

if TYPE_CHECKING:
    from dagster._core.remote_origin import RemoteJobOrigin

MONITORED_DAYS = 7  # the demo monitors its last week (the UI's backfill button does the rest)


def partition_range(first: str, last: str) -> dict[str, str]:
    """Run tags that make one run cover partitions `first`..`last`."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def ingestion_runs(landing: LandingZone) -> list[tuple[str, list, str | None]]:
    """(label, assets, partition) of the runs that ingest everything landed: snapshots, then each day."""
    runs = [("snapshots", [raw_customers, raw_merchants], None)]
    for day in sorted({*landing.landed_days("transactions"), *landing.landed_days("labels")}):
        tables = ((raw_transactions, "transactions"), (raw_labels, "labels"))
        runs.append((day, [a for a, table in tables if landing.files(table, day)], day))
    return runs


@dataclass
class DemoSummary:
    state: Path
    runs_succeeded: int = 0
    runs_failed: list[str] = field(default_factory=list)
    assets_materialized: set[str] = field(default_factory=set)
    checks_passed: int = 0
    checks_failed: list[str] = field(default_factory=list)
    # (check, reason): nothing to judge, said so, never counted as passed
    checks_not_judged: list[tuple[str, str]] = field(default_factory=list)
    signals: list[str] = field(default_factory=list)  # monitoring checks that fired: findings, not faults
    table_rows: dict[str, int] = field(default_factory=dict)
    monitoring: set[AssetKey] = field(default_factory=set, repr=False)  # the assets whose checks are signals

    def record(self, label: str, result) -> None:
        if result.success:
            self.runs_succeeded += 1
        else:
            self.runs_failed.append(label)
        for event in result.get_asset_materialization_events():
            self.assets_materialized.add(event.asset_key.to_user_string())
        for evaluation in result.get_asset_check_evaluations():
            name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name} ({label})"
            if evaluation.passed:
                self.checks_passed += 1
            elif not was_judged(evaluation.metadata):
                check = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
                self.checks_not_judged.append((check, evaluation.metadata[NOT_JUDGED_REASON].value))
            elif evaluation.asset_key in self.monitoring:  # one line per check and severity
                check = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
                self.signals.append(f"{check} {evaluation.severity.value}")
            else:
                self.checks_failed.append(name)

    def tables_by_schema(self) -> dict[str, list[str]]:
        """`table rows` per schema, the monitoring tables left out (the signals above say what they hold)."""
        by_schema: dict[str, list[str]] = {}
        for table, rows in self.table_rows.items():
            schema, name = table.split(".", 1)
            if schema != "monitoring":
                by_schema.setdefault(schema, []).append(f"{name} {rows:,}")
        return by_schema

    def format(self) -> str:
        assets = ", ".join(sorted(self.assets_materialized))
        lines = [
            f"runs: {self.runs_succeeded} succeeded, {len(self.runs_failed)} failed"
            + (f": {', '.join(self.runs_failed)}" if self.runs_failed else ""),
            f"assets materialized: {len(self.assets_materialized)} ({assets})",
            f"checks: {self.checks_passed} passed, {len(self.checks_failed)} failed, "
            f"{len(self.checks_not_judged)} not judged (nothing to judge yet)",
            *(f"  failed: {check}" for check in self.checks_failed),
            *(
                f"  not judged: {check} x{n} (e.g. {dict(self.checks_not_judged)[check]})"
                for check, n in Counter(check for check, _ in self.checks_not_judged).items()
            ),
            f"monitoring signals (also sent to the alert sink): {len(self.signals)}",
            *(f"  {signal} x{n}" for signal, n in Counter(self.signals).items()),
            "rows per table:",
            *(f"  {schema}: {', '.join(tables)}" for schema, tables in self.tables_by_schema().items()),
            f"state: {self.state} "
            "(landing/, quarantine/, warehouse.duckdb, dagster/, reports/<model>/index.html)",
        ]
        return "\n".join(lines)


@dataclass
class Progress:
    """The demo's terminal output: a line per stage with the elapsed time; on a terminal, the step in
    progress updates in place. While it is on, runs print nothing: their logs (dbt's and Feast's output
    included) are in the run's logs in the UI, and the summary reports failures."""

    live: bool = field(default_factory=lambda: sys.stdout.isatty())
    started: float = field(default_factory=time.perf_counter)

    def step(self, text: str) -> None:
        if self.live:
            print(f"\r\033[K  {text} ...", end="", flush=True)

    def done(self, text: str) -> None:
        elapsed = time.perf_counter() - self.started
        clear = "\r\033[K" if self.live else ""  # the step line it replaces
        print(f"{clear}[{elapsed:4.0f}s] {text}", flush=True)


@contextmanager
def silenced() -> Iterator[None]:
    """Steps' output away from the terminal (Dagster still captures it into the run's logs), and
    MLflow's notice that a python_model is pickled (it is, by design: `training/pyfunc.py`)."""
    mlflow_logger = logging.getLogger("mlflow")
    level = mlflow_logger.level
    mlflow_logger.setLevel(logging.ERROR)
    try:
        with open(os.devnull, "w") as nowhere, redirect_stdout(nowhere), redirect_stderr(nowhere):
            yield
    finally:
        mlflow_logger.setLevel(level)


def job_origin(job_name: str) -> "RemoteJobOrigin":
    """Where the code location `make dev` loads (workspace.yaml) finds the job."""
    from dagster._core.definitions.repository_definition.valid_definitions import SINGLETON_REPOSITORY_NAME
    from dagster._core.remote_origin import (
        ManagedGrpcPythonEnvCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    target = LoadableTargetOrigin(
        executable_path=sys.executable, module_name=DEFINITIONS_MODULE, working_directory=str(PROJECT_ROOT)
    )
    location = ManagedGrpcPythonEnvCodeLocationOrigin(target, CODE_LOCATION)
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, SINGLETON_REPOSITORY_NAME), job_name)


@contextmanager
def attributed_to_code_location(instance: DagsterInstance) -> Iterator[None]:
    """Runs executed in this process are recorded with the origin of the job in the code location, as if
    launched from the UI: the UI lists a run under its job (the job's page, the Overview timeline) only
    when it has that origin (dagster-io/dagster#17707), and can then re-execute it."""
    create_run_for_job = instance.create_run_for_job

    def with_origin(job_def: JobDefinition, **kwargs):
        kwargs["remote_job_origin"] = kwargs.get("remote_job_origin") or job_origin(job_def.name)
        return create_run_for_job(job_def, **kwargs)

    instance.create_run_for_job = with_origin
    try:
        yield
    finally:
        del instance.create_run_for_job  # the class's method again


def quiet_run(
    job: JobDefinition,
    instance: DagsterInstance,
    selection=None,
    partition_key=None,
    tags=None,
    log_level="WARNING",
    run_config: dict | None = None,
):
    """One in-process run of a named job (of the assets in `selection`, with their checks), logging from
    `log_level` up: the caller reports the outcome, and every event is still in the instance for the UI,
    under the job's name."""
    with attributed_to_code_location(instance):
        return job.execute_in_process(
            asset_selection=selection,
            partition_key=partition_key,
            instance=instance,
            raise_on_error=False,
            tags=tags,
            run_config={**(run_config or {}), "loggers": {"console": {"config": {"log_level": log_level}}}},
        )


def materialize_all(
    state: Path,
    instance: DagsterInstance,
    monitored_days: int = MONITORED_DAYS,
    progress: Progress | None = None,
) -> DemoSummary:
    """Ingest every landed snapshot and day, build everything downstream, monitor the last days.

    With `progress`, a line per stage and nothing from the runs themselves (see `Progress`)."""
    from mlplatform.definitions import build_definitions  # the whole graph, bound to `resources`

    resources = build_resources(state=state)
    defs = build_definitions(resources)
    landing: LandingZone = resources["landing_zone"]
    graph = defs.resolve_asset_graph()
    monitoring = {key for key in graph.get_all_asset_keys() if graph.get(key).group_name == "monitoring"}
    summary = DemoSummary(state=state, monitoring=monitoring)

    def run(
        label: str, job: str, selection=None, partition_key: str | None = None, tags: dict | None = None
    ) -> None:
        """A run of the named `job`, of `selection` (asset definitions) or all of it."""
        tags = {TRIGGER_TAG: "demo", **(tags or {})}
        keys = [key for asset in selection for key in asset.keys] if selection else None
        if progress is not None:
            progress.step(label)
        with silenced() if progress is not None else nullcontext():
            result = quiet_run(
                defs.resolve_job_def(job),
                instance,
                keys,
                partition_key,
                tags,
                "WARNING" if progress is None else "CRITICAL",  # with progress, the summary reports
            )
        summary.record(label, result)

    def done(text: str) -> None:
        if progress is not None:
            failed = f", {len(summary.runs_failed)} run(s) failed so far" if summary.runs_failed else ""
            progress.done(text + failed)

    ingestion = ingestion_runs(landing)
    for n, (label, selection, partition_key) in enumerate(ingestion, start=1):
        run(f"ingesting {label} ({n}/{len(ingestion)})", "landed_day", selection, partition_key)
    done(f"ingested the snapshots and {len(ingestion) - 1} days, validated by Great Expectations")
    run(
        "building the marts (dbt), the feature store, the training set and the model",
        "refresh_features_and_model",
    )
    registry: ModelRegistry = resources["model_registry"]
    champion = registry.version_for(FRAUD_MODEL.name, CHAMPION)
    done(
        "built the marts, the online store, the training set and the model: "
        + (f"champion version {champion}" if champion else "no champion (the gates refused the model)")
    )
    days = sorted(landing.landed_days("transactions"))
    if days:  # every landed day in one run, as a backfill does (the asset has a single-run policy)
        run("scoring every landed day", "batch_scoring", tags=partition_range(days[0], days[-1]))
        done(f"scored {len(days)} days in batch")
    for day in days[-monitored_days:]:
        run(f"monitoring {day}", "monitor_day", partition_key=day)
    done(f"monitored the last {len(days[-monitored_days:])} days (drift, performance, report)")
    summary.table_rows = table_row_counts(resources["warehouse"])
    return summary


def table_row_counts(warehouse: Warehouse) -> dict[str, int]:
    tables = warehouse.read_sql(
        "select table_schema, table_name from information_schema.tables "
        "where table_schema in ('raw', 'marts', 'training', 'inference', 'monitoring') "
        "order by table_schema, table_name"
    )
    return {
        f"{s}.{t}": int(warehouse.read_sql(f"select count(*) as n from {s}.{t}")["n"].iloc[0])
        for s, t in tables.itertuples(index=False)
    }


def demo_config(days: int, end: date | None = None) -> GeneratorConfig:
    """The demo's data: `days` days ending yesterday (UTC), so schedules and sensors act on live dates."""
    end = end or date.today() - timedelta(days=1)
    return GeneratorConfig(start_date=end - timedelta(days=days - 1), days=days)


def run_demo(state: Path, config: GeneratorConfig, instance: DagsterInstance) -> DemoSummary:
    """Fresh landing zone and warehouse, same seed: a re-run gives the same tables."""
    for folder in ("landing", "quarantine"):
        shutil.rmtree(state / folder, ignore_errors=True)
    (state / "warehouse.duckdb").unlink(missing_ok=True)
    progress = Progress()
    generated = generate(config, state / "landing")
    progress.done(
        f"generated {len(generated.days)} days: "
        + ", ".join(f"{rows:,} {table}" for table, rows in generated.rows.items())
    )
    return materialize_all(state, instance, progress=progress)
