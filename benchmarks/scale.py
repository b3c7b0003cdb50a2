"""A year of transactions through the whole platform on this machine, each stage against the bare engine.

    PYTHONPATH=. .venv/bin/python benchmarks/scale.py --days 365 --transactions-per-day 27400 \
        --customers 200000 --merchants 5000 [--state DIR [--resume]] [--ingest-minutes 35]

The issue's requirement: about 10M transactions (a year at ~27k a day) generated, the whole graph built,
a retraining and a day's batch scoring, with peak RSS under 8 GB and, per stage, the wall time and the
bare engine's time on the same data in the same run. The data ends yesterday (the daily partitions end
today). Every stage runs in process on one Dagster instance in the state directory, through the named
jobs of `build_definitions` (as `make demo` runs them), one run per stage so each has its own peak RSS
(this process and its children: dbt runs as a subprocess):
- generate: the generator writing the landing zone; rows/s (no engine to compare it with);
- ingest: the snapshots and every day through the `landed_day` job (read, Great Expectations, load), vs
  DuckDB loading the same files with `read_parquet`; days left when `--ingest-minutes` have passed are
  loaded by the ingestion's loader without checks (as daily_cost.py builds its history), and said so;
- dbt: `dbt build` (models and tests), with dbt's own time per model (run_results.json: a model's time
  includes its post-hooks, the feature marts' parquet export for Feast), vs DuckDB alone running the
  heaviest model's compiled SELECT into a table, in a process of its own;
- feast: `feast apply`, then each view's first online materialization with its checks, vs DuckDB picking
  each entity's newest mart row and SQLite storing them;
- training_set: Feast point-in-time retrieval of every labelled transaction (the asset), vs the bare
  DuckDB ASOF join of features.py (the on-demand view's columns in SQL);
- fraud_model: fit, MLflow, five blocking gates; vs scikit-learn fitting the same rows; champion: the
  promotion (no bare counterpart). Only fraud_model is trained (merchant_risk's chain is not run);
- batch_scoring: fraud_model's `batch_predictions` of the last day, vs the bare ASOF join of the day's
  transactions plus `predict_proba` of the bare fit.
The last three baselines run in this process after every platform stage (memory they leave behind must
not count against a platform stage); their peak RSS is reported apart from the platform's. Each stage's
figures are saved in <state>/scale.json as it ends: `--resume` goes on from there after a crash. At the
end, the report replaces the record in benchmarks/results/scale.json (the year at 10M), or with `--label`
goes under its `runs` beside it: any other size, or a check of a change, keeps the record.
"""

import argparse
import gc
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace


def arguments() -> argparse.Namespace:
    from harness import data_arguments

    parser = argparse.ArgumentParser()
    data_arguments(parser, days=365)
    parser.set_defaults(transactions_per_day=27_400, customers=200_000, merchants=5_000)
    parser.add_argument("--state", default=None, help="State directory (default: a new one under /tmp).")
    parser.add_argument(
        "--ingest-minutes",
        type=float,
        default=35.0,
        help="Days still to ingest after this long are loaded without checks (daily_cost.py's loader).",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="Go on in --state from the stages its scale.json records (after a crash or a kill).",
    )
    parser.add_argument(
        "--label",
        default=None,
        help="Store the figures under runs.<label> of results/scale.json, beside the year's record "
        "(for any other size or a check), instead of replacing that record.",
    )
    return parser.parse_args()


ARGS = arguments()
# the data ends yesterday: the partitions must start with it before any code location loads
LAST_DAY = date.today() - timedelta(days=1)
FIRST_DAY = LAST_DAY - timedelta(days=ARGS.days - 1)
os.environ["MLPLATFORM_PARTITIONS_START"] = FIRST_DAY.isoformat()
os.environ["FEAST_USAGE"] = "False"

import duckdb  # noqa: E402
import psutil  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from dagster import DagsterInstance  # noqa: E402
from features import STORED_VIEWS, bare_asof  # noqa: E402
from harness import PeakRSS, generator_config, keep_run, timed  # noqa: E402

