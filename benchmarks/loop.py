"""The closed loop under the real `dagster-daemon` with `make dev`'s settings (the project's
dagster.local.yaml: one run at a time, sensors and automation every 30 s, the retrain sensor every 60 s),
on the demo data.

    PYTHONPATH=. .venv/bin/python benchmarks/loop.py [--days 30]   # it drives tests/prod/services.py

Builds the demo (30 days ending yesterday at `make demo`'s sizes, or the `--days` before) into a temporary
state, starts the prediction API (`mlplatform serve`) and `dagster-daemon run` on it as processes, waits
until the daemon is idle, then lands a normal day and, once that is quiet, a drifted day
(`generate-data --next-day --drift-amount-shift 2 --drift-new-fraud-pattern --drift-new-merchant-category`).

Figures (JSON in benchmarks/results/loop.json), per landed day:
- landed_to_monitored_s: the file written -> the day's `monitoring_report` materialized;
- for the drifted day, landed_to_promoted_s and landed_to_champion_served_s (the API's /ready names it);
- runs: every run the day caused, with its queue + start-up time (created -> first step) and its own
  work (first step -> end); work_s is the sum of the runs' work, the in-process floor of the lead time;
- code_location_load_s next to import_dagster_s (fresh interpreters), and the steady landing-sensor tick
  over the demo's landing zone and over `--synthetic-files` files against a bare directory walk.
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    RunsFilter,
    build_sensor_context,
)

from mlplatform.settings import PARTITIONS_START_ENV_VAR, PROJECT_ROOT

# the demo here ends three days ago, so that the two days it lands next exist as partitions: set before
# any code location loads (this process's and the daemon's)
os.environ.setdefault(PARTITIONS_START_ENV_VAR, f"{date.today() - timedelta(days=60):%Y-%m-%d}")

from harness import fresh_interpreter_seconds

from mlplatform.automation import TRIGGER_TAG
from mlplatform.datagen import DriftConfig, generate
from mlplatform.definitions import landing_zone_sensor
from mlplatform.demo import demo_config, materialize_all
from mlplatform.profiles import build_resources
from mlplatform.resources import LandingZone
from mlplatform.resources.model_registry import CHAMPION
from mlplatform.training.spec import FRAUD_MODEL
from tests.prod.services import (
    local_loop,
    materialized_at,
    served_champion,
    wait_until,
)

RESULTS = Path(__file__).parent / "results" / "loop.json"
BIN = PROJECT_ROOT / ".venv" / "bin"
DRIFT = DriftConfig(amount_shift=2.0, new_fraud_pattern=True, new_merchant_category=True)
UNFINISHED = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
              DagsterRunStatus.STARTED]  # fmt: skip


def import_seconds(module: str, repeats: int = 3) -> float:
    """The best of `repeats` fresh interpreters importing `module`."""
    return round(min(fresh_interpreter_seconds(f"import {module}") for _ in range(repeats)), 2)


def steady_landing_tick(landing: Path, instance: DagsterInstance, repeats: int = 5) -> dict[str, float]:
    """A tick when nothing changed (the common case): the first tick builds the cursor, later ones
    compare against it. Against the baseline: listing and stat-ing the same files, nothing else."""
    zone = LandingZone(landing_dir=str(landing), quarantine_dir=str(landing.parent / "quarantine"))

    def tick(cursor):
        with build_sensor_context(instance=instance, cursor=cursor, resources={"landing_zone": zone}) as ctx:
            return landing_zone_sensor(ctx)

    first = tick(None)
    while first.run_requests:  # a new landing zone is taken in bursts of MAX_RUNS_PER_TICK
        first = tick(first.cursor)
    started = time.perf_counter()
    for _ in range(repeats):
        tick(first.cursor)
    tick_s = (time.perf_counter() - started) / repeats
    started = time.perf_counter()
    for _ in range(repeats):
        files = [p.stat().st_mtime for p in landing.rglob("*") if p.is_file()]
    walk_s = (time.perf_counter() - started) / repeats
    return {
        "files": len(files),
        "steady_tick_s": round(tick_s, 4),
        "baseline_walk_s": round(walk_s, 4),
        "ratio": round(tick_s / walk_s, 1),
    }


def synthetic_landing(root: Path, files: int) -> Path:
    """`files` small daily transaction files (one per day, going back from yesterday)."""
    yesterday = date.today() - timedelta(days=1)
    row = pd.DataFrame({"transaction_id": ["T1"], "amount": [1.0]})
    for n in range(files):
        folder = root / "transactions" / f"date={yesterday - timedelta(days=n):%Y-%m-%d}"
        folder.mkdir(parents=True)
        row.to_parquet(folder / "part-0.parquet", index=False)
    return root


def wait_until_idle(instance: DagsterInstance, quiet_s: float = 75, timeout: float = 1800) -> None:
    """No run unfinished, and none created, for `quiet_s` (over two ticks of every 30 s sensor)."""
    last_change = time.monotonic()
    seen = len(instance.get_runs())
    while time.monotonic() - last_change < quiet_s:
        if time.monotonic() - last_change > timeout:
            raise TimeoutError("the daemon kept launching runs")
        time.sleep(2)
        runs = len(instance.get_runs())
        if runs != seen or instance.get_runs(RunsFilter(statuses=UNFINISHED), limit=1):
            seen, last_change = runs, time.monotonic()


def runs_since(instance: DagsterInstance, since: float) -> list[dict]:
    """Every run created after `since` (epoch s): trigger, what it did, queue + start-up, own work."""
    runs = []
    for record in instance.get_run_records(RunsFilter(created_after=datetime.fromtimestamp(since, UTC))):
        run = record.dagster_run
        steps = [e.timestamp for e in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_START)]
        first_step = min(steps) if steps else record.end_time
        runs.append(
            {
                "created_after_landing_s": round(record.create_timestamp.timestamp() - since, 1),
                "job": run.job_name,
                "trigger": run.tags.get(TRIGGER_TAG)
                or run.tags.get("dagster/sensor_name")
                or ("retry" if "dagster/parent_run_id" in run.tags else "?"),
                "partition": run.tags.get("dagster/partition"),
                "assets": len(run.asset_selection or []),
                "status": run.status.value,
                "queue_and_startup_s": round(first_step - record.create_timestamp.timestamp(), 1),
                "work_s": round((record.end_time or first_step) - first_step, 1),
            }
        )
    return sorted(runs, key=lambda r: r["created_after_landing_s"])


def land_day(landing: Path, config, day: date, drift: DriftConfig | None = None) -> float:
    """Generate `day` into the landing zone; returns when the last file was written (epoch s)."""
    generate(replace(config, start_date=day, days=1, **({"drift": drift} if drift else {})), landing)
    return max(p.stat().st_mtime for p in landing.rglob(f"date={day}/*"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--synthetic-files", type=int, default=1_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        home = state / "dagster"
        home.mkdir(parents=True)
        config = demo_config(args.days, end=date.today() - timedelta(days=3))
        generate(config, state / "landing")
        with DagsterInstance.local_temp(str(home), {"telemetry": {"enabled": False}}) as instance:
            started = time.perf_counter()
            built = materialize_all(state, instance)
            build_s = time.perf_counter() - started
            assert not built.runs_failed, built.format()
        registry = build_resources(profile="local", state=state)["model_registry"]
        champion_before = registry.version_for(FRAUD_MODEL.name, CHAMPION)
        days: dict[str, dict] = {}
        with local_loop(state, Path(tmp) / "logs") as (instance, port, _):
            wait_until_idle(instance)
            normal_day = config.start_date + timedelta(days=config.days)
            for name, day, drift in (
                ("normal_day", normal_day, None),
                ("drifted_day", normal_day + timedelta(days=1), DRIFT),
            ):
                landed = land_day(state / "landing", config, day, drift)
                wait_until(
                    lambda day=day: materialized_at(instance, "monitoring_report", str(day)) is not None,
                    1800, f"{day} monitored", 1,
                )  # fmt: skip
                figures = {
                    "landed_to_monitored_s": round(
                        materialized_at(instance, "monitoring_report", str(day)) - landed, 1
                    )
                }
                if drift:
                    wait_until(
                        lambda: registry.version_for(FRAUD_MODEL.name, CHAMPION) != champion_before,
                        1800, "a new champion", 2,
                    )  # fmt: skip
                    promoted = time.time()
                    champion = registry.version_for(FRAUD_MODEL.name, CHAMPION)
                    wait_until(lambda c=champion: served_champion(port) == c, 120, "served", 0.2)
                    figures |= {
                        "landed_to_promoted_s": round(promoted - landed, 1),
                        "landed_to_champion_served_s": round(time.time() - landed, 1),
                    }
                wait_until_idle(instance)
                runs = runs_since(instance, landed)
                days[name] = {
                    **figures,
                    "runs": len(runs),
                    "work_s": round(sum(r["work_s"] for r in runs), 1),
                    "queue_and_startup_s": round(statistics.fmean(r["queue_and_startup_s"] for r in runs), 1),
                    "run_list": runs,
                }
        load = {"code_location_load_s": import_seconds("mlplatform.definitions"),
                "import_dagster_s": import_seconds("dagster")}  # fmt: skip
        results = {
            "data": {"days": args.days, "transactions_per_day": config.transactions_per_day},
            "settings": "dagster.local.yaml as shipped (max_concurrent_runs 1); sensors and automation 30 s, "
            "retrain sensor 60 s",
            "demo_build_s": round(build_s, 1),
            **days,
            **load,
            "landing_tick_demo": steady_landing_tick(state / "landing", instance),
            "landing_tick_synthetic": steady_landing_tick(
                synthetic_landing(Path(tmp) / "synthetic" / "landing", args.synthetic_files), instance
            ),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
        }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items()}, indent=2))


if __name__ == "__main__":
    main()
