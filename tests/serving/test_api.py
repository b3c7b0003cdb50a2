"""The prediction API over real HTTP on 127.0.0.1, on a copy of the fully built medium state.

The challenger is a real second fraud_model version, trained by the fraud_model asset with other
hyperparameters, so champion and challenger give different scores.
"""

import time
from datetime import UTC, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest
from dagster import AssetSelection, materialize

from mlplatform.definitions import all_assets, all_checks
from mlplatform.inference.assets import batch_predictions
from mlplatform.ingestion.assets import raw_transactions
from mlplatform.localserver import api_in_thread
from mlplatform.profiles import build_resources
from mlplatform.resources.model_registry import CHALLENGER, CHAMPION
from mlplatform.serving.app import create_app
from mlplatform.serving.routing import Mode, RoutingFile, RoutingPolicy
from mlplatform.training.fraud_model import MODEL_NAME, fraud_model
from tests.conftest import copy_state, land_transactions, run_assets

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def served(built_state, tmp_path_factory):
    """(base url, resources, transactions of the last day) with a challenger registered and the API up."""
    from dagster import DagsterInstance

    state = copy_state(built_state[0], tmp_path_factory.mktemp("serving") / "state")
    resources = build_resources(profile="local", state=state)
    resources["feature_store"].apply()
    challenger_config = {"max_iter": 60, "learning_rate": 0.2, "max_leaf_nodes": 15, "seed": 3}
    with DagsterInstance.ephemeral() as instance:
        trained = materialize(
            [*all_assets, *all_checks],
            selection=AssetSelection.assets(fraud_model).without_checks(),
            resources=resources,
            instance=instance,
            run_config={"ops": {"fraud_model": {"config": challenger_config}}},
        )
    assert trained.success
    registry = resources["model_registry"]
    assert registry.version_for(MODEL_NAME, CHALLENGER) != registry.version_for(MODEL_NAME, CHAMPION)

    last_day = resources["warehouse"].read_sql(
        "select transaction_id, customer_id, merchant_id, amount, currency, channel, country, event_ts "
        "from raw.transactions where _partition_date = (select max(_partition_date) from raw.transactions)"
    )
    with api_in_thread(create_app(resources, reload_seconds=0.2)) as url:
        yield url, resources, last_day


@pytest.fixture
def client(served):
    with httpx.Client(base_url=served[0], timeout=30) as http:
        yield http


@pytest.fixture
def routing(served):
    """Set the routing policy for one test; back to champion-only afterwards."""
    routing_file = RoutingFile(Path(served[1]["serving"].routing_file))
    yield routing_file.write
    routing_file.write(RoutingPolicy())


def payload(row: pd.Series, event_ts=None) -> dict:
    at = event_ts or row["event_ts"].tz_localize(UTC)
    return {
        **{
            k: row[k]
            for k in ("transaction_id", "customer_id", "merchant_id", "currency", "channel", "country")
        },
        "amount": float(row["amount"]),
        "event_ts": at.isoformat(),
    }


def logged(resources) -> pd.DataFrame:
    return resources["prediction_log"].read()


def test_a_transaction_is_scored_by_the_champion_and_logged(served, client):
    _, resources, last_day = served
    row = last_day.iloc[0]
    response = client.post("/predict", json=payload(row))
    assert response.status_code == 200, response.text
    answer = response.json()
    champion = resources["model_registry"].version_for(MODEL_NAME, CHAMPION)
    assert answer["model_version"] == champion and answer["arm"] == "champion"
    assert 0 <= answer["score"] <= 1 and answer["latency_ms"] > 0
    assert answer["decision"] == ("flag" if answer["score"] >= answer["threshold"] else "approve")
    assert answer["transaction_id"] == row["transaction_id"]

    deadline = time.monotonic() + 10
    while answer["request_id"] not in set(logged(resources).get("request_id", [])):
        assert time.monotonic() < deadline, "the prediction was not logged"
        time.sleep(0.1)
    entry = logged(resources).set_index("request_id").loc[answer["request_id"]]
    assert entry["model_version"] == champion and not entry["shadow"]
    assert entry["features"]["customer_stats__txn_count_30d"] is not None
    assert entry["features"]["amount"] == pytest.approx(float(row["amount"]))