from mlplatform.automation import TRIGGER_TAG  # noqa: E402
from mlplatform.datagen import generate  # noqa: E402
from mlplatform.definitions import build_definitions, models  # noqa: E402
from mlplatform.demo import ingestion_runs, quiet_run  # noqa: E402
from mlplatform.features.assets import feast_registry, online_feature_assets  # noqa: E402
from mlplatform.ingestion.ingest import warehouse_rows  # noqa: E402
from mlplatform.ingestion.validation import read_landing_file  # noqa: E402
from mlplatform.profiles import build_resources  # noqa: E402
from mlplatform.resources.warehouse import DUCKDB_MEMORY_LIMIT  # noqa: E402
from mlplatform.schemas import RAW_TABLES  # noqa: E402
from mlplatform.settings import DBT_PROJECT_DIR  # noqa: E402
from mlplatform.training.factory import training_rows  # noqa: E402
from mlplatform.training.model import (  # noqa: E402
    build_pipeline,
    feature_columns,
    labels_of,
    predict_scores,
    time_split,
)
from mlplatform.training.spec import FRAUD_MODEL  # noqa: E402
from mlplatform.transform import dbt_models  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "scale.json"
LIMIT_MB = 8 * 1024
FRAUD = models["fraud_model"]


def log(text: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {text}", flush=True)


def measured(name: str, fn):
    """`fn()` timed, with the peak RSS of this process and its children while it ran."""
    gc.collect()
    log(f"{name} ...")
    with PeakRSS() as rss:
        seconds, value = timed(fn)
    log(f"{name}: {seconds:.1f} s, peak RSS {rss.peak_mb:.0f} MB")
    return {"wall_s": round(seconds, 2), "peak_rss_mb": round(rss.peak_mb)}, value


def load_unchecked(landing, warehouse, day: str) -> None:
    """The day's files into the raw tables the way ingestion loads them, without validating them (as
    daily_cost.py loads its history)."""
    loaded_at = datetime.now(UTC).replace(tzinfo=None)
    for name in ("transactions", "labels"):
        table = RAW_TABLES[name]
        files = landing.files(name, day)
        if files:
            frames = [SimpleNamespace(path=p, frame=read_landing_file(p, table)) for p in files]
            rows = warehouse_rows(table, day, frames, loaded_at)  # type: ignore[arg-type]
            warehouse.replace_raw_rows(table, rows, date.fromisoformat(day))


def bare_load(files: dict[str, list[Path]], target: Path) -> float:
    """The floor of ingestion: DuckDB reading the same parquet files into tables, no checks, no Dagster."""
    started = time.perf_counter()
    with duckdb.connect(str(target)) as con:
        for table, paths in files.items():
            listed = ", ".join(f"'{p}'" for p in paths)
            con.execute(
                f"create table {table} as select * from read_parquet([{listed}], union_by_name = true)"
            )
    seconds = time.perf_counter() - started
    target.unlink()
    return seconds


def dbt_run_results(run_id: str) -> list[dict]:
    """dbt's run_results.json of the run's `dbt build` (dagster-dbt's target path names the run)."""
    (path,) = (DBT_PROJECT_DIR / "target").glob(f"*-{run_id[:7]}-*/run_results.json")
    return json.loads(path.read_text())["results"]


def bare_model(warehouse_path: str, memory_limit: str, compiled_sql: str) -> dict:
    """DuckDB alone running a model's compiled SELECT into a temporary table, on the built warehouse, in a
    process of its own (DuckDB keeps the memory it took after the connection closes), with the memory limit
    dbt's DuckDB has."""
    code = (
        "import sys, time, duckdb\n"
        "con = duckdb.connect(sys.argv[1], config={'memory_limit': sys.argv[2]})\n"
        "con.execute('set enable_progress_bar = false')\n"
        "started = time.perf_counter()\n"
        "con.execute('create temp table bare_model as ' + sys.stdin.read())\n"
        "print(time.perf_counter() - started)\n"
    )
    with PeakRSS() as rss:
        done = subprocess.run(
            [sys.executable, "-c", code, warehouse_path, memory_limit],
            input=compiled_sql,
            capture_output=True,
            text=True,
            check=True,
        )
    return {"s": float(done.stdout), "peak_rss_mb": round(rss.peak_mb)}


def dbt_figures(run_id: str, warehouse) -> dict:
    """dbt's own time per model and for its tests, and the bare engine on the heaviest model."""
    results = dbt_run_results(run_id)
    models_s = {
        r["unique_id"].split(".")[-1]: round(r["execution_time"], 2)
        for r in results
        if r["unique_id"].startswith("model.")
    }
    heaviest = max(
        (r for r in results if r["unique_id"].startswith("model.")), key=lambda r: r["execution_time"]
    )
    name = heaviest["unique_id"].split(".")[-1]
    bare = bare_model(warehouse.path, warehouse.memory_limit, heaviest["compiled_code"])
    return {
        "dbt_models_s": models_s,
        "dbt_all_models_s": round(sum(models_s.values()), 2),
        "dbt_all_tests_s": round(
            sum(r["execution_time"] for r in results if r["unique_id"].startswith("test.")), 2
        ),
        "heaviest_model": name,
        "bare_duckdb_heaviest_model_select_s": round(bare["s"], 2),
        "bare_duckdb_heaviest_model_peak_rss_mb": bare["peak_rss_mb"],
        "heaviest_model_ratio": round(models_s[name] / bare["s"], 2),
        "duckdb_memory_limit": warehouse.memory_limit,
    }


def ingest_stage(args, landing, warehouse, state: Path, run) -> dict:
    """Every partition through the `landed_day` job until `--ingest-minutes` have passed, the rest by the
    loader; against DuckDB loading the files the assets ingested."""
    runs = ingestion_runs(landing)

    def ingest() -> dict:
        checked, started = [], time.perf_counter()
        for n, (label, selection, partition_key) in enumerate(runs):
            if time.perf_counter() - started > args.ingest_minutes * 60:
                break
            run("landed_day", selection, partition_key)
            checked.append(label)
            if n % 20 == 0:
                log(f"  ingested {label} ({n + 1}/{len(runs)}), {time.perf_counter() - started:.0f} s")
        checked_s = time.perf_counter() - started
        for _, _, day in runs[len(checked) :]:
            load_unchecked(landing, warehouse, day)
        return {"checked": checked, "checked_s": checked_s}

    figures, ingested = measured("ingest", ingest)
    checked_days = [d for d in ingested["checked"] if d != "snapshots"]
    snapshots = {t: [landing.latest_snapshot_day(t)] for t in ("customers", "merchants")}
    files = {
        table: [p for day in snapshots.get(table, checked_days) for p in landing.files(table, day)]
        for table in ("customers", "merchants", "transactions", "labels")
    }
    checked_rows = sum(
        pq.ParquetFile(p).metadata.num_rows for t in ("transactions", "labels") for p in files[t]
    )
    bare_s = bare_load(files, state / "bare_load.duckdb")
    return {
        **figures,
        "days_through_assets": len(checked_days),
        "days_loaded_without_checks": len(runs) - len(ingested["checked"]),
        "assets_s": round(ingested["checked_s"], 2),
        "assets_rows_per_s": round(checked_rows / ingested["checked_s"]),
        "bare_duckdb_read_parquet_same_files_s": round(bare_s, 2),
        "ratio": round(ingested["checked_s"] / bare_s, 1),
    }


def bare_point_in_time(store, data_dir: Path):
    """features.py's bare ASOF join of the fraud model's views (the on-demand columns in SQL), for
    warehouse rows as the platform's retrieval takes them."""
    service = store.get_feature_service(FRAUD_MODEL.feature_service)
    views = {
        p.name_to_use(): [f.name for f in p.features]
        for p in service.feature_view_projections
        if p.name_to_use() in STORED_VIEWS
    }
    ttls = {view: store.get_feature_view(view).ttl for view in views}

    def asof(events):
        entity_rows = events.assign(event_ts=events["event_ts"].dt.tz_localize("UTC"))
        entity_rows["event_timestamp"] = entity_rows["event_ts"]
        return bare_asof(entity_rows, data_dir, views, ttls, on_demand=True, memory_limit=DUCKDB_MEMORY_LIMIT)

    return asof


def bare_online(data_dir: Path, target: Path) -> float:
    """The floor of online materialization: each entity's newest row of each view's parquet file, picked by
    DuckDB and written into a SQLite table."""
    started = time.perf_counter()
    with sqlite3.connect(target) as sqlite, duckdb.connect() as con:
        for mart, key in STORED_VIEWS.values():
            newest = con.sql(
                f"select * from read_parquet('{data_dir / mart}/**/*.parquet') "
                f"qualify row_number() over (partition by {key} order by feature_ts desc) = 1"
            ).fetchall()
            columns = len(newest[0])
            sqlite.execute(f"create table {mart} ({', '.join(f'c{i}' for i in range(columns))})")
            sqlite.executemany(f"insert into {mart} values ({', '.join('?' * columns)})", newest)
    seconds = time.perf_counter() - started
    target.unlink()
    return seconds


def main() -> None:
    args = ARGS
    state = Path(args.state or tempfile.mkdtemp(prefix="scale-", dir="/tmp"))
    partial = state / "scale.json"  # the stages done so far: what --resume keeps
    if args.resume:
        report = json.loads(partial.read_text())
        report["resumed_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    else:
        report = {
            "sizes": {k: v for k, v in vars(args).items() if k not in ("state", "resume")},
            "first_day": FIRST_DAY.isoformat(),
            "last_day": LAST_DAY.isoformat(),
            "cpu_cores": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "load_average_start": [round(x, 2) for x in os.getloadavg()],
            "state": str(state),
            "stages": {},
        }
    stages = report["stages"]
    (state / "dagster").mkdir(parents=True, exist_ok=True)

    def done(stage: str, figures: dict) -> None:
        stages[stage] = figures
        partial.write_text(json.dumps(report, indent=2) + "\n")
        log(f"{stage}: {figures}")

    log(f"state {state}, {FIRST_DAY} .. {LAST_DAY}, stages done: {list(stages)}")
    if "generate" not in stages:
        figures, generated = measured(
            "generate",
            lambda: generate(replace(generator_config(args), start_date=FIRST_DAY), state / "landing"),
        )
        rows = generated.rows["transactions"] + generated.rows["labels"]
        done(
            "generate",
            {
                **figures,
                "rows": generated.rows,
                "rows_per_s": round(rows / figures["wall_s"]),
                "bare": "none: no engine does this work",
            },
        )

    resources = build_resources(profile="local", state=state)
    defs = build_definitions(resources)
    landing, warehouse = resources["landing_zone"], resources["warehouse"]
    overrides = {"telemetry": {"enabled": False}}
    with DagsterInstance.local_temp(str(state / "dagster"), overrides=overrides) as instance:

        def run(job: str, assets, partition_key: str | None = None):
            keys = [key for asset in assets for key in asset.keys]
            result = quiet_run(
                defs.resolve_job_def(job), instance, keys, partition_key, {TRIGGER_TAG: "benchmark"}
            )
            if not result.success:
                raise RuntimeError(f"the {job} run of {keys} ({partition_key}) failed: see the log above")
            return result

        if "ingest" not in stages:
            done("ingest", ingest_stage(args, landing, warehouse, state, run))
        if "dbt" not in stages:
            figures, result = measured("dbt", lambda: run("refresh_features_and_model", [dbt_models]))
            done("dbt", {**figures, **dbt_figures(result.run_id, warehouse)})
        if "feast" not in stages:
            figures, _ = measured(
                "feast", lambda: run("refresh_features_and_model", [feast_registry, *online_feature_assets])
            )
            bare_s = bare_online(state / "feast" / "data", state / "bare_online.sqlite")
            mart_rows = warehouse.read_sql(
                "select (select count(*) from marts.customer_features) as customer_features, "
                "(select count(*) from marts.merchant_features) as merchant_features"
            ).iloc[0]
            done(
                "feast",
                {
                    **figures,
                    "mart_rows": {k: int(v) for k, v in mart_rows.items()},
                    "bare_duckdb_newest_rows_into_sqlite_s": round(bare_s, 2),
                    "ratio": round(figures["wall_s"] / bare_s, 1),
                },
            )
        # the platform's stages first, their baselines after them: memory a baseline leaves in this
        # process must not count against a platform stage
        for stage, asset in (
            ("training_set", FRAUD.training_set),
            ("fraud_model", FRAUD.candidate),
            ("champion", FRAUD.champion),
        ):
            if stage not in stages:
                figures, _ = measured(stage, lambda asset=asset: run("refresh_features_and_model", [asset]))
                done(stage, figures)
        day = LAST_DAY.isoformat()
        if "batch_scoring" not in stages:
            figures, _ = measured("batch_scoring", lambda: run("batch_scoring", [FRAUD.batch], day))
            done("batch_scoring", {**figures, "day": day})

    registry = resources["model_registry"]
    champion = registry.version_for("fraud_model", "champion")
    metrics = registry.client().get_run(registry.client().get_model_version("fraud_model", champion).run_id)
    stages["champion"] |= {"version": champion, "bare": "none: a registry alias"}
    stages["fraud_model"] |= {
        "fit_inside_asset_s": round(metrics.data.metrics["train_seconds"], 1),
        "roc_auc": round(metrics.data.metrics["roc_auc"], 4),
        "pr_auc": round(metrics.data.metrics["pr_auc"], 4),
    }
    asof = bare_point_in_time(resources["feature_store"].store(), state / "feast" / "data")

    def bare_training_set() -> dict:
        labelled = warehouse.read_large("select * from marts.training_labels").drop(
            columns=["home_country", "category"]
        )
        bare, _ = measured("training_set bare ASOF", lambda: asof(labelled))
        return {
            "labelled_rows": len(labelled),
            "bare_asof_s": bare["wall_s"],
            "bare_asof_peak_rss_mb": bare["peak_rss_mb"],
            "ratio": round(stages["training_set"]["wall_s"] / bare["wall_s"], 1),
        }

    done("training_set", {**stages["training_set"], **bare_training_set()})

    def bare_fit() -> dict:
        """scikit-learn's own `Pipeline.fit` on the rows the asset fits on (read the same way)."""
        train, _ = time_split(FRAUD_MODEL, training_rows(warehouse, FRAUD_MODEL))
        inputs = feature_columns(FRAUD_MODEL, train.columns)
        pipeline = build_pipeline(FRAUD_MODEL, train.columns)
        bare, _ = measured(
            "fraud_model bare fit", lambda: pipeline.fit(train[inputs], labels_of(FRAUD_MODEL, train))
        )
        return {
            "train_rows": len(train),
            "bare_fit_s": bare["wall_s"],
            "bare_fit_peak_rss_mb": bare["peak_rss_mb"],
            "ratio": round(stages["fraud_model"]["wall_s"] / bare["wall_s"], 1),
        }

    pipeline = registry.load_sklearn_model("fraud_model", champion)  # what batch_predictions scored with
    columns = ", ".join(FRAUD_MODEL.batch.columns)
    transactions = warehouse.read_sql(
        f"select {columns} from raw.transactions where _partition_date = '{day}'"
    )
    asof_s, features = timed(lambda: asof(transactions))
    predict_s, _ = timed(lambda: predict_scores(pipeline, features))
    scoring = stages["batch_scoring"]
    done(
        "batch_scoring",
        {
            **scoring,
            "rows": len(transactions),
            "bare_asof_s": round(asof_s, 3),
            "bare_predict_proba_s": round(predict_s, 3),
            "ratio": round(scoring["wall_s"] / (asof_s + predict_s), 1),
            "ratio_to_predict_proba_alone": round(scoring["wall_s"] / predict_s, 1),
        },
    )

    done("fraud_model", {**stages["fraud_model"], **bare_fit()})  # last: scikit-learn alone needs the most

    counts = warehouse.read_sql(
        "select (select count(*) from raw.transactions) as transactions, "
        "(select count(*) from raw.labels) as labels, "
        "(select count(*) from raw.customers) as customers, "
        "(select count(*) from raw.merchants) as merchants, "
        "(select count(*) from training.training_set) as labelled_training_rows"
    ).iloc[0]
    platform = [s["peak_rss_mb"] for s in stages.values()]
    baselines = [s[k] for s in stages.values() for k in s if k.startswith("bare") and k.endswith("rss_mb")]
    report |= {
        "rows": {k: int(v) for k, v in counts.items()},
        "peak_rss_mb": max(platform),
        "peak_rss_under_8gb": max(platform) < LIMIT_MB,
        "baselines_peak_rss_mb": max(baselines),
        "total_wall_s": round(sum(s["wall_s"] for s in stages.values()), 1),
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }
    save(report, args.label)
    log(json.dumps(report, indent=2))
    if not args.state:
        shutil.rmtree(state)


def save(report: dict, label: str | None) -> None:
    """The figures as runs[label] of the results, beside the record; without a label, as the record itself
    (its keys and notes replaced, the labelled runs kept). Before, every run replaced the whole file."""
    if label:
        keep_run(RESULTS, label, report)
        return
    runs = json.loads(RESULTS.read_text()).get("runs", {}) if RESULTS.exists() else {}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({**report, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
