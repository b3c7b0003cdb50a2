"""The closed loop on the demo data: lead time from a drifted file landing to the new champion serving,
and what a sensor tick costs.

    python benchmarks/loop.py [--days 30]

Builds the demo (30 days ending yesterday, `make demo`'s sizes) into a temporary state with a persistent
Dagster instance, starts the prediction API on it, then lands a drifted day (`generate-data --next-day
--drift-amount-shift 2 --drift-new-fraud-pattern --drift-new-merchant-category`) and ticks the sensors
and declarative automation in process (`LoopDriver`) until nothing more is requested.

Figures (JSON in benchmarks/results/loop.json):
- lead_time_work_s: file landed -> new champion answering /predict, counting only the work (runs and
  tick evaluations); under the daemon add one interval per hop: landing sensor 30 s, automation 30 s
  per round, retrain sensor up to 120 s (daemon_wait_bound_s);
- landed_to_promoted_s, promoted_to_serving_s, and the runs it took, by trigger;
- tick cost per sensor (mean/max over the run), the steady-state landing tick over the demo's landing
  zone, and over a synthetic landing zone of `--synthetic-files` files, against a bare directory walk
  of the same files (the baseline, measured in the same run).
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

import httpx
import pandas as pd
from dagster import DagsterInstance, build_sensor_context

from mlplatform.datagen import DriftConfig, generate
from mlplatform.definitions import build_definitions
from mlplatform.demo import demo_config, materialize_all
from mlplatform.ingestion.sensors import landing_zone_sensor
from mlplatform.localserver import api_in_thread
from mlplatform.loop_driver import LoopDriver
from mlplatform.profiles import build_resources
from mlplatform.resources import LandingZone
from mlplatform.resources.model_registry import CHAMPION
from mlplatform.serving.app import create_app
from mlplatform.training.fraud_model import MODEL_NAME

RESULTS = Path(__file__).parent / "results" / "loop.json"
DRIFT = DriftConfig(amount_shift=2.0, new_fraud_pattern=True, new_merchant_category=True)
DAEMON_INTERVALS_S = {"landing_zone_sensor": 30, "automation": 30, "retrain_sensor": 120}


def seconds(values: list[float]) -> dict[str, float]:
    return {
        "ticks": len(values),
        "mean_s": round(statistics.fmean(values), 3),
        "max_s": round(max(values), 3),
    }


def steady_landing_tick(landing: Path, instance: DagsterInstance, repeats: int = 5) -> dict[str, float]:
    """A tick when nothing changed (the common case): the first tick builds the cursor, later ones
    compare against it. Against the baseline: listing and stat-ing the same files, nothing else."""
    zone = LandingZone(landing_dir=str(landing), quarantine_dir=str(landing.parent / "quarantine"))

    def tick(cursor):
        with build_sensor_context(instance=instance, cursor=cursor, resources={"landing_zone": zone}) as ctx:
            return landing_zone_sensor(ctx)

    started = time.perf_counter()
    first = tick(None)
    first_s = time.perf_counter() - started
    burst_ticks = 1
    while first.run_requests:  # a new landing zone is taken in bursts of MAX_RUNS_PER_TICK
        first, burst_ticks = tick(first.cursor), burst_ticks + 1
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
        "first_tick_s": round(first_s, 4),
        "ticks_to_take_in_every_file": burst_ticks,
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--synthetic-files", type=int, default=1_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        (state / "dagster").mkdir(parents=True)
        config = demo_config(args.days)
        generate(config, state / "landing")
        with DagsterInstance.local_temp(
            str(state / "dagster"), {"telemetry": {"enabled": False}}
        ) as instance:
            started = time.perf_counter()
            built = materialize_all(state, instance)
            build_s = time.perf_counter() - started
            assert not built.runs_failed, built.format()
            resources = build_resources(profile="local", state=state)
            registry = resources["model_registry"]
            champion_before = registry.version_for(MODEL_NAME, CHAMPION)
            driver = LoopDriver(build_definitions(resources), instance)
            assert driver.tick() == 0, "the demo left work undone"
            driver.tick_seconds.clear()

            with (
                api_in_thread(create_app(resources, reload_seconds=1.0)) as url,
                httpx.Client(base_url=url, timeout=30) as api,
            ):
                next_day = config.start_date + timedelta(days=config.days)
                generate(replace(config, start_date=next_day, days=1, drift=DRIFT), state / "landing")
                landed_at = max(p.stat().st_mtime for p in (state / "landing").rglob(f"date={next_day}/*"))
                loop_started = time.perf_counter()
                rounds = driver.run_until_quiet(max_rounds=30)
                loop_s = time.perf_counter() - loop_started
                champion_after = registry.version_for(MODEL_NAME, CHAMPION)
                assert champion_after != champion_before, "the drifted day did not lead to a new champion"
                promoted = next(
                    e
                    for e in reversed(registry.audit_trail(MODEL_NAME))
                    if e["action"] == "promote" and str(e["version"]) == champion_after
                )
                promoted_at = datetime.fromisoformat(promoted["at"]).timestamp()
                while api.get("/ready").json().get("served_versions", {}).get("champion") != champion_after:
                    time.sleep(0.05)
                serving_at = time.time()

            hops = {
                trigger: sum(run.trigger == trigger for run in driver.runs) for trigger in DAEMON_INTERVALS_S
            }
            results = {
                "data": {"days": args.days, "transactions_per_day": config.transactions_per_day},
                "demo_build_s": round(build_s, 1),
                "lead_time_work_s": round(serving_at - landed_at, 1),
                "landed_to_promoted_s": round(promoted_at - landed_at, 1),
                "promoted_to_serving_s": round(serving_at - promoted_at, 2),
                "loop_s": round(loop_s, 1),
                "rounds": rounds,
                "runs_by_trigger": hops,
                "runs": [
                    {"trigger": r.trigger, "what": r.label, "s": round(r.seconds, 1)} for r in driver.runs
                ],
                "daemon_wait_bound_s": DAEMON_INTERVALS_S["landing_zone_sensor"]
                + DAEMON_INTERVALS_S["automation"] * rounds
                + DAEMON_INTERVALS_S["retrain_sensor"],
                "tick_cost": {name: seconds(values) for name, values in driver.tick_seconds.items()},
                "landing_tick_demo": steady_landing_tick(state / "landing", instance),
                "landing_tick_synthetic": steady_landing_tick(
                    synthetic_landing(Path(tmp) / "synthetic" / "landing", args.synthetic_files), instance
                ),
                "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "cpus": os.cpu_count(),
            }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
