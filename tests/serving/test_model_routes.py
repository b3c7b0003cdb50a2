"""`POST /models/<name>/predict`: every declared model other than the transaction model, served by entity
key, over real HTTP on 127.0.0.1, against the real MLflow registry and Feast online store of a copy of the
built state (merchant_risk has a champion there), plus an app on an empty state for the routes' contract.
"""

import json
import math
import time

import httpx
import pandas as pd
import pytest

from mlplatform.localserver import api_in_thread
from mlplatform.profiles import build_resources
from mlplatform.resources.model_registry import CHAMPION
from mlplatform.serving.app import create_app
from mlplatform.serving.schemas import MAX_BATCH
from mlplatform.training.spec import FRAUD_MODEL, load_specs
from tests.conftest import copy_applied_state
from tests.serving.fuzz import fuzz_openapi

MODEL = "merchant_risk"
ROUTE = f"/models/{MODEL}/predict"
JSON = {"content-type": "application/json"}
e2e = pytest.mark.e2e


@pytest.fixture(scope="module")
def served(built_state, tmp_path_factory):
    """(base url, resources, merchants with features in the online store) with the API up."""
    _, resources = copy_applied_state(built_state[0], tmp_path_factory.mktemp("model_routes") / "state")
    merchants = list(
        resources["warehouse"].read_sql(
            "select distinct merchant_id from marts.merchant_features order by merchant_id"
        )["merchant_id"]
    )
    with api_in_thread(create_app(resources, reload_seconds=0.2)) as url:
        yield url, resources, merchants


@pytest.fixture
def client(served):
    with httpx.Client(base_url=served[0], timeout=30) as http:
        yield http


def rows(*merchants: str) -> dict:
    return {"rows": [{"merchant_id": m} for m in merchants]}


def expected(resources, merchants: list[str], model=None) -> pd.DataFrame:
    """The champion's `ScoringModel.score` on the features Feast's `get_online_features` answers."""
    from mlplatform.inference.scoring import load_scoring_model

    model = model or load_scoring_model(resources["model_registry"], MODEL, CHAMPION)
    store = resources["feature_store"].store()
    features = store.get_online_features(
        features=store.get_feature_service(model.feature_service),
        entity_rows=[{"merchant_id": m} for m in merchants],
        full_feature_names=True,
    ).to_df()
    return features.join(model.score(features[model.inputs]))


@pytest.mark.parametrize("count", [1, 40], ids=["one row (compiled trees)", "40 rows (classifier's trees)"])
def test_scores_equal_the_champion_on_the_same_online_features(served, client, count):
    _, resources, merchants = served
    asked = [*merchants[:count], "M-NOBODY"] if count > 1 else merchants[:1]
    response = client.post(ROUTE, json=rows(*asked))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"request_id", "predictions", "latency_ms"}
    predictions = pd.DataFrame(answer["predictions"])
    assert list(predictions.columns) == [
        "merchant_id",
        "score",
        "decision",
        "threshold",
        "model_name",
        "model_version",
        "known_entity",
    ]
    want = expected(resources, asked)
    assert list(predictions["merchant_id"]) == asked
    assert predictions["score"].to_numpy() == pytest.approx(want["score"].to_numpy(), abs=1e-12, rel=0)
    champion = resources["model_registry"].version_for(MODEL, CHAMPION)
    assert set(predictions["model_name"]) == {MODEL} and set(predictions["model_version"]) == {champion}
    (threshold,) = set(predictions["threshold"])
    flag = predictions["score"] >= threshold
    assert list(predictions["decision"]) == ["flag" if f else "pass" for f in flag]
    assert list(predictions["decision"] == "flag") == list(want["decision"] == 1)
    assert list(predictions["known_entity"]) == [m != "M-NOBODY" for m in asked]


def test_an_unknown_entity_is_scored_from_missing_features_and_said_so(served, client):
    _, resources, merchants = served
    response = client.post(ROUTE, json=rows("M-NOBODY", merchants[0], "M-NOBODY"))
    assert response.status_code == 200, response.text
    answers = response.json()["predictions"]
    assert [a["known_entity"] for a in answers] == [False, True, False]
    want = expected(resources, ["M-NOBODY"])
    assert want.filter(like="merchant_stats__").isna().all(axis=None)  # Feast has nothing for it either
    assert answers[0]["score"] == pytest.approx(want["score"].iloc[0], abs=1e-12, rel=0)
    assert answers[2]["score"] == answers[0]["score"] and math.isfinite(answers[0]["score"])


def raw_rows(json_value: str) -> bytes:
    """A body whose one row's merchant_id is `json_value` verbatim (NaN, a lone surrogate...)."""
    return ('{"rows": [{"merchant_id": "M1"}, {"merchant_id": ' + json_value + "}]}").encode(
        "utf-8", "surrogatepass"
    )