def test_a_batch_is_scored_row_by_row_like_single_predictions(served, client):
    rows = served[2].head(25)
    batch = client.post("/predict/batch", json={"transactions": [payload(r) for _, r in rows.iterrows()]})
    assert batch.status_code == 200, batch.text
    scores = [p["score"] for p in batch.json()["predictions"]]
    singles = [client.post("/predict", json=payload(r)).json()["score"] for _, r in rows.head(5).iterrows()]
    assert scores[:5] == pytest.approx(singles, abs=1e-12)
    assert [p["transaction_id"] for p in batch.json()["predictions"]] == list(rows["transaction_id"])


@pytest.mark.parametrize(
    ("change", "error_type"),
    [
        (lambda p: p.pop("customer_id"), "missing"),
        (lambda p: p.update(amount=-5), "greater_than"),
        (lambda p: p.update(amount="lots"), "float_parsing"),
        (lambda p: p.update(currency="XXX"), "literal_error"),
        (lambda p: p.update(event_ts="yesterday-ish"), "datetime_from_date_parsing"),
        (lambda p: p.update(surprise=1), "extra_forbidden"),
        (lambda p: p.update(customer_id="C-NOBODY"), "unknown_customer"),
        (lambda p: p.update(merchant_id="M-NOBODY"), "unknown_merchant"),
    ],
)
def test_a_bad_payload_gets_a_4xx_that_says_what_is_wrong(served, client, change, error_type):
    body = payload(served[2].iloc[0])
    change(body)
    response = client.post("/predict", json=body)
    assert response.status_code == 422, response.text
    assert error_type in {e["type"] for e in response.json()["detail"]}


def test_malformed_json_and_bad_batches_are_refused(served, client):
    assert (
        client.post(
            "/predict", content=b"{not json", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )
    assert client.post("/predict/batch", json={"transactions": []}).status_code == 422
    one = payload(served[2].iloc[0])
    assert client.post("/predict/batch", json={"transactions": [one] * 1001}).status_code == 422
    unknown = client.post("/predict/batch", json={"transactions": [one, {**one, "customer_id": "C-NOBODY"}]})
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "transactions", 1, "customer_id"]


