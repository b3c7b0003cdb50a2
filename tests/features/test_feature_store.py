"""Feast on a built state: registry, point-in-time training sets, online store, skew, leakage, serving."""

import json
import urllib.request
from datetime import timedelta

import pandas as pd
import pytest
from dagster import AssetSelection, DagsterInstance

from mlplatform.definitions import all_assets, models
from mlplatform.features.assets import feast_registry, online_customer_stats
from mlplatform.features.retrieval import features_as_of_events, historical_features
from mlplatform.features.skew import latest_rows
from mlplatform.localserver import feast_server
from mlplatform.profiles import build_resources
from tests.conftest import copy_state, run_assets
from tests.features.test_duckdb_offline_store import build_store, events

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def built(built_state):
    state, _ = built_state
    return state, build_resources(profile="local", state=state)


def mart(warehouse, name: str) -> pd.DataFrame:
    return warehouse.read_sql(f"select * from marts.{name}")


def test_registry_holds_views_request_features_and_the_model_service(built):
    store = built[1]["feature_store"].store()
    views = {"customer_stats", "merchant_stats", "customer_velocity"}  # the last pushed from the stream
    assert {v.name for v in store.list_feature_views()} == views
    assert [v.name for v in store.list_on_demand_feature_views()] == ["transaction_context"]
    service = store.get_feature_service("fraud_model_v1")
    assert {p.name for p in service.feature_view_projections} == {
        "customer_stats",
        "merchant_stats",
        "transaction_context",
    }


def test_training_set_joins_the_features_valid_at_each_event(built):
    """Every row's features are the daily mart rows valid at its event (the newest at or before it: the
    row of the event's midnight) and the request-time features computed from them; compared column by
    column over the whole set."""
    warehouse = built[1]["warehouse"]
    rows = warehouse.read_sql("select * from training.training_set")
    labels = mart(warehouse, "training_labels")
    assert len(rows) == len(labels) and set(rows["transaction_id"]) == set(labels["transaction_id"])

    rows["valid_from"] = pd.to_datetime(rows["event_ts"]).dt.floor("D")
    customers = mart(warehouse, "customer_features")[
        ["customer_id", "feature_ts", "txn_count_7d", "amount_avg_30d", "home_country"]
    ].rename(columns=lambda c: c if c == "customer_id" else f"mart_{c}")
    merchants = mart(warehouse, "merchant_features")[
        ["merchant_id", "feature_ts", "reported_fraud_count_30d"]
    ].rename(columns=lambda c: c if c == "merchant_id" else f"mart_{c}")
    joined = rows.merge(
        customers.rename(columns={"mart_feature_ts": "valid_from"}),
        on=["customer_id", "valid_from"],
        how="left",
        indicator="customer_row",
        validate="many_to_one",
    ).merge(
        merchants.rename(columns={"mart_feature_ts": "valid_from"}),
        on=["merchant_id", "valid_from"],
        how="left",
        indicator="merchant_row",
        validate="many_to_one",
    )
    unknown = joined["customer_row"] == "left_only"
    assert joined.loc[unknown, "customer_stats__txn_count_7d"].isna().all()
    known = joined[~unknown]
    assert len(known) > len(rows) / 2

    def same(served: str, expected: pd.Series) -> None:
        pd.testing.assert_series_equal(
            known[served].astype(float), expected.astype(float), check_names=False, rtol=1e-6
        )

    same("customer_stats__txn_count_7d", known["mart_txn_count_7d"])
    same("customer_stats__amount_avg_30d", known["mart_amount_avg_30d"])
    assert (known["customer_stats__home_country"] == known["mart_home_country"]).all()
    same("transaction_context__amount_to_avg_30d", known["amount"] / known["mart_amount_avg_30d"])
    same("transaction_context__hour_of_day", pd.to_datetime(known["event_ts"]).dt.hour)
    same("transaction_context__is_foreign", known["country"] != known["mart_home_country"])
    merchant_known = known["merchant_row"] == "both"
    assert merchant_known.any()
    pd.testing.assert_series_equal(
        known.loc[merchant_known, "merchant_stats__reported_fraud_count_30d"].astype(float),
        known.loc[merchant_known, "mart_reported_fraud_count_30d"].astype(float),
        check_names=False,
    )
    assert known.loc[~merchant_known, "merchant_stats__txn_count_30d"].isna().all()