KEY = ["body", "rows", 1, "merchant_id"]
HOSTILE = {
    "missing key": (b'{"rows": [{"merchant_id": "M1"}, {}]}', KEY, "missing"),
    "number": (raw_rows("42"), KEY, "string_type"),
    "NaN": (raw_rows("NaN"), KEY, "string_type"),
    "Infinity": (raw_rows("Infinity"), KEY, "string_type"),
    "null": (raw_rows("null"), KEY, "string_type"),
    "lone surrogate": (raw_rows('"M\\ud800"'), KEY, "string_unicode"),
    "control character": (raw_rows('"M\\u0000"'), KEY, "value_error"),
    "empty key": (raw_rows('""'), KEY, "string_too_short"),
    "key too long": (raw_rows(json.dumps("M" * 65)), KEY, "string_too_long"),
    "extra field": (
        b'{"rows": [{"merchant_id": "M1", "x": 1}]}',
        ["body", "rows", 0, "x"],
        "extra_forbidden",
    ),
    "another model's key": (
        b'{"rows": [{"customer_id": "C1"}]}',
        ["body", "rows", 0, "merchant_id"],
        "missing",
    ),
    "empty list": (b'{"rows": []}', ["body", "rows"], "too_short"),
    "too many rows": (
        json.dumps(rows(*(["M1"] * (MAX_BATCH + 1)))).encode(),
        ["body", "rows"],
        "too_long",
    ),
    "rows not a list": (b'{"rows": {"merchant_id": "M1"}}', ["body", "rows"], "list_type"),
    "no rows": (b"{}", ["body", "rows"], "missing"),
    "rows as a bare list": (b'[{"merchant_id": "M1"}]', ["body"], "model_attributes_type"),
}


@pytest.mark.parametrize(("body", "loc", "error_type"), HOSTILE.values(), ids=HOSTILE.keys())
def test_a_bad_body_is_a_422_naming_the_field_and_the_connection_survives(client, body, loc, error_type):
    response = client.post(ROUTE, content=body, headers=JSON)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert {"loc": loc, "type": error_type} in [{"loc": e["loc"], "type": e["type"]} for e in errors], errors
    assert "Traceback" not in response.text
    assert client.get("/health").json() == {"status": "ok"}


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"null", b'"text"', b"{" * 5_000])
def test_malformed_bodies_are_4xx(client, body):
    assert 400 <= client.post(ROUTE, content=body, headers=JSON).status_code < 500


@pytest.mark.parametrize("name", ["nope", "fraud_model", "MERCHANT_RISK", "a b"])
def test_an_unknown_model_is_a_404_that_names_the_served_ones(client, name):
    response = client.post(f"/models/{name}/predict", json=rows("M1"))
    assert response.status_code == 404, response.text
    (error,) = response.json()["detail"]
    assert error["type"] == "unknown_model" and error["loc"] == ["path", "model"]
    assert error["input"] == name
    if name == FRAUD_MODEL.name:
        assert "/predict and /predict/batch" in error["msg"]
    else:
        assert ROUTE in error["msg"]
    assert 'mlplatform_rejected_requests_total{reason="unknown_model"}' in client.get("/metrics").text


def test_moving_the_champion_alias_is_picked_up_and_no_champion_is_a_503(served, client):
    """A second merchant_risk version (the champion's model registered again, from its own run) is
    served within seconds of the alias moving to it; with no champion the route answers 503 `no_model`
    and scores again once the alias is back."""
    _, resources, merchants = served
    registry = resources["model_registry"]
    champion = registry.version_for(MODEL, CHAMPION)
    mlflow = registry.client()
    current = mlflow.get_model_version(MODEL, champion)
    source = mlflow.get_model_version_download_uri(MODEL, champion)
    second = mlflow.create_model_version(MODEL, source, run_id=current.run_id).version
    body = rows(*merchants[:3])

    def served_version() -> str | None:
        response = client.post(ROUTE, json=body)
        if response.status_code == 503:
            assert response.json() == {
                "detail": [{"type": "no_model", "msg": f"no {MODEL} version is champion"}]
            }
            return None
        assert response.status_code == 200, response.text
        (version,) = {p["model_version"] for p in response.json()["predictions"]}
        return version

    def wait_for(version: str | None) -> None:
        deadline = time.monotonic() + 20
        while served_version() != version:
            assert time.monotonic() < deadline, f"the API did not follow the alias to {version}"
            time.sleep(0.2)

    before = client.post(ROUTE, json=body).json()["predictions"]
    try:
        registry.move_alias(MODEL, CHAMPION, str(second))
        wait_for(str(second))
        after = client.post(ROUTE, json=body).json()["predictions"]
        assert [p["score"] for p in after] == [p["score"] for p in before]  # the same model, re-registered
        registry.move_alias(MODEL, CHAMPION, None)
        wait_for(None)
    finally:
        registry.move_alias(MODEL, CHAMPION, champion)
    wait_for(champion)
    metrics = client.get("/metrics").text
    assert 'mlplatform_rejected_requests_total{reason="no_model"}' in metrics


