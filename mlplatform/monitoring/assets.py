"""Monitoring, per day: feature and prediction drift against the training set, and the champion's
performance once the (delayed) labels of the day have arrived. Failing checks go to the alert sink."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    MaterializeResult,
    MetadataValue,
    asset,
)

from mlplatform.features.retrieval import features_as_of_events
from mlplatform.inference.assets import batch_predictions
from mlplatform.inference.scoring import TRANSACTION_FIELDS, load_scoring_model
from mlplatform.ingestion.assets import DAILY_PARTITIONS, raw_transactions
from mlplatform.monitoring.dora import dora_metrics
from mlplatform.monitoring.drift import drift_table, labelled_performance, psi, serving_figures
from mlplatform.profiles import warehouse_kind
from mlplatform.resources import (
    AlertSink,
    FeastFeatureStore,
    ModelRegistry,
    MonitoringSettings,
    PredictionLog,
    Warehouse,
)
from mlplatform.resources.model_registry import CHAMPION
from mlplatform.training.assets import training_set
from mlplatform.training.fraud_model import MODEL_NAME, fraud_model_champion

FEATURE_DRIFT = AssetKey("feature_drift")
MODEL_PERFORMANCE = AssetKey("model_performance")
SERVING_HEALTH = AssetKey("serving_health")


def graded(
    value: float, warn: float, error: float, higher_is_worse: bool = True
) -> tuple[bool, AssetCheckSeverity]:
    """passed, and how bad it is when not: WARN between the bounds, ERROR beyond the error bound."""
    worse = (lambda x, bound: x > bound) if higher_is_worse else (lambda x, bound: x < bound)
    if np.isnan(value) or not worse(value, warn):
        return True, AssetCheckSeverity.WARN
    return False, AssetCheckSeverity.ERROR if worse(value, error) else AssetCheckSeverity.WARN


def alert_on(result: AssetCheckResult, alerts: AlertSink, partition: str, figure: str) -> AssetCheckResult:
    if not result.passed:
        alerts.send(
            "check_failed",
            f"{result.asset_key.to_user_string()}:{result.check_name} {result.severity.value} on {partition}",
            asset=result.asset_key.to_user_string(),
            check=result.check_name,
            severity=result.severity.value,
            partition=partition,
            figure=result.metadata[figure].value,
        )
    return result


@asset(
    key=FEATURE_DRIFT,
    group_name="monitoring",
    kinds={"feast", warehouse_kind()},
    owners=["team:ml"],
    partitions_def=DAILY_PARTITIONS,
    deps=[batch_predictions, training_set],
    check_specs=[
        AssetCheckSpec("feature_psi", asset=FEATURE_DRIFT, description="Max feature PSI within bounds."),
        AssetCheckSpec("prediction_psi", asset=FEATURE_DRIFT, description="Score PSI within bounds."),
    ],
    description=(
        "The day's model inputs and scores against the champion's training set: PSI per feature (KS test "
        "for numeric ones) and PSI of the scores; stored in monitoring.feature_drift."
    ),
)
def feature_drift(
    context: AssetExecutionContext,
    feature_store: FeastFeatureStore,
    warehouse: Warehouse,
    model_registry: ModelRegistry,
    monitoring: MonitoringSettings,
    alerts: AlertSink,
) -> MaterializeResult:
    day = context.partition_key
    model = load_scoring_model(model_registry, MODEL_NAME, CHAMPION)
    store = feature_store.store()
    fields = ", ".join(TRANSACTION_FIELDS)
    current = features_as_of_events(
        store,
        warehouse.read_sql(f"select {fields} from raw.transactions where _partition_date = '{day}'"),
        model.feature_service,
    )
    # the reference: all transactions (not only the labelled ones, which over-represent fraud while
    # legitimate confirmations are still on their way) of the newest week the champion trained on
    reference_transactions = warehouse.read_sql(
        f"select {fields} from raw.transactions where event_ts between "
        f"(select max(event_ts) from training.training_set) - interval '{monitoring.reference_days} days' "
        "and (select max(event_ts) from training.training_set)"
    )
    reference = features_as_of_events(
        store,
        reference_transactions.sample(
            min(len(reference_transactions), monitoring.reference_rows), random_state=7
        ),
        model.feature_service,
    )
    columns = list(model.pipeline.feature_names_in_)
    table = drift_table(reference, current, columns)
    score_psi = psi(model.score(reference)["score"], model.score(current)["score"])
    warehouse.replace_partitions(
        "monitoring",
        "feature_drift",
        table.assign(partition_date=pd.Timestamp(day).date()),
        "partition_date",
        [pd.Timestamp(day).date()],
    )

    max_psi = float(table["psi"].max())
    feature_ok, feature_severity = graded(max_psi, monitoring.psi_warn, monitoring.psi_error)
    score_ok, score_severity = graded(score_psi, monitoring.psi_warn, monitoring.psi_error)
    drifted = table.loc[table["psi"] > monitoring.psi_warn, "feature"].tolist()
    checks = [
        AssetCheckResult(
            asset_key=FEATURE_DRIFT,
            check_name="feature_psi",
            passed=feature_ok,
            severity=feature_severity,
            metadata={"max_psi": round(max_psi, 4), "drifted_features": MetadataValue.json(drifted)},
        ),
        AssetCheckResult(
            asset_key=FEATURE_DRIFT,
            check_name="prediction_psi",
            passed=score_ok,
            severity=score_severity,
            metadata={"score_psi": round(score_psi, 4)},
        ),
    ]
    for check, figure in zip(checks, ("max_psi", "score_psi"), strict=True):
        alert_on(check, alerts, day, figure)
    return MaterializeResult(
        metadata={
            "dagster/row_count": len(current),
            "model_version": model.version,
            "max_psi": round(max_psi, 4),
            "score_psi": round(score_psi, 4),
            "drifted_features": len(drifted),
            "psi_per_feature": MetadataValue.md(table.round(4).to_markdown(index=False)),
        },
        check_results=checks,
    )


@asset(
    key=MODEL_PERFORMANCE,
    group_name="monitoring",
    kinds={"scikitlearn", warehouse_kind()},
    owners=["team:ml"],
    partitions_def=DAILY_PARTITIONS,
    deps=[batch_predictions, AssetKey("training_labels")],
    check_specs=[
        AssetCheckSpec("roc_auc", asset=MODEL_PERFORMANCE, description="Champion ROC AUC on labelled rows."),
    ],
    description=(
        "How the day's batch decisions did once labels arrived (chargebacks come days later): ROC AUC, "
        "precision and recall at the served threshold, and how much of the day is labelled yet."
    ),
)
def model_performance(
    context: AssetExecutionContext, warehouse: Warehouse, monitoring: MonitoringSettings, alerts: AlertSink
) -> MaterializeResult:
    day = context.partition_key
    scored = warehouse.read_sql(
        "select p.score, p.decision, p.model_version, l.is_fraud from inference.batch_predictions as p "
        "left join marts.training_labels as l using (transaction_id) "
        f"where p._partition_date = '{day}'"
    )
    labelled = scored.dropna(subset=["is_fraud"])
    figures = labelled_performance(
        labelled["is_fraud"].astype(int), labelled["score"], labelled["decision"].astype(int)
    )
    figures["label_coverage"] = len(labelled) / len(scored) if len(scored) else 0.0
    enough = figures["frauds"] >= monitoring.min_labelled_frauds
    passed, severity = graded(
        figures["roc_auc"] if enough else float("nan"),
        monitoring.min_roc_auc_warn,
        monitoring.min_roc_auc_error,
        higher_is_worse=False,
    )
    check = alert_on(
        AssetCheckResult(
            asset_key=MODEL_PERFORMANCE,
            check_name="roc_auc",
            passed=passed,
            severity=severity,
            metadata={
                "roc_auc": round(figures["roc_auc"], 4),
                "frauds_labelled": figures["frauds"],
                "judged": enough,
            },
        ),
        alerts,
        day,
        "roc_auc",
    )
    return MaterializeResult(
        metadata={
            **{k: round(float(v), 4) for k, v in figures.items()},
            "model_versions": MetadataValue.json(sorted(scored["model_version"].unique().tolist())),
        },
        check_results=[check],
    )


@asset(
    key=SERVING_HEALTH,
    group_name="monitoring",
    kinds={"fastapi"},
    owners=["team:ml"],
    partitions_def=DAILY_PARTITIONS,
    check_specs=[
        AssetCheckSpec(
            "latency_p99", asset=SERVING_HEALTH, description="p99 of /predict latency within bounds."
        )
    ],
    description=(
        "The day's online traffic from the prediction log: requests, latency p50/p99, flag rate, and how "
        "often a shadowed challenger agreed with the served decision."
    ),
)
def serving_health(
    context: AssetExecutionContext,
    prediction_log: PredictionLog,
    monitoring: MonitoringSettings,
    alerts: AlertSink,
) -> MaterializeResult:
    day = context.partition_key
    figures = serving_figures(prediction_log.read(day))
    passed, severity = graded(
        figures.get("latency_p99_ms", float("nan")),
        monitoring.latency_p99_warn_ms,
        monitoring.latency_p99_error_ms,
    )
    check = alert_on(
        AssetCheckResult(
            asset_key=SERVING_HEALTH,
            check_name="latency_p99",
            passed=passed,
            severity=severity,
            metadata={"latency_p99_ms": round(figures.get("latency_p99_ms", float("nan")), 2)},
        ),
        alerts,
        day,
        "latency_p99_ms",
    )
    return MaterializeResult(
        metadata={k: round(float(v), 4) for k, v in figures.items()}, check_results=[check]
    )


@asset(
    group_name="monitoring",
    kinds={"mlflow"},
    owners=["team:ml"],
    deps=[fraud_model_champion],
    description=(
        "DORA metrics of model delivery over the last 30 days, from the registry's audit trail and the "
        "ingestion history: deployments per week, lead time from data landing to a new champion, change "
        "failure rate (promotions rolled back) and time to restore."
    ),
)
def delivery_metrics(context: AssetExecutionContext, model_registry: ModelRegistry) -> MaterializeResult:
    loads = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=raw_transactions.key), limit=10_000
    ).records
    landed = [datetime.fromtimestamp(record.timestamp, UTC) for record in loads]
    figures = dora_metrics(model_registry.audit_trail(MODEL_NAME), landed, timedelta(days=30))
    return MaterializeResult(metadata={k: round(float(v), 3) for k, v in figures.items()})


monitoring_assets = [feature_drift, model_performance, serving_health]
