"""Feast definitions for the fraud use case: entities, feature views over the dbt marts, request-time
features, velocity features pushed from the transaction stream, and the feature service each model version
is trained and served with.

`build_definitions` is the single source; the module-level names below are what `feast apply` picks up
when run from this folder (sources are the parquet files dbt exports into the state folder).
"""

from collections.abc import Callable
from datetime import timedelta

from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    PushSource,
    RequestSource,
    ValueType,
)
from feast.data_source import DataSource
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String, UnixTimestamp

from mlplatform import velocity  # names and windows of the velocity features (no Dagster, no Feast)
from mlplatform.settings import state_dir

# Daily rows, valid from the next midnight: a row older than two days means the mart stopped updating.
FEATURE_TTL = timedelta(days=2)
MODEL_FEATURE_SERVICE = "fraud_model_v1"
MERCHANT_RISK_FEATURE_SERVICE = "merchant_risk_v1"

CUSTOMER_FIELDS = [
    *(Field(name=f"txn_count_{n}d", dtype=Int64) for n in (1, 7, 30)),
    *(Field(name=f"amount_{stat}_{n}d", dtype=Float64) for stat in ("sum", "avg", "max") for n in (1, 7, 30)),
    *(Field(name=f"distinct_merchants_{n}d", dtype=Int64) for n in (7, 30)),
    *(Field(name=f"foreign_share_{n}d", dtype=Float64) for n in (7, 30)),
    Field(name="home_country", dtype=String),
]
VELOCITY_FIELDS = [
    Field(name=velocity.ENTITY, dtype=String),  # declared: the view's pushed folder may be empty at apply
    *(Field(name=name, dtype=Int64 if kind is int else Float64) for name, kind in velocity.FEATURES.items()),
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

    # Defined per call: Feast pickles the function by value into the registry (a module-level function
    # would be pickled by a reference to this folder's module, which servers cannot import). The view is in
    # Feast's `python` mode, so this one function is what training and batch retrieval (through the view),
    # `feast serve` and the prediction API (the view's own udf, from the registry) all run.
    def transaction_context(inputs: dict) -> dict:
        """Request-time features: how unusual the amount is for this customer, when, and where.

        Columns as lists in, lists out; a missing customer average gives NaN, as in float arithmetic."""
        from datetime import UTC, datetime

        def ratio(amount, average) -> float:
            if amount is None or average is None or amount != amount or average != average:
                return float("nan")
            if average == 0:
                return float("inf") if amount > 0 else float("-inf") if amount < 0 else float("nan")
            return float(amount) / float(average)

        def utc_hour(at) -> int:
            if isinstance(at, str):
                at = datetime.fromisoformat(at)
            elif isinstance(at, int | float):
                at = datetime.fromtimestamp(at, UTC)
            return (at.astimezone(UTC) if at.tzinfo else at).hour

        return {
            "amount_to_avg_30d": [
                ratio(a, avg) for a, avg in zip(inputs["amount"], inputs["amount_avg_30d"], strict=True)
            ],
            "hour_of_day": [utc_hour(at) for at in inputs["event_ts"]],
            "is_foreign": [
                int(c != h) for c, h in zip(inputs["country"], inputs["home_country"], strict=True)
            ],
        }

    context_view = on_demand_feature_view(
        name="transaction_context",
        sources=[customer_stats, transaction_request],
        schema=[
            Field(name="amount_to_avg_30d", dtype=Float64),
            Field(name="hour_of_day", dtype=Int64),
            Field(name="is_foreign", dtype=Int64),
        ],
        mode="python",
        description="Computed at request time from the transaction and the customer's features.",
        owner="team:ml",
    )(transaction_context)
    fraud_model_v1 = FeatureService(
        name=MODEL_FEATURE_SERVICE,
        features=[customer_stats, merchant_stats, context_view],
        description="Everything fraud_model is trained and served with; a new model version gets a new one.",
        owner="team:ml",
    )
    # Pushed, not materialized: the stream pusher and the backfill write rows computed by
    # mlplatform.velocity to both stores through this source; its batch source holds the history.
    velocity_push = PushSource(name=velocity.PUSH_SOURCE, batch_source=source_for(velocity.VIEW))
    customer_velocity = FeatureView(
        name=velocity.VIEW,
        entities=[customer],
        # a row describes the hour before its transaction: older, it says nothing about now
        ttl=timedelta(seconds=velocity.HORIZON_SECONDS),
        schema=VELOCITY_FIELDS,
        source=velocity_push,
        online=True,
        description="Card holder's transactions in the last 10 minutes and hour, and the seconds since the "
        "previous one, as of each transaction (pushed from the stream; mlplatform/velocity.py).",
        owner="team:ml",
    )
    fraud_model_velocity = FeatureService(
        name=velocity.FEATURE_SERVICE,
        features=[customer_stats, merchant_stats, context_view, customer_velocity],
        description=f"{MODEL_FEATURE_SERVICE} plus the velocity features, for model versions that use them.",
        owner="team:ml",
    )
    merchant_risk_v1 = FeatureService(
        name=MERCHANT_RISK_FEATURE_SERVICE,
        features=[merchant_stats],
        description="Everything merchant_risk (models/merchant_risk.yaml) is trained and served with.",
        owner="team:risk",
    )
    return {
        "customer": customer,
        "merchant": merchant,
        "customer_stats": customer_stats,
        "merchant_stats": merchant_stats,
        "transaction_request": transaction_request,
        "transaction_context": context_view,
        MODEL_FEATURE_SERVICE: fraud_model_v1,
        velocity.PUSH_SOURCE: velocity_push,
        velocity.VIEW: customer_velocity,
        velocity.FEATURE_SERVICE: fraud_model_velocity,
        MERCHANT_RISK_FEATURE_SERVICE: merchant_risk_v1,
    }


def parquet_source(data_dir: str) -> Callable[[str], DataSource]:
    """The local profile's sources: the parquet files dbt exports, a folder per mart (a file per month)."""

    def source_for(mart: str) -> DataSource:
        return FileSource(name=mart, path=f"{data_dir}/{mart}", timestamp_field="feature_ts")

    return source_for


# The marts keep feature_ts as a naive UTC timestamp; Feast compares it with timestamptz values, which
# Postgres would interpret in the session's time zone. This column states the zone explicitly.
POSTGRES_TIMESTAMP = "feature_ts_utc"
# Pushed views' history in prod: tables of this schema, written by the offline store
# (mlplatform/postgres_offline_store.py), not by dbt; named like the view
PUSHED_SCHEMA = "pushed_features"
PUSHED_VIEWS = (velocity.VIEW,)


def postgres_source(schema: str) -> Callable[[str], DataSource]:
    """The prod profile's sources: the dbt marts themselves, tables in `schema` of the Postgres warehouse;
    a pushed view's history, its table in PUSHED_SCHEMA (a plain table: Feast checks pushed columns against
    the source's, and the offline store writes to the table it names; its timestamp is timestamptz)."""

    def source_for(mart: str) -> DataSource:
        if mart in PUSHED_VIEWS:
            table = f"{PUSHED_SCHEMA}.{mart}"
            return PostgreSQLSource(name=mart, table=table, timestamp_field=velocity.TIMESTAMP)
        return PostgreSQLSource(
            name=mart,
            query=f"select *, feature_ts at time zone 'UTC' as {POSTGRES_TIMESTAMP} from {schema}.{mart}",
            timestamp_field=POSTGRES_TIMESTAMP,
        )

    return source_for


# The `feast` CLI run from this folder works on the state folder in force (feature_store.yaml, written by
# `make env`), with the sources Dagster registers for it: `feast plan` after `make demo` reports no change.
_definitions = build_definitions(parquet_source(str(state_dir() / "feast" / "data")))
customer = _definitions["customer"]
merchant = _definitions["merchant"]
customer_stats = _definitions["customer_stats"]
merchant_stats = _definitions["merchant_stats"]
transaction_context_view = _definitions["transaction_context"]
fraud_model_v1 = _definitions[MODEL_FEATURE_SERVICE]
customer_velocity_push = _definitions[velocity.PUSH_SOURCE]
customer_velocity = _definitions[velocity.VIEW]
fraud_model_velocity = _definitions[velocity.FEATURE_SERVICE]
merchant_risk_v1 = _definitions[MERCHANT_RISK_FEATURE_SERVICE]