def test_predictions_are_counted_under_the_model_name(served, client):
    _, resources, merchants = served
    assert client.post(ROUTE, json=rows(*merchants[:5])).status_code == 200
    metrics = client.get("/metrics").text
    champion = resources["model_registry"].version_for(MODEL, CHAMPION)
    counted = [
        line
        for line in metrics.splitlines()
        if line.startswith("mlplatform_predictions_total{")
        and f'model="{MODEL}"' in line
        and f'model_version="{champion}"' in line
    ]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in counted) >= 5
    assert f'mlplatform_request_latency_seconds_count{{endpoint="{ROUTE}"}}' in metrics
    assert f'mlplatform_served_model_version{{arm="champion",model="{MODEL}"}} {float(champion)}' in metrics


def test_the_transaction_model_keeps_its_routes_and_each_model_logs_under_its_name(served, client):
    _, resources, merchants = served
    row = (
        resources["warehouse"]
        .read_sql(
            "select transaction_id, customer_id, merchant_id, amount, currency, channel, country "
            "from raw.transactions order by transaction_id limit 1"
        )
        .iloc[0]
    )
    answer = client.post("/predict", json={**row.to_dict(), "amount": float(row["amount"])})
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_name"] == FRAUD_MODEL.name and answer.json()["decision"] in (
        "flag",
        "approve",
    )
    entities = client.post(ROUTE, json=rows(merchants[0], "M-NOBODY"))
    request_id = entities.json()["request_id"]

    def logged() -> pd.DataFrame:
        log = resources["prediction_log"].read()
        return log[log["request_id"] == request_id] if "request_id" in log else log.iloc[:0]

    deadline = time.monotonic() + 10
    while len(logged()) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    log = resources["prediction_log"].read()
    assert row["transaction_id"] in set(log.loc[log["model_name"] == FRAUD_MODEL.name, "transaction_id"])
    mine = logged()
    assert list(mine["model_name"]) == [MODEL, MODEL] and list(mine["merchant_id"]) == [
        merchants[0],
        "M-NOBODY",
    ]
    answered = [p["score"] for p in entities.json()["predictions"]]
    assert list(mine["score"]) == pytest.approx(answered, rel=1e-12)  # pandas parses JSON floats to ~1e-15
    model = resources["model_registry"].version_for(MODEL, CHAMPION)
    assert set(mine["model_version"]) == {model}
    assert list(mine["latency_ms"]) == pytest.approx([entities.json()["latency_ms"]] * 2, rel=1e-12)
    assert set(mine["features"].iloc[0]) == set(
        expected(resources, merchants[:1]).filter(like="merchant_stats__")
    )


def test_the_route_is_documented_in_openapi(client):
    document = client.get("/openapi.json").json()
    operation = document["paths"][ROUTE]["post"]
    assert set(operation["responses"]) == {"200", "400", "422", "503"}
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/MerchantRiskPredictions"
    )
    schemas = document["components"]["schemas"]
    assert schemas["MerchantRiskEntity"]["required"] == ["merchant_id"]
    assert schemas["MerchantRiskPrediction"]["properties"]["decision"]["enum"] == ["flag", "pass"]
    assert "404" in document["paths"]["/models/{model}/predict"]["post"]["responses"]
    assert f"/models/{FRAUD_MODEL.name}/predict" not in document["paths"]


def test_a_bounded_schemathesis_run_of_the_model_routes_finds_no_server_error(served):
    """Valid and invalid generated requests (25 each) for the operations under /models: no 5xx, and every
    status answered is documented."""
    calls, failures = fuzz_openapi(served[0], "/models/")
    assert calls >= 50
    assert not failures, failures


@pytest.fixture(scope="module")
def empty_state_api(tmp_path_factory):
    """An app on an empty state (no model registered) with a third, made-up spec beside the committed
    ones: its route comes from the spec alone."""
    specs = load_specs()
    specs["shop_risk"] = specs[MODEL].model_copy(update={"name": "shop_risk"})
    resources = build_resources(profile="local", state=tmp_path_factory.mktemp("model_routes_empty"))
    with api_in_thread(create_app(resources, specs=specs)) as url:
        yield url


def test_every_declared_model_but_the_transaction_model_gets_a_route(empty_state_api):
    with httpx.Client(base_url=empty_state_api, timeout=30) as http:
        paths = http.get("/openapi.json").json()["paths"]
        assert {p for p in paths if p.startswith("/models/")} == {
            ROUTE,
            "/models/shop_risk/predict",
            "/models/{model}/predict",
        }
        for name in (MODEL, "shop_risk"):
            answer = http.post(f"/models/{name}/predict", json=rows("M1"))
            assert answer.status_code == 503, answer.text
            assert answer.json() == {
                "detail": [{"type": "no_model", "msg": f"no {name} version is champion"}]
            }
            invalid = http.post(f"/models/{name}/predict", json={"rows": [{"merchant_id": 1}]})
            assert invalid.status_code == 422  # validation comes before the model
