"""Velocity features: Feast pushes against a bare Redis pipeline, push-to-readable latency, and the fraud
model trained with and without them on the same holdout, all in the same run.

    python benchmarks/velocity.py [--state <built state>] [--redis-url redis://127.0.0.1:6379/11]

The Redis database given is flushed before and after (default 11: keep it unused). Without `--state` the
demo data (30 days, 2,000 customers, 3,000 transactions a day) is generated and built first; with it, a
copy of that state is used (the backfill writes into it). Figures (JSON in benchmarks/results/velocity.json,
one section per stage, each printed as it ends):
- push: the velocity rows of the landed transactions pushed with `FeatureStore.push` to the Redis online
  store (batches of 100, the pusher's, and 1,000), online only and online + offline (DuckDB store), rows/s;
  beside it a bare Redis pipeline writing the same rows (one HSET per row, 6 fields) in the same batches;
- readable: one-row pushes each followed by online reads until the pushed value comes back (p50/p99 of
  push start to value read), and the pusher's own enqueue-to-readable lag with transactions sent on the
  input stream at a steady rate (what `velocity_freshness` reports);
- model: the backfill (rows, seconds), then `fraud_model_velocity` retrieved point in time for every
  labelled transaction, and the fraud model (training/model.py: same pipeline, hyperparameters and time
  split) fitted without and with the velocity columns; ROC AUC, PR AUC and recall at 1% FPR on the same
  holdout, and how often labelled frauds and legitimate transactions have company in the last hour.
"""

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dagster import DagsterInstance
from harness import data_arguments, generator_config, timed

from mlplatform.datagen import generate
from mlplatform.demo import materialize_all
from mlplatform.profiles import build_resources
from mlplatform.resources.feature_store import COMMON_CONFIG, DUCKDB_OFFLINE_STORE, LocalFeastFeatureStore
from mlplatform.resources.prediction_log import PredictionLogWriter
from mlplatform.serving.schemas import EXAMPLE
from mlplatform.settings import FEATURE_REPO_DIR
from mlplatform.streaming.pusher import VelocityPusher, backfill, landed_transactions, prepare_history
from mlplatform.streaming.replay import send
from mlplatform.streaming.settings import StreamSettings
from mlplatform.velocity import (
    ENTITY,
    FEATURE_SERVICE,
    FEATURES,
    PUSH_SOURCE,
    TIMESTAMP,
    VIEW,
    velocity_frame,
)

RESULTS = Path(__file__).parent / "results" / "velocity.json"
PUSH_ROWS = 20_000
READS = 300
STEADY_RATE, STEADY_SECONDS = 100, 20


def redis_store(tmp: Path, redis_url: str):
    """The platform's definitions on Redis (prod's online store), the DuckDB offline store, file registry."""
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    local = LocalFeastFeatureStore(state_dir=str(tmp))
    local.feast_dir.mkdir(parents=True, exist_ok=True)
    host, db = redis_url.removeprefix("redis://").split("/")
    config = RepoConfig(
        **COMMON_CONFIG,
        registry={"registry_type": "file", "path": str(tmp / "feast" / "registry.db")},
        online_store={"type": "redis", "connection_string": f"{host},db={db}"},
        offline_store={"type": DUCKDB_OFFLINE_STORE},
        repo_path=FEATURE_REPO_DIR,
    )
    store = FeatureStore(config=config)
    store.apply(list(local.definitions().values()))
    prepare_history(store)
    return store


def bare_pipeline(client, rows: list[dict], batch: int) -> float:
    """Rows/s of the same rows written by a bare pipeline: one HSET per row (timestamp and 5 features)."""
    started = time.perf_counter()
    for start in range(0, len(rows), batch):
        pipe = client.pipeline(transaction=False)
        for row in rows[start : start + batch]:
            mapping = {"ts": row[TIMESTAMP].timestamp(), **{f: row[f] for f in FEATURES}}
            pipe.hset(f"bench:{row[ENTITY]}", mapping=mapping)
        pipe.execute()
    return len(rows) / (time.perf_counter() - started)


