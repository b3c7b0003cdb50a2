"""Batch predictions: each day's transactions scored by the champion, with the same features as training."""

import warnings
from datetime import UTC, date, datetime, timedelta

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    BackfillPolicy,
    DefaultScheduleStatus,
    Failure,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    ScheduleEvaluationContext,
    asset,
    define_asset_job,
    schedule,
)
from dagster._utils.warnings import BetaWarning

from mlplatform.automation import follow_updates_of, previous_day_run
from mlplatform.features.assets import feast_registry
from mlplatform.features.retrieval import features_as_of_events
from mlplatform.inference.scoring import TRANSACTION_FIELDS, load_scoring_model
from mlplatform.ingestion.assets import DAILY_PARTITIONS, raw_transactions
from mlplatform.profiles import warehouse_kind
from mlplatform.resources import FeastFeatureStore, ModelRegistry, Warehouse
from mlplatform.resources.model_registry import CHAMPION
from mlplatform.training.spec import FRAUD_MODEL

SCORE_QUANTILES = (0.5, 0.9, 0.99, 0.999)

# Score a day once its transactions have loaded (and passed their blocking checks); the dbt marts and
# the champion updating do not re-score history: the nightly schedule and backfills do that.
FOLLOW_NEW_TRANSACTIONS = follow_updates_of(raw_transactions, label="follow_new_transactions")


FEATURE_MARTS = ("customer_features", "merchant_features")


def stale_features(day: date, newest: dict[str, date | None]) -> str | None:
    """Why the feature marts cannot score `day` (the last of a run's days), or None when they can.

    A transaction of day D is scored with the features valid at its time: those of feature date D - 1
    (valid from 00:00 of D), built from every day before it. Older marts mean a day is missing from the
    features (an ingestion or dbt run that died, a rebuild that did not happen): scoring would use old
    features silently, so it refuses."""
    needed = day - timedelta(days=1)
    behind = {mart: day for mart, day in newest.items() if day is None or day < needed}
    if not behind:
        return None
    found = ", ".join(f"{mart} up to {day or 'nothing'}" for mart, day in sorted(behind.items()))
    return (
        f"features are older than the day being scored: scoring {day} needs feature date {needed}, "
        f"found {found}; rebuild the dbt marts (and the online store) first"
    )


def newest_feature_dates(warehouse: Warehouse) -> dict[str, date | None]:
    newest: dict[str, date | None] = {}
    for mart in FEATURE_MARTS:
        if not warehouse.table_exists("marts", mart):
            newest[mart] = None
            continue
        value = warehouse.read_sql(f"select max(feature_date) as d from marts.{mart}")["d"].iloc[0]
        newest[mart] = None if pd.isna(value) else pd.Timestamp(value).date()
    return newest


def score_distribution(scores: pd.Series) -> dict[str, float]:
    """Mean and upper quantiles: a shift here is the first sign of drift or a broken feature."""
    if scores.empty:
        return {}
    return {"score_mean": float(scores.mean())} | {
        f"score_p{q * 100:g}": float(scores.quantile(q)) for q in SCORE_QUANTILES
    }


# A backfill of days scores them in one run (one feature retrieval, one model load). Dagster marks
# `backfill_policy` beta; with dagster pinned, its notice about that parameter is silenced, nothing else.
warnings.filterwarnings(
    "ignore", message="Parameter `backfill_policy` of function `asset`", category=BetaWarning
)


