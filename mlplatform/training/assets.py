"""Training data: point-in-time correct training sets from Feast."""

from datetime import timedelta
from typing import TYPE_CHECKING

import pandas as pd
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

from mlplatform.checks import judged, not_judged
from mlplatform.features.assets import feast_registry
from mlplatform.features.retrieval import features_as_of_events
from mlplatform.k8s import TRAINING
from mlplatform.resources import FeastFeatureStore, Warehouse
from mlplatform.resources.warehouse import sql_literals
from mlplatform.training.leakage import FAMILIES, leaked_values
from mlplatform.training.spec import FRAUD_MODEL, ModelSpec

if TYPE_CHECKING:  # feast takes seconds to import
    from feast import FeatureStore

FEATURE_SERVICE = FRAUD_MODEL.feature_service
LEAKAGE_SAMPLE = 400
# columns of training_labels that the feature views also provide (as of the event time)
PROVIDED_BY_FEATURES = ("home_country", "category")


def labelled_rows(
    store: "FeatureStore", warehouse: Warehouse, spec: ModelSpec, lookback_days: int | None = None
) -> pd.DataFrame:
    """The spec's labelled events joined point-in-time with its feature service by Feast, in event order:
    the training set, and what an experiment on another feature service trains on."""
    labels = warehouse.read_sql(f"select * from {spec.label.table}")
    if lookback_days:
        labels = labels[labels["event_ts"] >= labels["event_ts"].max() - timedelta(days=lookback_days)]
    spine = labels.drop(columns=[c for c in PROVIDED_BY_FEATURES if c in labels])
    return features_as_of_events(store, spine, spec.feature_service).sort_values(
        ["event_ts", "transaction_id"], ignore_index=True
    )


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
    rows = labelled_rows(feature_store.store(), warehouse, FRAUD_MODEL, config.lookback_days)
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
    description=(
        f"No feature value of {LEAKAGE_SAMPLE} sampled rows was computed from data at or after its validity "
        f"time: every stored feature family ({', '.join(FAMILIES)}) recomputed from staging."
    ),
)
def no_point_in_time_leakage(warehouse: Warehouse) -> AssetCheckResult:
    sample = warehouse.sample_rows("training.training_set", LEAKAGE_SAMPLE)
    if sample.empty:
        return not_judged("the training set is empty")
    customers, merchants = (
        sql_literals(sample["customer_id"].unique()),
        sql_literals(sample["merchant_id"].unique()),
    )
    transactions = warehouse.read_sql(
        "select transaction_id, customer_id, merchant_id, event_ts, amount from staging.stg_transactions "
        f"where customer_id in ({customers}) or merchant_id in ({merchants})"
    )
    of_merchants = f"select transaction_id from staging.stg_transactions where merchant_id in ({merchants})"
    labels = warehouse.read_sql(
        "select transaction_id, is_fraud, reported_at, cast(null as timestamp) as superseded_at "
        f"from staging.stg_labels where transaction_id in ({of_merchants}) "
        "union all select transaction_id, is_fraud, reported_at, superseded_at "
        f"from staging.stg_superseded_labels where transaction_id in ({of_merchants})"
    )
    problems = leaked_values(sample, transactions, labels)
    per_family = {family: sum(p["family"] == family for p in problems) for family in FAMILIES}
    return judged(
        not problems,
        rows_checked=len(sample),
        values_differing=len(problems),
        differing_per_family=MetadataValue.json(per_family),
        examples=MetadataValue.json([{k: str(v) for k, v in p.items()} for p in problems[:10]]),
    )


training_assets = [training_set]
training_checks = [no_point_in_time_leakage]
