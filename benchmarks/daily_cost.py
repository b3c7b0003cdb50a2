"""Daily cost against the history's length: landing one day after 30 days and after 365 days.

    PYTHONPATH=. .venv/bin/python benchmarks/daily_cost.py [--short 30 --long 365 \
        --transactions-per-day 3000 --customers 2000 --merchants 300]

For each history length it builds a state the way `make demo` does (every landed day ingested through the
`landed_day` job, then `refresh_features_and_model`: marts, Feast, training set, champion; the days are not
batch-scored, monitoring only needs the landed day's own scores), then lands the next days one by one
(`--landed-days`, the generator's next days with the labels reported on them) and runs what the landing
sensor asks for each: one `landed_day` run, in process, on the state's Dagster instance. Both histories
end on the same calendar days (the landed days are the same weekdays, so the same volume), and land
them in turns (short, long, short, long), so that a busier spell of a shared machine weighs on both.
Built states are kept in `--state-root` and reused (copied) by the next run with the same sizes.

Figures (JSON in benchmarks/results/daily_cost.json), per history and landed day, the seconds of each
step of the run (STEP_START -> STEP_SUCCESS in the run's events: ingestion of the day's partitions, the
dbt build, the two online materializations, batch scoring, drift, performance, report) and, per stage,
the long/short ratio of the best landed day: 1.0 is a cost that does not grow with history; the same for
dbt's own time per model and for its tests (run_results.json: the dbt step without dbt's start-up). Next to
them, the bare engine in the same run on the same state: DuckDB loading the day's transactions file, and
computing the day's 1/7/30-day customer windows straight from the staged transactions (the work a day's
dbt build cannot avoid).
"""

import argparse
import json
import os
import shutil
import tempfile
import time
from contextlib import ExitStack
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path


def arguments() -> argparse.Namespace:
    from harness import data_arguments

    parser = argparse.ArgumentParser()
    data_arguments(parser)
    parser.set_defaults(transactions_per_day=3_000, customers=2_000, merchants=300)
    parser.add_argument("--short", type=int, default=30, help="Days of the short history.")
    parser.add_argument("--long", type=int, default=365, help="Days of the long history.")
    parser.add_argument("--landed-days", type=int, default=2, help="Days landed after each history.")
    parser.add_argument(
        "--state-root",
        default=None,
        help="Keep the states here (default: removed); built states found there are reused (copied).",
    )
    return parser.parse_args()


ARGS = arguments()
# The landed days end yesterday (today's partition does not exist yet); the partitions must start with the
# long history, before any code location loads
LAST_LANDED = date.today() - timedelta(days=1)
HISTORY_END = LAST_LANDED - timedelta(days=ARGS.landed_days)
os.environ["MLPLATFORM_PARTITIONS_START"] = f"{HISTORY_END - timedelta(days=ARGS.long - 1):%Y-%m-%d}"

import duckdb  # noqa: E402
from dagster import DagsterEventType, DagsterInstance, build_sensor_context  # noqa: E402
from harness import PeakRSS  # noqa: E402

from mlplatform.automation import TRIGGER_TAG  # noqa: E402
from mlplatform.datagen import GeneratorConfig, generate  # noqa: E402
from mlplatform.demo import ingestion_runs, quiet_run  # noqa: E402
from mlplatform.profiles import build_resources  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "daily_cost.json"
RUN_KEY_TAG = "dagster/run_key"


def history_config(args: argparse.Namespace, days: int, end: date) -> GeneratorConfig:
    """`days` days of history ending on `end`, the data arguments' volumes (one seed: same population)."""
    return GeneratorConfig(
        start_date=end - timedelta(days=days - 1),
        days=days,
        customers=args.customers,
        merchants=args.merchants,
        transactions_per_day=args.transactions_per_day,
    )


def build_history(state: Path, config: GeneratorConfig, instance: DagsterInstance) -> dict[str, float]:
    """The state `make demo` builds, quicker: the snapshots and the first day through the `landed_day` job,
    the other days loaded by the ingestion's own loader without its checks (365 days of Great Expectations
    runs would take the benchmark's whole budget; the landed days measured go through all of it), then
    `refresh_features_and_model` (marts, Feast, training set, champion). Days are not batch-scored: the
    landed day's monitoring only needs its own scores."""
    from mlplatform.definitions import build_definitions

    generate(config, state / "landing")
    resources = build_resources(profile="local", state=state)
    defs = build_definitions(resources)
    landed_day = defs.resolve_job_def("landed_day")
    started = time.perf_counter()
    runs = ingestion_runs(resources["landing_zone"])
    for _, selection, partition_key in runs[:2]:
        keys = [key for asset in selection for key in asset.keys]
        result = quiet_run(landed_day, instance, keys, partition_key, {TRIGGER_TAG: "benchmark"})
        assert result.success, f"ingesting {partition_key} failed"
    for _, _, day in runs[2:]:
        load_unchecked(resources["landing_zone"], resources["warehouse"], day)
    ingested = time.perf_counter() - started
    started = time.perf_counter()
    job = defs.resolve_job_def("refresh_features_and_model")
    result = quiet_run(job, instance, tags={TRIGGER_TAG: "benchmark"})
    assert result.success, "refresh_features_and_model failed"
    refreshed = time.perf_counter() - started
    return {"ingest_s": round(ingested, 1), "refresh_features_and_model_s": round(refreshed, 1)}