def test_health_readiness_metrics_and_openapi(served, client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {
        "champion_loaded": True,
        "online_store": True,
    }
    client.post("/predict", json=payload(served[2].iloc[1]))
    metrics = client.get("/metrics").text
    assert 'mlplatform_predictions_total{arm="champion"' in metrics
    assert 'mlplatform_request_latency_seconds_count{endpoint="predict"}' in metrics
    assert 'mlplatform_rejected_requests_total{reason="unknown_entity"}' in metrics
    assert set(client.get("/openapi.json").json()["paths"]) >= {"/predict", "/predict/batch", "/ready"}


def test_a_canary_sends_its_share_of_customers_to_the_challenger_and_sticks(served, client, routing):
    _, resources, last_day = served
    routing(RoutingPolicy(mode=Mode.CANARY, challenger_percent=30))
    customers = last_day.drop_duplicates("customer_id").head(300)
    body = {"transactions": [payload(r) for _, r in customers.iterrows()]}
    first = client.post("/predict/batch", json=body).json()["predictions"]
    share = sum(p["arm"] == "challenger" for p in first) / len(first)
    assert share == pytest.approx(0.30, abs=0.08)
    challenger = resources["model_registry"].version_for(MODEL_NAME, CHALLENGER)
    assert {p["model_version"] for p in first if p["arm"] == "challenger"} == {challenger}
    again = client.post("/predict/batch", json=body).json()["predictions"]
    assert [p["arm"] for p in again] == [p["arm"] for p in first]


def test_ab_records_the_arm_of_every_prediction(served, client, routing):
    _, resources, last_day = served
    routing(RoutingPolicy(mode=Mode.AB, challenger_percent=50))
    rows = last_day.drop_duplicates("customer_id").head(40)
    answers = client.post("/predict/batch", json={"transactions": [payload(r) for _, r in rows.iterrows()]})
    request_id = answers.json()["request_id"]
    arms = {p["transaction_id"]: p["arm"] for p in answers.json()["predictions"]}
    assert set(arms.values()) == {"champion", "challenger"}
    deadline = time.monotonic() + 10
    while (entries := logged(resources)).empty or (entries["request_id"] == request_id).sum() < len(rows):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    entries = entries[entries["request_id"] == request_id]
    assert dict(zip(entries["transaction_id"], entries["arm"], strict=True)) == arms
    assert set(entries["mode"]) == {"ab"}


def test_shadow_scores_the_challenger_without_changing_the_response(served, client, routing):
    _, resources, last_day = served
    rows = last_day.head(10)
    body = {"transactions": [payload(r) for _, r in rows.iterrows()]}
    plain = client.post("/predict/batch", json=body).json()["predictions"]
    routing(RoutingPolicy(mode=Mode.SHADOW))
    shadowed = client.post("/predict/batch", json=body).json()
    keep = ("score", "decision", "model_version", "arm", "threshold")
    assert [{k: p[k] for k in keep} for p in shadowed["predictions"]] == [
        {k: p[k] for k in keep} for p in plain
    ]

    deadline = time.monotonic() + 10
    while True:
        entries = logged(resources)
        entries = entries[(entries["request_id"] == shadowed["request_id"]) & entries["shadow"].astype(bool)]
        if len(entries) == len(rows):
            break
        assert time.monotonic() < deadline, "the shadow predictions were not logged"
        time.sleep(0.1)
    challenger = resources["model_registry"].version_for(MODEL_NAME, CHALLENGER)
    assert set(entries["model_version"]) == {challenger}
    shadow_scores = dict(zip(entries["transaction_id"], entries["score"], strict=True))
    assert any(abs(shadow_scores[p["transaction_id"]] - p["score"]) > 1e-6 for p in plain)  # another model


def test_moving_the_champion_alias_is_picked_up_without_a_restart(served, client):
    _, resources, last_day = served
    registry = resources["model_registry"]
    champion, challenger = (registry.version_for(MODEL_NAME, a) for a in (CHAMPION, CHALLENGER))
    body = payload(last_day.iloc[2])
    try:
        registry.move_alias(MODEL_NAME, CHAMPION, challenger)
        deadline = time.monotonic() + 15
        while client.post("/predict", json=body).json()["model_version"] != challenger:
            assert time.monotonic() < deadline, "the API kept serving the old champion"
            time.sleep(0.2)
        assert client.get("/ready").json()["served_versions"]["champion"] == challenger
    finally:
        registry.move_alias(MODEL_NAME, CHAMPION, champion)
    deadline = time.monotonic() + 15
    while client.post("/predict", json=body).json()["model_version"] != champion:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_batch_scoring_equals_online_scoring_for_the_same_transaction(served, client):
    """A new day lands after the last feature build: batch_predictions (offline point-in-time features)
    and /predict (online store) must give the same features and score, i.e. no training/serving skew."""
    from dagster import DagsterInstance

    _, resources, last_day = served
    day = (last_day["event_ts"].max() + timedelta(days=1)).date()
    new = land_transactions(resources["warehouse"], Path(resources["landing_zone"].landing_dir), day, 20)

    with DagsterInstance.ephemeral() as instance:
        for asset in (raw_transactions, batch_predictions):
            result = run_assets(
                all_assets,
                resources,
                instance,
                partition_key=f"{day:%Y-%m-%d}",
                selection=AssetSelection.assets(asset),
            )
            assert result.success
    batch = resources["warehouse"].read_sql(
        f"select transaction_id, score, model_version from inference.batch_predictions "
        f"where _partition_date = '{day:%Y-%m-%d}' order by transaction_id"
    )
    assert len(batch) == len(new)
    online = client.post("/predict/batch", json={"transactions": [payload(r) for _, r in new.iterrows()]})
    online = pd.DataFrame(online.json()["predictions"]).sort_values("transaction_id", ignore_index=True)
    assert list(online["model_version"]) == list(batch["model_version"])
    assert online["score"].to_numpy() == pytest.approx(batch["score"].to_numpy(), abs=1e-9)