@asset(
    group_name="inference",
    kinds={"scikitlearn", "feast", warehouse_kind()},
    owners=["team:ml"],
    partitions_def=DAILY_PARTITIONS,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[
        raw_transactions,
        feast_registry,
        AssetKey("customer_features"),
        AssetKey("merchant_features"),
        AssetKey(FRAUD_MODEL.champion_asset),
    ],
    automation_condition=FOLLOW_NEW_TRANSACTIONS,
    check_specs=[
        AssetCheckSpec(
            "features_cover_partition",
            asset="batch_predictions",
            blocking=True,
            description="Feature marts reach the day before the scored one, else scoring refuses.",
        )
    ],
    description=(
        "Every transaction of the day scored by the `champion` fraud_model with its point-in-time features "
        "(Feast, as in training); stored in inference.batch_predictions with the model version per row. "
        "Re-running a day replaces it."
    ),
)
def batch_predictions(
    context: AssetExecutionContext,
    feature_store: FeastFeatureStore,
    warehouse: Warehouse,
    model_registry: ModelRegistry,
) -> MaterializeResult:
    days = [date.fromisoformat(key) for key in context.partition_keys]
    newest = newest_feature_dates(warehouse)
    stale = stale_features(days[-1], newest)
    if stale:  # refuse: nothing is written, nothing downstream runs on it
        raise Failure(stale, metadata={m: str(d) for m, d in newest.items()})
    model = load_scoring_model(model_registry, FRAUD_MODEL.name, CHAMPION)
    transactions = warehouse.read_sql(
        f"select {', '.join(TRANSACTION_FIELDS)}, _partition_date from raw.transactions "
        f"where _partition_date between '{days[0]}' and '{days[-1]}'"
    )
    scored = features_as_of_events(feature_store.store(), transactions, model.feature_service)
    scored = scored.join(model.score(scored))
    predictions = scored[[*TRANSACTION_FIELDS, "score", "decision", "_partition_date"]].assign(
        model_name=model.name,
        model_version=model.version,
        threshold=model.threshold,
        scored_at=datetime.now(UTC).replace(tzinfo=None),
        _partition_date=scored["_partition_date"].dt.date,
    )
    warehouse.replace_partitions("inference", "batch_predictions", predictions, "_partition_date", days)

    per_day = predictions.groupby("_partition_date").agg(rows=("score", "size"), flagged=("decision", "sum"))
    return MaterializeResult(
        metadata={
            "dagster/row_count": len(predictions),
            "model_name": model.name,
            "model_version": model.version,
            "threshold": round(model.threshold, 6),
            "flagged": int(predictions["decision"].sum()),
            "flag_rate": round(float(predictions["decision"].mean()), 5) if len(predictions) else 0.0,
            **{k: round(v, 5) for k, v in score_distribution(predictions["score"]).items()},
            "days": MetadataValue.md(per_day.to_markdown()),
        },
        check_results=[
            AssetCheckResult(
                check_name="features_cover_partition",
                passed=True,
                metadata={"judged": True, **{f"{m}_newest": str(d) for m, d in newest.items()}},
            )
        ],
    )


# Where online predictions go: the prediction API and the stream consumers write the log, not Dagster
# (an external asset), so the lineage ends at the predictions served and monitoring reads from there
prediction_log = AssetSpec(
    "prediction_log",
    group_name="inference",
    kinds={"fastapi"},
    owners=["team:ml"],
    deps=[
        AssetKey(FRAUD_MODEL.champion_asset),
        AssetKey("online_customer_stats"),
        AssetKey("online_merchant_stats"),
    ],
    description=(
        "Every online prediction served (`/predict`, `/predict/batch`, Redis Streams): request, model "
        "version per arm, inputs, score, decision and latency, one JSON line each in a file per day "
        "(`predictions/date=YYYY-MM-DD/` under the state folder). Written by the prediction API from the "
        "champion alias and the online store; read by `serving_health` and `serving_skew`."
    ),
)

batch_scoring_job = define_asset_job(
    "batch_scoring",
    selection=[batch_predictions],
    description="Score landed days in batch with the champion (one run for a range of days).",
)


@schedule(
    job=batch_scoring_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,  # the loop needs it: on by default
)
def nightly_batch_scoring(context: ScheduleEvaluationContext) -> RunRequest:
    """At 02:00 UTC, score the day that just ended (today's partition is still filling)."""
    return previous_day_run(context)


inference_assets = [batch_predictions]
external_outputs = [prediction_log]