def load_unchecked(landing, warehouse, day: str) -> None:
    """The day's landed files into the raw tables the way ingestion loads them, without validating them."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from mlplatform.ingestion.ingest import warehouse_rows
    from mlplatform.ingestion.validation import read_landing_file
    from mlplatform.schemas import RAW_TABLES

    for name in ("transactions", "labels"):
        table = RAW_TABLES[name]
        files = landing.files(name, day)
        if files:
            frames = [SimpleNamespace(path=p, frame=read_landing_file(p, table)) for p in files]
            loaded_at = datetime.now(UTC).replace(tzinfo=None)
            rows = warehouse_rows(table, day, frames, loaded_at)  # type: ignore[arg-type]
            warehouse.replace_raw_rows(table, rows, date.fromisoformat(day))


def raw_rows(warehouse) -> dict[str, int]:
    counts = warehouse.read_sql(
        "select (select count(*) from raw.transactions) as transactions, "
        "(select count(*) from raw.labels) as labels, "
        "(select count(*) from marts.customer_features) as customer_features_rows"
    )
    return {k: int(v) for k, v in counts.iloc[0].items()}


def step_seconds(instance: DagsterInstance, run_id: str) -> dict[str, float]:
    """Each step's own time in the run: its STEP_START to its STEP_SUCCESS (or failure)."""
    started: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for event in instance.all_logs(run_id):
        kind = event.dagster_event_type
        if kind == DagsterEventType.STEP_START:
            started[event.step_key] = event.timestamp
        elif kind in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            seconds[event.step_key] = round(event.timestamp - started[event.step_key], 3)
    return seconds


