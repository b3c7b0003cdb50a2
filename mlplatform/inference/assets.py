"""Batch predictions: each day's decisions scored by a model's champion, with the same features as training;
and where online predictions go."""

import warnings
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    AssetSpec,
    BackfillPolicy,
    DefaultScheduleStatus,
    Failure,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    asset,
    define_asset_job,
    schedule,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dagster._utils.warnings import BetaWarning

from mlplatform.automation import follow_updates_of, previous_day_run
from mlplatform.checks import not_judged
from mlplatform.features.assets import feast_registry, online_feature_assets
from mlplatform.features.retrieval import features_as_of_events
from mlplatform.inference.scoring import load_model_version
from mlplatform.ingestion.assets import DAILY_PARTITIONS
from mlplatform.profiles import warehouse_kind
from mlplatform.resources import FeastFeatureStore, ModelRegistry, Warehouse
from mlplatform.resources.model_registry import CHAMPION
from mlplatform.training.registry import is_retired
from mlplatform.training.spec import ModelSpec, table_asset

if TYPE_CHECKING:
    import pandas as pd

SCORE_QUANTILES = (0.5, 0.9, 0.99, 0.999)

FEATURES_COVER_DAYS = "features_cover_partition"


def stale_features(day: date, newest: dict[str, date | None]) -> str | None:
    """Why the feature marts cannot score decisions taken on `day` (the last of a run's), or None.

    A decision at time t on day D is scored with the features valid then: those of feature date D - 1
    (valid from 00:00 of D), built from every day before it. Older marts mean a day is missing from the
    features (an ingestion or dbt run that died, a rebuild that did not happen): scoring would use old
    features silently, so it refuses."""
    needed = day - timedelta(days=1)
    behind = {mart: day for mart, day in newest.items() if day is None or day < needed}
    if not behind:
        return None
    found = ", ".join(f"{mart} up to {day or 'nothing'}" for mart, day in sorted(behind.items()))
    return (
        f"features are older than the decisions being scored: scoring {day} needs feature date {needed}, "
        f"found {found}; rebuild the dbt marts (and the online store) first"
    )


def newest_feature_dates(warehouse: Warehouse, marts: list[str]) -> dict[str, date | None]:
    import pandas as pd

    newest: dict[str, date | None] = {}
    for mart in marts:
        if not warehouse.table_exists("marts", mart):
            newest[mart] = None
            continue
        value = warehouse.read_sql(f"select max(feature_date) as d from marts.{mart}")["d"].iloc[0]
        newest[mart] = None if pd.isna(value) else pd.Timestamp(value).date()
    return newest


def score_distribution(scores: "pd.Series") -> dict[str, float]:
    """Mean and upper quantiles: a shift here is the first sign of drift or a broken feature."""
    if scores.empty:
        return {}
    return {"score_mean": float(scores.mean())} | {
        f"score_p{q * 100:g}": float(scores.quantile(q)) for q in SCORE_QUANTILES
    }