def test_the_whole_service_comes_in_one_call_for_every_event_in_order(built):
    resources = built[1]
    spine = mart(resources["warehouse"], "training_labels").head(3_000)
    store = resources["feature_store"].store()
    whole = features_as_of_events(store, spine.drop(columns=["home_country", "category"]), "fraud_model_v1")
    assert whole["transaction_id"].tolist() == spine["transaction_id"].tolist()


def test_an_offline_store_that_drops_or_merges_events_is_refused(tmp_path):
    """Feast's file store drops an event when one view has no earlier row and merges two events of one
    customer in the same second: training sets and batch scoring refuse it, naming the stores they take."""
    file_store = build_store(tmp_path, {"type": "file"})
    with pytest.raises(ValueError, match="keeps every event"):
        historical_features(file_store, events(), "any_service")


def test_online_store_serves_each_entitys_newest_offline_row(built):
    store, warehouse = built[1]["feature_store"].store(), built[1]["warehouse"]
    expected = latest_rows(mart(warehouse, "customer_features"), "customer_id")
    online = (
        store.get_online_features(
            features=[
                "customer_stats:txn_count_30d",
                "customer_stats:amount_sum_30d",
                "customer_stats:home_country",
            ],
            entity_rows=[{"customer_id": c} for c in expected.index],
        )
        .to_df()
        .set_index("customer_id")
    )
    assert (online["txn_count_30d"] == expected["txn_count_30d"]).all()
    assert online["amount_sum_30d"].to_numpy() == pytest.approx(expected["amount_sum_30d"].to_numpy())
    assert (online["home_country"] == expected["home_country"]).all()


def test_skew_check_catches_one_corrupted_online_value(built, tmp_path):
    state = copy_state(built[0], tmp_path / "state")
    resources = build_resources(profile="local", state=state)
    store = resources["feature_store"].store()
    newest = latest_rows(mart(resources["warehouse"], "customer_features"), "customer_id").reset_index()
    corrupted = newest.head(1).assign(txn_count_30d=newest["txn_count_30d"].iloc[0] + 1)
    store.write_to_online_store("customer_stats", corrupted)

    with DagsterInstance.ephemeral() as instance:
        result = run_assets(
            all_assets, resources, instance, selection=AssetSelection.checks_for_assets(online_customer_stats)
        )
    evaluation = next(
        e for e in result.get_asset_check_evaluations() if e.check_name == "no_online_offline_skew"
    )
    assert not evaluation.passed
    assert evaluation.metadata["mismatches"].value == 1


def test_planted_leak_fails_the_leakage_check(built, tmp_path):
    """Features that claim validity from the start of their own day include that day's later transactions."""
    state = copy_state(built[0], tmp_path / "state")
    resources = build_resources(profile="local", state=state)
    for exported in (state / "feast" / "data" / "customer_features").glob("*/*.parquet"):  # a file a month
        leaky = pd.read_parquet(exported)
        leaky["feature_ts"] = leaky["feature_ts"] - timedelta(days=1)
        leaky.to_parquet(exported)

    with DagsterInstance.ephemeral() as instance:
        result = run_assets(
            all_assets, resources, instance, selection=[feast_registry, models["fraud_model"].training_set]
        )
    evaluation = next(
        e for e in result.get_asset_check_evaluations() if e.check_name == "no_point_in_time_leakage"
    )
    assert not evaluation.passed
    assert evaluation.metadata["values_differing"].value > 0
    assert not result.success  # blocking: the run fails, nothing downstream of training_set runs


def test_feast_serve_answers_with_the_materialized_values(built, tmp_path):
    resources = built[1]
    with feast_server(resources["feature_store"], tmp_path / "repo") as port:
        expected = latest_rows(mart(resources["warehouse"], "customer_features"), "customer_id").head(5)
        body = json.dumps(
            {"features": ["customer_stats:txn_count_7d"], "entities": {"customer_id": list(expected.index)}}
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/get-online-features",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        answer = json.loads(urllib.request.urlopen(request, timeout=30).read())
    names = answer["metadata"]["feature_names"]
    values = answer["results"][names.index("txn_count_7d")]["values"]
    assert values == [int(v) for v in expected["txn_count_7d"]]
