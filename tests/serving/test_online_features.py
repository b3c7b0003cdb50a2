"""The serving engine's online feature reads against Feast's own `get_online_features`, value by value:
the one-statement SQLite read (local profile), the one-pipeline Redis read (prod profile, Redis db 13) and
Feast's per-view `online_read` (any other store), each with the on-demand view computed by its own udf."""

import math
from datetime import UTC, datetime, timedelta

import pytest

from mlplatform.profiles import build_resources
from mlplatform.serving.errors import PredictionError
from mlplatform.serving.features import OnlineFeatures
from mlplatform.serving.schemas import Transaction
from tests.conftest import copy_state

pytestmark = pytest.mark.e2e
SERVICE = "fraud_model_v1"
REDIS_DB = 15  # the db these tests may use (13 is the prod tests', which run beside them)


@pytest.fixture(scope="module")
def local(built_state, tmp_path_factory):
    """(resources, transactions with repeated customers and merchants) on a copy of the built state."""
    state = copy_state(built_state[0], tmp_path_factory.mktemp("online-features") / "state")
    resources = build_resources(profile="local", state=state)
    resources["feature_store"].apply()
    rows = resources["warehouse"].read_sql(
        "select transaction_id, customer_id, merchant_id, amount, currency, channel, country "
        "from raw.transactions order by transaction_id limit 400"
    )
    at = datetime(2026, 3, 20, 9, 30, tzinfo=UTC)
    transactions = [
        Transaction.model_validate(
            {**row, "amount": float(row["amount"]), "event_ts": (at + timedelta(minutes=i)).isoformat()}
        )
        for i, row in enumerate(rows.to_dict("records"))
    ]
    transactions += transactions[:50]  # the same entities again in one batch
    return resources, transactions


def feast_answer(store, transactions) -> dict[str, list]:
    entity_rows = [
        {
            "customer_id": t.customer_id,
            "merchant_id": t.merchant_id,
            "amount": t.amount,
            "country": t.country,
            "event_ts": t.event_ts,
        }
        for t in transactions
    ]
    service = store.get_feature_service(SERVICE)
    answer = store.get_online_features(features=service, entity_rows=entity_rows, full_feature_names=True)
    # Feast 0.67 drops a python-mode on-demand view's features when full names are asked for (the udf's
    # output names carry no prefix): those come from a second call, by short name.
    (context,) = [p for p in service.feature_view_projections if p.name == "transaction_context"]
    computed = store.get_online_features(
        features=[f"{context.name}:{f.name}" for f in context.features], entity_rows=entity_rows
    ).to_dict()
    return answer.to_dict() | {f"{context.name}__{f.name}": computed[f.name] for f in context.features}


def assert_same(columns: dict[str, list], expected: dict[str, list]) -> None:
    features = [name for name in columns if "__" in name]
    assert len(features) == 28 and set(features) <= set(expected)
    for name in features:
        for got, want in zip(columns[name], expected[name], strict=True):
            if isinstance(want, float) and math.isnan(want):
                assert isinstance(got, float) and math.isnan(got), name
            else:
                assert got == want and type(got) is type(want), (name, got, want)


def lookup_with(reader: str, store, transactions) -> dict[str, list]:
    online = OnlineFeatures(store, SERVICE)
    assert online.reader.read.__name__ == reader
    return online.lookup(transactions, [t.event_ts for t in transactions])


def test_the_sqlite_read_in_one_statement_equals_get_online_features(local):
    resources, transactions = local
    store = resources["feature_store"].store()
    assert_same(
        lookup_with("_read_sqlite_remembered", store, transactions), feast_answer(store, transactions)
    )


def test_remembered_sqlite_rows_follow_every_write_to_the_store(local):
    """Rows read before are answered without a query until the database changes: a commit by another
    connection (PRAGMA data_version) or a write through Feast's own connection (total_changes)."""
    import sqlite3

    from feast.protos.feast.types.Value_pb2 import Value

    resources, transactions = local
    store = resources["feature_store"].store()
    online = OnlineFeatures(store, SERVICE)
    times = [t.event_ts for t in transactions]
    online.lookup(transactions, times)  # remembered now
    reader = online.reader
    (customers,) = [v for v in reader.views if v.join_key == "customer_id"]
    from feast.infra.online_stores.helpers import compute_table_id

    table = compute_table_id(store.config.project, customers.view, False)
    key = reader.serialized_keys(customers, [transactions[0].customer_id])[0]
    name = "customer_stats__txn_count_30d"
    (_, _, path), *_ = reader._sqlite().execute("PRAGMA database_list").fetchall()
    for value, through_feast in ((987_654, False), (123_456, True)):
        update = f'UPDATE "{table}" SET value = ? WHERE entity_key = ? AND feature_name = ?'
        blob = Value(int64_val=value).SerializeToString()
        if through_feast:
            connection = reader._sqlite()
            connection.execute(update, (blob, key, "txn_count_30d"))
            connection.commit()
        else:
            with sqlite3.connect(path) as other:
                other.execute(update, (blob, key, "txn_count_30d"))
        columns = online.lookup(transactions, times)
        assert columns[name][0] == value
        assert_same(columns, feast_answer(store, transactions))


def test_feasts_per_view_online_read_equals_get_online_features(local, monkeypatch):
    from mlplatform.serving import features

    resources, transactions = local
    store = resources["feature_store"].store()
    monkeypatch.setattr(features.OnlineReader, "_choose", lambda self: self._read_each_view)
    assert_same(lookup_with("_read_each_view", store, transactions), feast_answer(store, transactions))


def test_unknown_entities_are_named_whatever_the_store(local):
    resources, transactions = local
    store = resources["feature_store"].store()
    strangers = [
        transactions[0],
        transactions[1].model_copy(update={"customer_id": "C-NOBODY"}),
        transactions[2].model_copy(update={"merchant_id": "M-NOBODY"}),
    ]
    with pytest.raises(PredictionError) as refused:
        OnlineFeatures(store, SERVICE).lookup(strangers, [t.event_ts for t in strangers])
    assert refused.value.status == 422
    assert [(e["type"], e["loc"]) for e in refused.value.errors] == [
        ("unknown_customer", ["body", "transactions", 1, "customer_id"]),
        ("unknown_merchant", ["body", "transactions", 2, "merchant_id"]),
    ]


@pytest.fixture
def redis_store(local):
    """The same registry with a Redis online store (db 13), materialized from the same offline data."""
    redis = pytest.importorskip("redis")
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    from mlplatform.resources.feature_store import COMMON_CONFIG

    local_store = local[0]["feature_store"]
    config = {
        **local_store.store_config(),
        "online_store": {"type": "redis", "connection_string": f"127.0.0.1:6379,db={REDIS_DB}"},
    }
    client.flushdb()
    store = FeatureStore(config=RepoConfig(**COMMON_CONFIG, **config, repo_path=local_store.repo_dir))
    store.materialize(
        datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC), ["customer_stats", "merchant_stats"]
    )
    yield store
    client.flushdb()


def test_the_redis_read_in_one_pipeline_equals_get_online_features(local, redis_store):
    transactions = local[1]
    assert_same(
        lookup_with("_read_redis", redis_store, transactions), feast_answer(redis_store, transactions)
    )
    stranger = [transactions[0].model_copy(update={"customer_id": "C-NOBODY"})]
    with pytest.raises(PredictionError) as refused:  # Feast answers empty values; the engine, unknown
        OnlineFeatures(redis_store, SERVICE).lookup(stranger, [stranger[0].event_ts])
    assert refused.value.errors[0]["type"] == "unknown_customer"
