"""Online/offline skew from the prediction log: real API over HTTP, real Feast online store, then the
serving_skew asset recomputing every served input offline."""

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from dagster import DagsterInstance

from mlplatform.definitions import all_assets, models
from mlplatform.features.skew import latest_rows
from mlplatform.localserver import api_in_thread
from mlplatform.profiles import build_resources
from mlplatform.serving.app import create_app
from tests.conftest import copy_state, land_transactions, run_assets

pytestmark = pytest.mark.e2e
FRAUD_MONITORING = models["fraud_model"].monitoring


def body(rows) -> dict:
    fields = ("transaction_id", "customer_id", "merchant_id", "currency", "channel", "country")
    return {
        "transactions": [
            {
                **{k: r[k] for k in fields},
                "amount": float(r["amount"]),
                "event_ts": f"{r['event_ts'].isoformat()}+00:00",
            }
            for _, r in rows.iterrows()
        ]
    }


def wait_for_log(resources, day: str, rows: int) -> None:
    """The API logs in the background: wait until `rows` predictions of `day` are on disk."""
    deadline = time.monotonic() + 15
    while len(resources["prediction_log"].read(day)) < rows:
        assert time.monotonic() < deadline, "the predictions were not logged"
        time.sleep(0.1)


def skew_check(resources, day: str):
    with DagsterInstance.ephemeral() as instance:
        result = run_assets(
            all_assets, resources, instance, partition_key=day, selection=[FRAUD_MONITORING.serving_skew]
        )
    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    return metadata, result.get_asset_check_evaluations()[0]


def test_served_inputs_match_feast_until_the_online_store_is_corrupted(built_state, tmp_path):
    state = copy_state(built_state[0], tmp_path / "state")
    resources = build_resources(profile="local", state=state)
    resources["feature_store"].apply()
    warehouse = resources["warehouse"]
    last = warehouse.read_sql("select max(_partition_date) as d from raw.transactions")["d"].iloc[0]
    # transactions after the last feature build: the online store holds exactly the rows valid then
    new = land_transactions(
        warehouse, Path(resources["landing_zone"].landing_dir), last + timedelta(days=1), 40
    )
    logged_day = f"{datetime.now(UTC):%Y-%m-%d}"  # the log is kept by the day of the request

    with api_in_thread(create_app(resources, reload_seconds=60)) as url, httpx.Client(base_url=url) as api:
        assert api.post("/predict/batch", json=body(new.head(30))).status_code == 200
        wait_for_log(resources, logged_day, 30)
        clean, clean_check = skew_check(resources, logged_day)

        # a broken materialization: five customers' 30-day counts are off by 100 in the online store
        store = resources["feature_store"].store()
        customers = warehouse.read_sql("select * from marts.customer_features")
        newest = latest_rows(customers, "customer_id").reset_index()
        victims = newest[newest["customer_id"].isin(new["customer_id"].tail(10))].head(5)
        store.write_to_online_store(
            "customer_stats", victims.assign(txn_count_30d=victims["txn_count_30d"] + 100)
        )
        hit = new[new["customer_id"].isin(victims["customer_id"])]
        assert api.post("/predict/batch", json=body(hit)).status_code == 200
        wait_for_log(resources, logged_day, 30 + len(hit))
        skewed, skewed_check = skew_check(resources, logged_day)

    assert clean["predictions_compared"].value == 30 and clean["max_mismatch_rate"].value == 0.0
    assert clean_check.passed
    assert skewed["predictions_compared"].value == 30 + len(hit)
    assert not skewed_check.passed and skewed_check.severity.value == "ERROR"
    assert "customer_stats__txn_count_30d" in skewed_check.metadata["skewed_features"].value
    stored = warehouse.read_sql(
        f"select feature, mismatches from monitoring.serving_skew where partition_date = '{logged_day}'"
    ).set_index("feature")["mismatches"]
    assert stored["customer_stats__txn_count_30d"] == len(hit)
    assert stored.drop(["customer_stats__txn_count_30d"]).sum() == 0  # nothing else moved
    alert = resources["alerts"].read()[-1]
    assert alert["check"] == "feature_skew" and alert["figure"] > 0.01
