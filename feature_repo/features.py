"""Feast definitions for the fraud use case: entities, feature views over the dbt marts, request-time
features and the feature service each model version is trained and served with.

`build_definitions` is the single source; the module-level names below are what `feast apply` picks up
when run from this folder (sources are parquet files dbt exports into ../state/feast/data).
"""

from collections.abc import Callable
from datetime import timedelta

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, RequestSource, ValueType
from feast.data_source import DataSource
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String, UnixTimestamp

# Daily rows, valid from the next midnight: a row older than two days means the mart stopped updating.
FEATURE_TTL = timedelta(days=2)
MODEL_FEATURE_SERVICE = "fraud_model_v1"

CUSTOMER_FIELDS = [
    *(Field(name=f"txn_count_{n}d", dtype=Int64) for n in (1, 7, 30)),
    *(Field(name=f"amount_{stat}_{n}d", dtype=Float64) for stat in ("sum", "avg", "max") for n in (1, 7, 30)),
    *(Field(name=f"distinct_merchants_{n}d", dtype=Int64) for n in (7, 30)),
    *(Field(name=f"foreign_share_{n}d", dtype=Float64) for n in (7, 30)),
    Field(name="home_country", dtype=String),
]
MERCHANT_FIELDS = [
    *(Field(name=f"txn_count_{n}d", dtype=Int64) for n in (7, 30)),
    *(Field(name=f"amount_sum_{n}d", dtype=Float64) for n in (7, 30)),
    Field(name="reported_fraud_count_30d", dtype=Int64),
    Field(name="fraud_rate_30d", dtype=Float64),
    Field(name="category", dtype=String),
    Field(name="risk_tier", dtype=String),
]


def build_definitions(source_for: Callable[[str], DataSource]) -> dict[str, object]:
    """Every Feast object, given how to read a dbt mart (a parquet file locally, a table in prod)."""
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
    merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.STRING)
    customer_stats = FeatureView(
        name="customer_stats",
        entities=[customer],
        ttl=FEATURE_TTL,
        schema=CUSTOMER_FIELDS,
        source=source_for("customer_features"),
        online=True,
        description="Card holder's trailing 1/7/30-day spending behaviour (dbt mart customer_features).",
        owner="team:ml",
    )
    merchant_stats = FeatureView(
        name="merchant_stats",
        entities=[merchant],
        ttl=FEATURE_TTL,
        schema=MERCHANT_FIELDS,
        source=source_for("merchant_features"),
        online=True,
        description="Merchant volumes and fraud rate from labels reported before the feature time.",
        owner="team:ml",
    )
    transaction_request = RequestSource(
        name="transaction_request",
        schema=[
            Field(name="amount", dtype=Float64),
            Field(name="country", dtype=String),
            Field(name="event_ts", dtype=UnixTimestamp),
        ],
    )

    # Defined per call: Feast rebinds the function to __main__ when it pickles it by value.
    def transaction_context(inputs: pd.DataFrame) -> pd.DataFrame:
        """Request-time features: how unusual the amount is for this customer, when, and where."""
        out = pd.DataFrame(index=inputs.index)
        out["amount_to_avg_30d"] = (inputs["amount"] / inputs["amount_avg_30d"]).astype("float64")
        out["hour_of_day"] = pd.to_datetime(inputs["event_ts"], utc=True).dt.hour.astype("int64")
        out["is_foreign"] = (inputs["country"] != inputs["home_country"]).astype("int64")
        return out

    context_view = on_demand_feature_view(
        name="transaction_context",
        sources=[customer_stats, transaction_request],
        schema=[
            Field(name="amount_to_avg_30d", dtype=Float64),
            Field(name="hour_of_day", dtype=Int64),
            Field(name="is_foreign", dtype=Int64),
        ],
        mode="pandas",
        description="Computed at request time from the transaction and the customer's features.",
        owner="team:ml",
    )(transaction_context)
    fraud_model_v1 = FeatureService(
        name=MODEL_FEATURE_SERVICE,
        features=[customer_stats, merchant_stats, context_view],
        description="Everything fraud_model is trained and served with; a new model version gets a new one.",
        owner="team:ml",
    )
    return {
        "customer": customer,
        "merchant": merchant,
        "customer_stats": customer_stats,
        "merchant_stats": merchant_stats,
        "transaction_request": transaction_request,
        "transaction_context": context_view,
        MODEL_FEATURE_SERVICE: fraud_model_v1,
    }


def parquet_source(data_dir: str) -> Callable[[str], DataSource]:
    """The local profile's sources: the parquet files dbt exports, one per mart."""

    def source_for(mart: str) -> DataSource:
        return FileSource(name=mart, path=f"{data_dir}/{mart}.parquet", timestamp_field="feature_ts")

    return source_for


# The marts keep feature_ts as a naive UTC timestamp; Feast compares it with timestamptz values, which
# Postgres would interpret in the session's time zone. This column states the zone explicitly.
POSTGRES_TIMESTAMP = "feature_ts_utc"


def postgres_source(schema: str) -> Callable[[str], DataSource]:
    """The prod profile's sources: the dbt marts themselves, tables in `schema` of the Postgres warehouse."""

    def source_for(mart: str) -> DataSource:
        return PostgreSQLSource(
            name=mart,
            query=f"select *, feature_ts at time zone 'UTC' as {POSTGRES_TIMESTAMP} from {schema}.{mart}",
            timestamp_field=POSTGRES_TIMESTAMP,
        )

    return source_for


_definitions = build_definitions(parquet_source("../state/feast/data"))
customer = _definitions["customer"]
merchant = _definitions["merchant"]
customer_stats = _definitions["customer_stats"]
merchant_stats = _definitions["merchant_stats"]
transaction_context_view = _definitions["transaction_context"]
fraud_model_v1 = _definitions[MODEL_FEATURE_SERVICE]
