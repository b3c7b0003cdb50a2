"""Training data: point-in-time correct training sets from Feast."""

from datetime import timedelta

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from mlplatform.features.assets import feast_registry
from mlplatform.features.retrieval import features_as_of_events
from mlplatform.k8s import TRAINING
from mlplatform.resources import FeastFeatureStore, Warehouse
from mlplatform.training.leakage import leaked_values

FEATURE_SERVICE = "fraud_model_v1"
LEAKAGE_SAMPLE = 400
# columns of training_labels that the feature views also provide (as of the event time)
PROVIDED_BY_FEATURES = ("home_country", "category")


class TrainingSetConfig(Config):
    lookback_days: int | None = None  # only labelled transactions of the last N days; None = all


@asset(
    group_name="training",
    kinds={"feast", "pandas"},
    owners=["team:ml"],
    deps=[
        feast_registry,
        AssetKey("training_labels"),
        AssetKey("customer_features"),
        AssetKey("merchant_features"),
    ],
    op_tags=TRAINING,
    description=(
        f"Labelled transactions joined point-in-time with the `{FEATURE_SERVICE}` features by Feast "
        "(historical retrieval); stored as training.training_set."
    ),
)
def training_set(
    context: AssetExecutionContext,
    config: TrainingSetConfig,
    feature_store: FeastFeatureStore,
    warehouse: Warehouse,
) -> MaterializeResult:
    labels = warehouse.read_sql("select * from marts.training_labels")
    if config.lookback_days:
        labels = labels[labels["event_ts"] >= labels["event_ts"].max() - timedelta(days=config.lookback_days)]
    spine = labels.drop(columns=[c for c in PROVIDED_BY_FEATURES if c in labels])
    rows = features_as_of_events(feature_store.store(), spine, FEATURE_SERVICE).sort_values(
        ["event_ts", "transaction_id"], ignore_index=True
    )
    features = [c for c in rows.columns if "__" in c]
    warehouse.write_table("training", "training_set", rows)

    null_rates = rows[features].isna().mean().sort_values(ascending=False)
    return MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "label_rate": round(float(rows["is_fraud"].mean()), 5) if len(rows) else 0.0,
            "features": len(features),
            "feature_service": FEATURE_SERVICE,
            "time_range": f"{rows['event_ts'].min()} .. {rows['event_ts'].max()}",
            "data_partitions": MetadataValue.json(
                sorted({str(d) for d in rows["event_ts"].dt.date.unique()})
            ),
            "feature_null_rates": MetadataValue.md(null_rates.to_frame("null_rate").to_markdown()),
        }
    )


@asset_check(
    asset=training_set,
    blocking=True,
    description="No feature value was computed from data after its label's event time (sampled recompute).",
)
def no_point_in_time_leakage(warehouse: Warehouse) -> AssetCheckResult:
    sample = warehouse.sample_rows("training.training_set", LEAKAGE_SAMPLE)
    # ids come from landed files: quote them as SQL literals (a ' inside is doubled), never paste them raw
    customers = "', '".join(str(c).replace("'", "''") for c in sample["customer_id"].unique())
    transactions = warehouse.read_sql(
        "select customer_id, event_ts, amount from staging.stg_transactions "
        f"where customer_id in ('{customers}')"
    )
    problems = leaked_values(sample, transactions)
    return AssetCheckResult(
        passed=not problems,
        metadata={
            "rows_checked": len(sample),
            "values_differing": len(problems),
            "examples": MetadataValue.json([{k: str(v) for k, v in p.items()} for p in problems[:10]]),
        },
    )


training_assets = [training_set]
training_checks = [no_point_in_time_leakage]