def build_batch_predictions(spec: ModelSpec) -> AssetsDefinition:
    """The spec's daily batch scoring: each day's rows of its spine scored by its champion with their
    point-in-time features (Feast, as in training), written to `inference.<asset>`; re-running a day
    replaces it. A spine of raw landed data is scored as soon as the day lands (it follows it); a spine
    built by dbt is scored by the landing run's day chain and the nightly schedule."""
    name, batch = spec.batch_asset, spec.batch
    if batch is None:  # batch_asset refused it already; for the type checker
        raise ValueError(f"{spec.name} declares no batch scoring")
    spine = table_asset(batch.spine)
    columns = ", ".join(batch.columns)

    # A backfill of days scores them in one run (one feature retrieval, one model load). Dagster marks
    # `backfill_policy` beta; with dagster pinned, its notice about that parameter is silenced, nothing else.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Parameter `backfill_policy` of function `asset`", category=BetaWarning
        )
        batch_asset = asset(
            name=name,
            group_name="inference",
            kinds={"scikitlearn", "feast", warehouse_kind()},
            owners=spec.owners,
            partitions_def=DAILY_PARTITIONS,
            backfill_policy=BackfillPolicy.single_run(),
            deps=[spine, feast_registry, *map(AssetKey, spec.feature_marts), AssetKey(spec.champion_asset)],
            automation_condition=(
                follow_updates_of(spine, label=f"follow_new_{batch.spine.split('.')[1]}")
                if batch.spine.startswith("raw.")
                else None
            ),
            check_specs=[
                AssetCheckSpec(
                    FEATURES_COVER_DAYS,
                    asset=name,
                    blocking=True,
                    description="Feature marts reach the day before the decisions scored, else scoring "
                    "refuses.",
                )
            ],
            description=(
                f"Each day's rows of {batch.spine} scored by the `champion` {spec.name} with their "
                f"point-in-time features (Feast, as in training); stored in inference.{name} with the model "
                "version per row. Re-running a day replaces it."
            ),
        )

    @batch_asset
    def batch_predictions(
        context: AssetExecutionContext,
        feature_store: FeastFeatureStore,
        warehouse: Warehouse,
        model_registry: ModelRegistry,
    ) -> MaterializeResult:
        import pandas as pd

        days = [date.fromisoformat(key) for key in context.partition_keys]
        retired = is_retired(model_registry, spec.name)
        champion = None if retired else model_registry.version_for(spec.name, CHAMPION)
        if champion is None:  # scheduled scoring goes on for the other models
            reason = (
                f"{spec.name} is retired: nothing scored, its earlier predictions stay"
                if retired
                else f"{spec.name} has no champion yet (no version passed its gates): nothing scored"
            )
            return MaterializeResult(
                metadata={"retired": retired, "note": reason},
                check_results=[not_judged(reason, check_name=FEATURES_COVER_DAYS)],
            )
        rows = warehouse.read_sql(
            f"select {columns}, {batch.day_column} as _partition_date from {batch.spine} "
            f"where {batch.day_column} between '{days[0]}' and '{days[-1]}'"
        )
        if rows.empty:  # nothing landed or built for these days: there is nothing to score, say so
            raise Failure(f"{batch.spine} has no rows for {days[0]}..{days[-1]}: land or build them first")
        newest = newest_feature_dates(warehouse, spec.feature_marts)
        stale = stale_features(pd.Timestamp(rows["event_ts"].max()).date(), newest)
        if stale:  # refuse: nothing is written, nothing downstream runs on it
            raise Failure(stale, metadata={m: str(d) for m, d in newest.items()})
        model = load_model_version(model_registry, spec.name, champion)  # the version found above
        scored = features_as_of_events(feature_store.store(), rows, model.feature_service)
        scored = scored.join(model.score(scored))
        predictions = scored[[*batch.columns, "score", "decision", "_partition_date"]].assign(
            model_name=model.name,
            model_version=model.version,
            threshold=model.threshold,
            scored_at=datetime.now(UTC).replace(tzinfo=None),
            _partition_date=pd.to_datetime(scored["_partition_date"]).dt.date,
        )
        warehouse.replace_partitions("inference", name, predictions, "_partition_date", days)

        per_day = predictions.groupby("_partition_date").agg(
            rows=("score", "size"), flagged=("decision", "sum")
        )
        return MaterializeResult(
            metadata={
                "dagster/row_count": len(predictions),
                "model_name": model.name,
                "model_version": model.version,
                "threshold": round(model.threshold, 6),
                "flagged": int(predictions["decision"].sum()),
                "flag_rate": round(float(predictions["decision"].mean()), 5),
                **{k: round(v, 5) for k, v in score_distribution(predictions["score"]).items()},
                "days": MetadataValue.md(per_day.to_markdown()),
            },
            check_results=[
                AssetCheckResult(
                    check_name=FEATURES_COVER_DAYS,
                    passed=True,
                    metadata={"judged": True, **{f"{m}_newest": str(d) for m, d in newest.items()}},
                )
            ],
        )

    return batch_predictions


PREDICTION_LOG = AssetKey("prediction_log")


def build_prediction_log(specs: list[ModelSpec]) -> AssetSpec:
    """Where online predictions go: the prediction API and the stream consumers write the log, not Dagster
    (an external asset), so the lineage ends at the predictions served and monitoring reads from there."""
    return AssetSpec(
        PREDICTION_LOG,
        group_name="inference",
        kinds={"fastapi"},
        owners=["team:ml"],
        deps=[
            *(AssetKey(spec.champion_asset) for spec in specs),
            *(a.key for a in online_feature_assets),
        ],
        description=(
            "Every online prediction served (each model's route, `/predict/batch`, Redis Streams): request, "
            "model version per arm, inputs, score, decision and latency, one JSON line each in a file per "
            "day (`predictions/date=YYYY-MM-DD/` under the state folder). Written by the prediction API from "
            "the champion aliases and the online store; read by each model's serving health, skew and SLO."
        ),
    )


def build_batch_scoring(
    batch_assets: list[AssetsDefinition],
) -> tuple[UnresolvedAssetJobDefinition, ScheduleDefinition]:
    """The job that scores landed days with every model's champion, and its nightly schedule."""
    job = define_asset_job(
        "batch_scoring",
        selection=AssetSelection.assets(*batch_assets),
        description="Score landed days in batch with each model's champion (one run for a range of days).",
    )

    @schedule(
        job=job,
        cron_schedule="0 2 * * *",
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,  # the loop needs it: on by default
    )
    def nightly_batch_scoring(context: ScheduleEvaluationContext) -> RunRequest:
        """At 02:00 UTC, score the day that just ended (today's partition is still filling)."""
        return previous_day_run(context)

    return job, nightly_batch_scoring
