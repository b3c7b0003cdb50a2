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

from mlplatform.definitions import all_assets, all_checks, models
from mlplatform.ingestion.assets import raw_transactions
from mlplatform.localserver import api_in_thread
from mlplatform.profiles import build_resources
from mlplatform.resources import GateBounds, ModelRegistry
from mlplatform.resources.model_registry import CHALLENGER, CHAMPION
from mlplatform.serving.app import create_app
from mlplatform.serving.routing import Mode, RoutingFile, RoutingPolicy
from mlplatform.training.spec import FRAUD_MODEL
from tests.conftest import LENIENT_GATES, copy_state, land_transactions, run_assets
from tests.serving.fuzz import fuzz_openapi

BATCH_PREDICTIONS = models["fraud_model"].batch
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def served(built_state, tmp_path_factory):
    """(base url, resources, transactions of the last day) with a challenger registered and the API up."""
    from dagster import DagsterInstance

    state = copy_state(built_state[0], tmp_path_factory.mktemp("serving") / "state")
    resources = build_resources(profile="local", state=state)
    resources["feature_store"].apply()
    # a challenger only ever comes out of the gates: manual promotion policy, and bounds loose enough for
    # a smaller model (it scores differently from the champion, which these tests need)
    resources["model_registry"] = ModelRegistry(
        **{**resources["model_registry"].model_dump(), "promotion_policy": "manual"}
    )
    resources["fraud_model_gates"] = GateBounds(**LENIENT_GATES)
    challenger_config = {"max_iter": 60, "learning_rate": 0.2, "max_leaf_nodes": 15, "seed": 3}
    with DagsterInstance.ephemeral() as instance:
        trained = materialize(
            [*all_assets, *all_checks],
            selection=AssetSelection.assets(models["fraud_model"].candidate, models["fraud_model"].champion),
            resources=resources,
            instance=instance,
            run_config={"ops": {"fraud_model": {"config": challenger_config}}},
        )
    assert trained.success
    registry = resources["model_registry"]
    assert registry.version_for(FRAUD_MODEL.name, CHALLENGER) != registry.version_for(
        FRAUD_MODEL.name, CHAMPION
    )

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
    champion = resources["model_registry"].version_for(FRAUD_MODEL.name, CHAMPION)
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
        "registry_reachable": True,
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
    challenger = resources["model_registry"].version_for(FRAUD_MODEL.name, CHALLENGER)
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
    challenger = resources["model_registry"].version_for(FRAUD_MODEL.name, CHALLENGER)
    assert set(entries["model_version"]) == {challenger}
    shadow_scores = dict(zip(entries["transaction_id"], entries["score"], strict=True))
    assert any(abs(shadow_scores[p["transaction_id"]] - p["score"]) > 1e-6 for p in plain)  # another model


def test_moving_the_champion_alias_is_picked_up_without_a_restart(served, client):
    _, resources, last_day = served
    registry = resources["model_registry"]
    champion, challenger = (registry.version_for(FRAUD_MODEL.name, a) for a in (CHAMPION, CHALLENGER))
    body = payload(last_day.iloc[2])
    try:
        registry.move_alias(FRAUD_MODEL.name, CHAMPION, challenger)
        deadline = time.monotonic() + 15
        while client.post("/predict", json=body).json()["model_version"] != challenger:
            assert time.monotonic() < deadline, "the API kept serving the old champion"
            time.sleep(0.2)
        assert client.get("/ready").json()["served_versions"]["champion"] == challenger
    finally:
        registry.move_alias(FRAUD_MODEL.name, CHAMPION, champion)
    deadline = time.monotonic() + 15
    while client.post("/predict", json=body).json()["model_version"] != champion:
        assert time.monotonic() < deadline
        time.sleep(0.2)


EMBEDDED_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from fraud_scorer import CompiledModel
model = CompiledModel.load(sys.argv[1])
rows = json.load(open(sys.argv[2]))
heavy = sorted({"dagster", "feast", "mlflow", "sklearn", "pandas"} & set(sys.modules))
print(json.dumps({"scores": model.score_rows(rows).tolist(), "one_by_one": [model.score_one(r) for r in rows],
                  "heavy_imports": heavy}))
"""


def test_api_batch_and_export_give_the_same_scores_for_every_transaction_of_a_day(served, client, tmp_path):
    """A new day lands after the last feature build. batch_predictions (offline point-in-time features),
    /predict one by one (the compiled per-row trees), /predict/batch (the classifier's trees) and the
    embedded export (numpy only, in a separate interpreter) score every transaction of it: the same
    model version and scores to 1e-12 (export: 1e-9), i.e. no training/serving skew and no drift between
    the fast paths. (The MLflow pyfunc leg is the model registry's own test.)"""
    import json
    import subprocess
    import sys

    from dagster import DagsterInstance

    from mlplatform.export import export_model
    from mlplatform.features.retrieval import features_as_of_events
    from mlplatform.inference.scoring import TRANSACTION_FIELDS, load_scoring_model

    _, resources, last_day = served
    day = (last_day["event_ts"].max() + timedelta(days=1)).date()
    new = land_transactions(resources["warehouse"], Path(resources["landing_zone"].landing_dir), day, 150)

    with DagsterInstance.ephemeral() as instance:
        for asset in (raw_transactions, BATCH_PREDICTIONS):
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
    bodies = [payload(r) for _, r in new.sort_values("transaction_id").iterrows()]
    online = client.post("/predict/batch", json={"transactions": bodies})
    online = pd.DataFrame(online.json()["predictions"]).sort_values("transaction_id", ignore_index=True)
    singles = pd.DataFrame([client.post("/predict", json=body).json() for body in bodies])
    assert list(online["model_version"]) == list(batch["model_version"]) == list(singles["model_version"])
    assert online["score"].to_numpy() == pytest.approx(batch["score"].to_numpy(), abs=1e-12, rel=0)
    assert singles["score"].to_numpy() == pytest.approx(batch["score"].to_numpy(), abs=1e-12, rel=0)

    model = load_scoring_model(resources["model_registry"], FRAUD_MODEL.name, CHAMPION)
    folder = export_model(model, tmp_path / "exported")
    transactions = resources["warehouse"].read_sql(
        f"select {', '.join(TRANSACTION_FIELDS)} from raw.transactions "
        f"where _partition_date = '{day:%Y-%m-%d}' order by transaction_id"
    )
    features = features_as_of_events(resources["feature_store"].store(), transactions, model.feature_service)
    rows = features[model.inputs].astype(object).where(features[model.inputs].notna(), None)
    (tmp_path / "rows.json").write_text(json.dumps(rows.to_dict("records")))
    scored = subprocess.run(
        [sys.executable, "-I", "-c", EMBEDDED_SCRIPT, str(folder), str(tmp_path / "rows.json")],
        capture_output=True,
        text=True,
        check=True,
    )
    embedded = json.loads(scored.stdout)
    assert embedded["heavy_imports"] == []
    expected = batch.set_index("transaction_id").loc[features["transaction_id"], "score"].to_numpy()
    assert embedded["scores"] == pytest.approx(expected, abs=1e-9, rel=0)
    assert embedded["one_by_one"] == pytest.approx(expected, abs=1e-9, rel=0)


def test_a_bounded_schemathesis_run_finds_no_server_error_and_no_undocumented_status(served):
    """Every operation of the OpenAPI document, valid and invalid generated requests (25 each), against
    the API serving a real champion: no 5xx, and every status it answers is documented."""
    calls, failures = fuzz_openapi(served[0])
    assert calls > 100
    assert not failures, failures
