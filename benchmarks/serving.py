"""Serving: the prediction API against `feast serve` answering the same features, and batch scoring against
the bare model, all measured in the same run.

    python benchmarks/serving.py [--days 21 --transactions-per-day 20000 --customers 50000]

Figures (JSON in benchmarks/results/serving.json):
- `/predict` (one transaction: online features, on-demand features, scoring, logging) and `feast serve`
  `/get-online-features` (the same feature service for the same transaction, nothing else), each one
  uvicorn worker: p50/p99 latency and requests/s with 1 (sequential), 8 and 32 concurrent keep-alive
  clients; max rps is the best of those;
- `/predict/batch` rows/s for batches of 100 and 1,000 transactions;
- batch scoring: the `batch_predictions` asset over every landed day (one run) in rows/s, against the
  same rows' point-in-time feature retrieval alone and `predict_proba` of the bare model alone.
"""

import argparse
import json
import os
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dagster import AssetSelection, DagsterInstance, materialize
from harness import data_arguments, generator_config, http_latency, timed

from mlplatform.datagen import generate
from mlplatform.definitions import all_assets, all_checks
from mlplatform.demo import materialize_all, partition_range
from mlplatform.features.retrieval import features_as_of_events
from mlplatform.inference.assets import batch_predictions
from mlplatform.inference.scoring import TRANSACTION_FIELDS, load_scoring_model
from mlplatform.localserver import feast_server, free_port, http_server
from mlplatform.profiles import build_resources
from mlplatform.resources.model_registry import CHAMPION
from mlplatform.training.fraud_model import MODEL_NAME
from mlplatform.training.model import predict_scores

RESULTS = Path(__file__).parent / "results" / "serving.json"
CONCURRENCY = {1: 1_000, 8: 250, 32: 100}  # clients -> requests per client


def predict_body(row: dict) -> bytes:
    return json.dumps(row).encode()


def feast_body(row: dict, service: str) -> bytes:
    entities = {k: [row[k]] for k in ("customer_id", "merchant_id", "amount", "country", "event_ts")}
    return json.dumps({"feature_service": service, "entities": entities, "full_feature_names": True}).encode()


def load_profile(port: int, path: str, bodies: list[bytes]) -> dict:
    runs = {f"clients_{c}": http_latency(port, path, bodies, c, n) for c, n in CONCURRENCY.items()}
    return {**runs, "max_rps": max(run["per_s"] for run in runs.values())}


def batch_rows_per_s(port: int, rows: list[dict], size: int, repeats: int) -> dict:
    bodies = [
        json.dumps({"transactions": rows[i * size % len(rows) :][:size]}).encode() for i in range(repeats)
    ]
    stats = http_latency(port, "/predict/batch", bodies, clients=1, per_client=repeats)
    return {"batch_size": size, "p50_ms": stats["p50_ms"], "rows_per_s": round(stats["per_s"] * size)}


def main() -> None:
    parser = data_arguments(argparse.ArgumentParser(), days=21)
    parser.set_defaults(transactions_per_day=20_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, DagsterInstance.ephemeral() as instance:
        state = Path(tmp) / "state"
        generated = generate(generator_config(args), state / "landing")
        build_s, built = timed(lambda: materialize_all(state, instance))
        assert not built.runs_failed, built.format()
        resources = build_resources(profile="local", state=state)
        warehouse = resources["warehouse"]

        # batch scoring: the asset over every day in one run, then its parts alone on the same rows
        days = sorted(generated.days)
        asset_s, result = timed(
            lambda: materialize(
                [*all_assets, *all_checks],
                selection=AssetSelection.assets(batch_predictions),
                resources=resources,
                instance=instance,
                tags=partition_range(str(days[0]), str(days[-1])),
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            )
        )
        assert result.success
        model = load_scoring_model(resources["model_registry"], MODEL_NAME, CHAMPION)
        transactions = warehouse.read_sql(
            f"select {', '.join(TRANSACTION_FIELDS)}, currency from raw.transactions"
        )
        store = resources["feature_store"].store()
        features_s, features = timed(
            lambda: features_as_of_events(store, transactions, model.feature_service)
        )
        score_s, _ = timed(lambda: predict_scores(model.pipeline, features))
        rows = len(transactions)

        # online: the same transactions, as if they happened now (after the last feature build)
        now = datetime.now(UTC)
        sample = transactions.sample(2_000, random_state=7).to_dict("records")
        requests = [
            {
                **{k: r[k] for k in ("customer_id", "merchant_id", "currency", "channel", "country")},
                "transaction_id": r["transaction_id"],
                "amount": float(r["amount"]),
                "event_ts": (now - timedelta(seconds=i)).isoformat(),
            }
            for i, r in enumerate(sample)
        ]
        api_port = free_port()
        api = [sys.executable, "-m", "mlplatform.cli", "serve", "--port", str(api_port)]
        os.environ["MLPLATFORM_STATE_DIR"] = str(state)
        with http_server(api, api_port, Path(tmp) / "api.log"):
            predict = load_profile(api_port, "/predict", [predict_body(r) for r in requests])
            batches = [
                batch_rows_per_s(api_port, requests, size, repeats)
                for size, repeats in ((100, 50), (1000, 10))
            ]
        with feast_server(resources["feature_store"], Path(tmp) / "serve_repo") as feast_port:
            feast = load_profile(
                feast_port, "/get-online-features", [feast_body(r, model.feature_service) for r in requests]
            )

    report = {
        "transactions": rows,
        "customers": args.customers,
        "cpu_cores": os.cpu_count(),
        "build_whole_graph_s": round(build_s, 1),
        "predict_api": predict,
        "feast_serve_same_features": feast,
        "predict_p50_over_feast_p50": round(predict["clients_1"]["p50_ms"] / feast["clients_1"]["p50_ms"], 2),
        "predict_batch": batches,
        "batch_scoring": {
            "rows": rows,
            "asset_run_s": round(asset_s, 2),
            "asset_rows_per_s": round(rows / asset_s),
            "feature_retrieval_alone_rows_per_s": round(rows / features_s),
            "bare_model_predict_rows_per_s": round(rows / score_s),
            "asset_vs_bare_model": round(asset_s / score_s, 1),
        },
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