def land_day(state: Path, config: GeneratorConfig, day: date, instance: DagsterInstance, cursor) -> tuple:
    """Land `day` (the generator's next day), ask the landing sensor, run what it requests in process."""
    from mlplatform.definitions import build_definitions

    resources = build_resources(profile="local", state=state)
    defs = build_definitions(resources)
    sensor = defs.resolve_sensor_def("landing_zone_sensor")

    def tick(cursor):
        with build_sensor_context(
            instance=instance, cursor=cursor, definitions=defs, resources=defs.resources
        ) as ctx:
            return sensor(ctx)

    if cursor is None:  # the first ticks read every landed file (50 partitions a tick): before the day lands
        primed = tick(None)
        while primed.run_requests:
            primed = tick(primed.cursor)
        cursor = primed.cursor
    generate(replace(config, start_date=day, days=1), state / "landing")
    result = tick(cursor)
    (request,) = result.run_requests
    assert request.partition_key == day.isoformat(), request
    job = defs.resolve_job_def(sensor.job_name)
    started, started_at = time.perf_counter(), time.time()
    with PeakRSS() as memory:
        run = job.execute_in_process(
            asset_selection=list(request.asset_selection),
            partition_key=request.partition_key,
            instance=instance,
            tags={**request.tags, RUN_KEY_TAG: request.run_key},
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
    total = time.perf_counter() - started
    assert run.success, f"the landed_day run of {day} failed"
    figures = {
        "day": day.isoformat(),
        "run_s": round(total, 2),
        "steps_s": step_seconds(instance, run.run_id),
        "dbt_nodes_s": dbt_node_seconds(started_at),
        "peak_rss_mb": round(memory.peak_mb),
        "bare": bare_engine(state, resources["warehouse"].path, day),
    }
    return figures, result.cursor


def dbt_node_seconds(since: float) -> dict[str, float]:
    """dbt's own time in the run's `dbt build` (its run_results.json), without dbt's start-up and parsing:
    each model, and all tests together. The step's wall time is this plus a fixed start-up (~7 s here)."""
    from mlplatform.settings import DBT_PROJECT_DIR

    runs = [p for p in (DBT_PROJECT_DIR / "target").glob("*/run_results.json") if p.stat().st_mtime > since]
    results = json.loads(max(runs, key=lambda p: p.stat().st_mtime).read_text())["results"]
    seconds = {
        r["unique_id"].split(".")[-1]: round(r["execution_time"], 3)
        for r in results
        if r["unique_id"].startswith("model.")
    }
    tests = [r["execution_time"] for r in results if r["unique_id"].startswith("test.")]
    return {**seconds, "all models": round(sum(seconds.values()), 3), "all tests": round(sum(tests), 3)}


def bare_engine(state: Path, warehouse_path: str, day: date) -> dict[str, float]:
    """The engine alone on the same state: load the day's transactions file into a table; the day's
    customer windows over the staged transactions of the last 30 days (no spine, no orchestration)."""
    files = f"{state}/landing/transactions/date={day}/*.parquet"
    with duckdb.connect() as con:
        started = time.perf_counter()
        con.execute(f"create table day_rows as select * from read_parquet('{files}')")
        load_s = time.perf_counter() - started
    with duckdb.connect(warehouse_path, read_only=True) as con:
        started = time.perf_counter()
        con.execute(
            "select customer_id, "
            + ", ".join(
                f"count(*) filter (where event_date > date '{day}' - {n}) as txn_count_{n}d, "
                f"sum(amount) filter (where event_date > date '{day}' - {n}) as amount_sum_{n}d, "
                f"max(amount) filter (where event_date > date '{day}' - {n}) as amount_max_{n}d"
                for n in (1, 7, 30)
            )
            + f" from staging.stg_transactions where event_date between date '{day}' - 29 and date '{day}' "
            "group by customer_id"
        ).fetchall()
        windows_s = time.perf_counter() - started
    return {"load_day_file_s": round(load_s, 4), "day_customer_windows_s": round(windows_s, 4)}


def stage_ratios(short: list[dict], long: list[dict]) -> dict[str, dict[str, float]]:
    """Per step: the best (smallest) landed day of each history and long / short."""

    def best(days: list[dict], step: str) -> float:
        return min(d["steps_s"].get(step, float("nan")) for d in days)

    steps = list(dict.fromkeys(s for d in short for s in d["steps_s"]))
    ratios = {step: {"short_s": best(short, step), "long_s": best(long, step)} for step in steps}
    for node in short[0]["dbt_nodes_s"]:
        ratios[f"dbt: {node}"] = {
            "short_s": min(d["dbt_nodes_s"].get(node, float("nan")) for d in short),
            "long_s": min(d["dbt_nodes_s"].get(node, float("nan")) for d in long),
        }
    ratios["run"] = {"short_s": min(d["run_s"] for d in short), "long_s": min(d["run_s"] for d in long)}
    for figures in ratios.values():
        figures["ratio"] = round(figures["long_s"] / figures["short_s"], 2) if figures["short_s"] else None
    return ratios


def main() -> None:
    args = ARGS
    root = Path(args.state_root or tempfile.mkdtemp(prefix="daily-cost-"))
    sizes = {k: v for k, v in vars(args).items() if k not in ("days", "state_root")}  # --days: unused here
    report: dict = {"sizes": sizes, "histories": {}}
    overrides = {"telemetry": {"enabled": False}}
    histories = {"short": args.short, "long": args.long}
    configs = {label: history_config(args, days, HISTORY_END) for label, days in histories.items()}
    for label, config in configs.items():
        built, state = root / f"{label}-built", root / label
        if not (built / "build.json").exists():
            shutil.rmtree(built, ignore_errors=True)
            (built / "dagster").mkdir(parents=True)
            with DagsterInstance.local_temp(str(built / "dagster"), overrides=overrides) as instance:
                (built / "build.json").write_text(json.dumps(build_history(built, config, instance)))
        build = json.loads((built / "build.json").read_text())
        build["raw_rows"] = raw_rows(build_resources(profile="local", state=built)["warehouse"])
        print(label, "built", build, flush=True)
        report["histories"][label] = {"days": histories[label], "build": build, "landed": []}
        shutil.rmtree(state, ignore_errors=True)
        shutil.copytree(built, state)  # the days land in a copy: a built state can be measured again
    # the histories take turns, day by day: a machine busier for a while weighs on both alike
    with ExitStack() as stack:
        instances = {
            label: stack.enter_context(
                DagsterInstance.local_temp(str(root / label / "dagster"), overrides=overrides)
            )
            for label in configs
        }
        cursors: dict = dict.fromkeys(configs)
        for n in range(1, args.landed_days + 1):
            for label, config in configs.items():
                day = HISTORY_END + timedelta(days=n)
                figures, cursors[label] = land_day(
                    root / label, config, day, instances[label], cursors[label]
                )
                report["histories"][label]["landed"].append(figures)
                print(label, json.dumps(figures), flush=True)
    short, long = (report["histories"][h]["landed"] for h in ("short", "long"))
    report["stages"] = stage_ratios(short, long)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for step, figures in report["stages"].items():
        print(f"{step:<40} {figures}")
    if not args.state_root:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