def feast_pushes(store, frame, batch: int, mode) -> float:
    started = time.perf_counter()
    for start in range(0, len(frame), batch):
        store.push(PUSH_SOURCE, frame.iloc[start : start + batch], to=mode)
    return len(frame) / (time.perf_counter() - started)


def push_stage(store, client, frame) -> dict:
    from feast.data_source import PushMode

    rows = frame.to_dict("records")
    report: dict = {"rows": len(frame)}
    for batch in (100, 1_000):
        client.flushdb()
        bare = bare_pipeline(client, rows, batch)
        client.flushdb()
        online = feast_pushes(store, frame, batch, PushMode.ONLINE)
        client.flushdb()
        both = feast_pushes(store, frame, batch, PushMode.ONLINE_AND_OFFLINE)
        report[f"batch_{batch}"] = {
            "bare_redis_pipeline_rows_per_s": round(bare),
            "feast_push_online_rows_per_s": round(online),
            "feast_push_online_and_offline_rows_per_s": round(both),
            "online_over_bare": round(online / bare, 3),
            "online_and_offline_over_bare": round(both / bare, 3),
        }
    return report


def percentiles(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "p50_ms": round(ordered[len(ordered) // 2], 2),
        "p99_ms": round(ordered[int(len(ordered) * 0.99)], 2),
        "mean_ms": round(statistics.fmean(ordered), 2),
    }


def readable_stage(store, client, frame, tmp: Path, redis_url: str) -> dict:
    """Push start to the value read back, one row at a time; then the pusher on a steady stream."""
    from feast.data_source import PushMode

    client.flushdb()
    latencies = []
    for i in range(READS):
        row = frame.iloc[[i]].copy()
        row[ENTITY] = f"reader-{i}"
        started = time.perf_counter()
        store.push(PUSH_SOURCE, row, to=PushMode.ONLINE)
        while True:
            read = store.get_online_features(
                features=[f"{VIEW}:amount_sum_1h"], entity_rows=[{ENTITY: f"reader-{i}"}]
            )
            if read.to_dict()["amount_sum_1h"][0] == row["amount_sum_1h"].iloc[0]:
                break
        latencies.append((time.perf_counter() - started) * 1000)

    client.flushdb()
    settings = StreamSettings(redis_url=redis_url, health_log_dir=str(tmp / "streaming"))
    health = PredictionLogWriter(Path(settings.velocity_log_dir))
    pusher = VelocityPusher(settings, store, health, name="bench")
    worker = threading.Thread(target=pusher.run)
    worker.start()
    now = datetime.now(UTC)
    customers = frame[ENTITY].drop_duplicates().head(500).tolist()
    transactions = [
        {**EXAMPLE, "transaction_id": f"bench-{i}", "customer_id": customers[i % len(customers)]}
        | {"amount": 10.0 + i % 50, "event_ts": now - timedelta(seconds=STEADY_RATE * STEADY_SECONDS - i)}
        for i in range(STEADY_RATE * STEADY_SECONDS)
    ]
    send(settings, transactions, rate=STEADY_RATE, client=client)
    while pusher.broker.lag() != (0, 0):
        time.sleep(0.05)
    pusher.stop()
    worker.join()
    health.close()
    lines = [
        json.loads(line)
        for log in Path(settings.velocity_log_dir).glob("date=*/*.jsonl")
        for line in log.open()
    ]
    lags = [float(lag) for line in lines for lag in line["lag_ms"]]
    probes, stale = sum(line["probes"] for line in lines), sum(line["stale_reads"] for line in lines)
    return {
        "push_then_read_redis": percentiles(latencies),
        "pusher_enqueue_to_readable": {"rate_per_s": STEADY_RATE, **percentiles(lags)}
        | {"probes": probes, "stale_reads": stale},
    }


def model_stage(resources) -> dict:
    """The backfill, the velocity training set, and the model without and with the velocity columns."""
    import numpy as np

    from mlplatform.features.retrieval import features_as_of_events
    from mlplatform.training.model import evaluate, fit, labels_of, predict_scores, time_split
    from mlplatform.training.spec import FRAUD_MODEL

    store, warehouse = resources["feature_store"].store(), resources["warehouse"]
    transactions = landed_transactions(warehouse)
    backfill_s, pushed = timed(lambda: backfill(store, transactions))
    labels = warehouse.read_sql("select * from marts.training_labels")
    spine = labels.drop(columns=[c for c in FRAUD_MODEL.label.exclude if c in labels])
    retrieval_s, rows = timed(lambda: features_as_of_events(store, spine, FEATURE_SERVICE))
    train, holdout = time_split(FRAUD_MODEL, rows)
    velocity_columns = [f"{VIEW}__{feature}" for feature in FEATURES]
    report: dict = {
        "transactions": len(transactions),
        "backfill_rows": pushed,
        "backfill_s": round(backfill_s, 1),
        "labelled_rows": len(rows),
        "retrieval_s": round(retrieval_s, 1),
        "train_rows": len(train),
        "holdout_rows": len(holdout),
        "holdout_frauds": int(labels_of(FRAUD_MODEL, holdout).sum()),
        "velocity_nulls": int(rows[velocity_columns].isna().any(axis=1).sum()),
    }
    for name, columns in (("without_velocity", []), ("with_velocity", velocity_columns)):
        drop = [c for c in velocity_columns if c not in columns]
        model = fit(FRAUD_MODEL, train.drop(columns=drop))
        scores = predict_scores(model, holdout.drop(columns=drop))
        metrics = evaluate(labels_of(FRAUD_MODEL, holdout), scores).metrics
        report[name] = {k: round(metrics[k], 4) for k in ("roc_auc", "pr_auc", "recall_at_1pct_fpr")}
    company = rows[f"{VIEW}__txn_count_1h"] > 1
    fraud = rows[FRAUD_MODEL.label.column].astype(bool)
    report["share_with_another_transaction_in_the_hour"] = {
        "frauds": round(float(company[fraud].mean()), 4),
        "legitimate": round(float(company[~fraud].mean()), 4),
    }
    report["share_with_another_in_10_minutes"] = {
        "frauds": round(float((rows[f"{VIEW}__txn_count_10m"] > 1)[fraud].mean()), 4),
        "legitimate": round(float((rows[f"{VIEW}__txn_count_10m"] > 1)[~fraud].mean()), 4),
    }
    report["recall_gain"] = round(
        report["with_velocity"]["recall_at_1pct_fpr"] - report["without_velocity"]["recall_at_1pct_fpr"], 4
    )
    assert np.isfinite(report["recall_gain"])
    return report


def stage(report: dict, name: str, figures: dict) -> None:
    report[name] = figures
    print(json.dumps({name: figures}, indent=2), flush=True)


def main() -> None:
    parser = data_arguments(argparse.ArgumentParser(), days=30)
    parser.set_defaults(transactions_per_day=3_000, customers=2_000, merchants=300)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--state", type=Path, help="A built state (copied: the backfill writes into it).")
    args = parser.parse_args()

    import redis

    client = redis.Redis.from_url(args.redis_url)
    report: dict = {}
    with tempfile.TemporaryDirectory() as tmp, DagsterInstance.ephemeral() as instance:
        state = Path(tmp) / "state"
        if args.state:
            shutil.copytree(args.state, state)
        else:
            generate(generator_config(args), state / "landing")
            build_s, built = timed(lambda: materialize_all(state, instance))
            report["build"] = {"seconds": round(build_s, 1), "failed_runs": built.runs_failed}
        resources = build_resources(profile="local", state=state)
        resources["feature_store"].apply()
        transactions = landed_transactions(resources["warehouse"])
        frame = velocity_frame(transactions.sort_values("event_ts").tail(PUSH_ROWS))
        try:
            store = redis_store(Path(tmp) / "redis", args.redis_url)
            stage(report, "push", push_stage(store, client, frame))
            stage(report, "readable", readable_stage(store, client, frame, Path(tmp), args.redis_url))
        finally:
            client.flushdb()
        stage(report, "model", model_stage(resources))

    report["targets"] = {
        "pusher_p99_under_1s": report["readable"]["pusher_enqueue_to_readable"]["p99_ms"] < 1000,
        "push_then_read_p99_under_1s": report["readable"]["push_then_read_redis"]["p99_ms"] < 1000,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["targets"], indent=2))


if __name__ == "__main__":
    main()
