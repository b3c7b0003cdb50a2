"""The prediction API against hostile input, unauthenticated admin calls, offline docs and a bounded
schemathesis run, over real HTTP on 127.0.0.1. The app runs on an empty state (no model: /predict answers
503 once a request is valid), which is all these need: validation, auth and docs come before scoring."""

import json
import re
from pathlib import Path

import httpx
import pytest

from mlplatform.localserver import api_in_thread
from mlplatform.profiles import build_resources
from mlplatform.serving.app import create_app
from mlplatform.serving.routing import RoutingFile, RoutingPolicy
from mlplatform.serving.schemas import EXAMPLE

TOKEN = "test-admin-token"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """(base url, routing file) of an app on an empty state with the admin token set."""
    state = tmp_path_factory.mktemp("hardening")
    resources = build_resources(profile="local", state=state)
    with api_in_thread(create_app(resources, admin_token=TOKEN)) as url:
        yield url, RoutingFile(Path(resources["serving"].routing_file))


@pytest.fixture
def client(api):
    with httpx.Client(base_url=api[0], timeout=30) as http:
        yield http


def raw(body: str) -> bytes:
    return body.encode("utf-8", "surrogatepass")


def example_with(field: str, json_value: str) -> str:
    """The example transaction as JSON text with one field's value replaced verbatim (NaN, 1e309...)."""
    marker = "__REPLACED__"
    return json.dumps({**EXAMPLE, field: marker}).replace(f'"{marker}"', json_value)


HOSTILE = {
    "amount NaN": ("amount", "NaN"),
    "amount Infinity": ("amount", "Infinity"),
    "amount -Infinity": ("amount", "-Infinity"),
    "amount 1e309": ("amount", "1e309"),
    "amount true": ("amount", "true"),
    "event_ts NaN": ("event_ts", "NaN"),
    "event_ts Infinity": ("event_ts", "Infinity"),
    "event_ts year 1": ("event_ts", '"0001-01-01T00:00:00Z"'),
    "event_ts year 9999": ("event_ts", '"9999-12-31T23:59:59Z"'),
    "lone surrogate in customer_id": ("customer_id", '"\\ud800"'),
    "lone surrogate in transaction_id": ("transaction_id", '"ab\\udfff"'),
    "control character in merchant_id": ("merchant_id", '"m\\u0000"'),
}


@pytest.mark.parametrize("field,value", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_input_gets_a_422_naming_the_field_and_the_connection_survives(client, field, value):
    single = client.post("/predict", content=raw(example_with(field, value)), headers=JSON)
    assert single.status_code == 422, single.text
    assert [e["loc"] for e in single.json()["detail"]] == [["body", field]]

    batch_body = '{"transactions": [' + json.dumps(EXAMPLE) + "," + example_with(field, value) + "]}"
    batch = client.post("/predict/batch", content=raw(batch_body), headers=JSON)
    assert batch.status_code == 422, batch.text
    assert [e["loc"] for e in batch.json()["detail"]] == [["body", "transactions", 1, field]]

    # the same keep-alive connection still answers
    assert client.get("/health").json() == {"status": "ok"}


JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[]", b"null", b'"text"', b"\xff\xfe", b'{"transactions": "x"}', b"{" * 5_000],
    ids=["malformed", "array", "null", "string", "not utf-8", "wrong shape", "deeply nested"],
)
def test_malformed_bodies_are_4xx(client, body):
    for path in ("/predict", "/predict/batch"):
        assert 400 <= client.post(path, content=body, headers=JSON).status_code < 500


def test_a_valid_request_without_a_model_is_a_503_that_reveals_nothing(client):
    answer = client.post("/predict", json=EXAMPLE)
    assert answer.status_code == 503
    assert answer.json() == {"detail": [{"type": "no_model", "msg": "no fraud_model version is champion"}]}
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert set(ready.json()) == {"ready", "checks", "served_versions"}
    assert "Error" not in ready.text and "/" not in ready.text  # no exception text, no paths or URIs


def test_reading_or_changing_routing_needs_the_admin_token(api, client):
    _, routing_file = api
    before = routing_file.current()
    canary = {"mode": "canary", "challenger_percent": 50}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        assert client.get("/routing", headers=headers).status_code == 401
        refused = client.put("/routing", json=canary, headers=headers)
        assert refused.status_code == 401, refused.text
        assert "admin token" in refused.text and TOKEN not in refused.text
    assert routing_file.current() == before  # nothing changed

    admin = {"Authorization": f"Bearer {TOKEN}"}
    try:
        changed = client.put("/routing", json=canary, headers=admin)
        assert changed.status_code == 200 and changed.json()["mode"] == "canary"
        assert routing_file.current().mode == "canary"
        assert client.get("/routing", headers=admin).json()["challenger_percent"] == 50
        assert client.put("/routing", json={"mode": "canary"}, headers=admin).status_code == 422
    finally:
        routing_file.write(RoutingPolicy())


def test_the_routing_cli_changes_routing_through_the_api_only_with_the_admin_token(api, monkeypatch):
    """`mlplatform routing --api URL`: the token comes from MLPLATFORM_ADMIN_TOKEN; a missing or wrong
    one is refused by the API (exit code 1, nothing changed), the right one changes what the API serves."""
    from click.testing import CliRunner

    from mlplatform.cli import main

    url, routing_file = api
    before = routing_file.current()
    change = ["routing", "--api", url, "--mode", "canary", "--percent", "20"]
    runner = CliRunner()
    for token in ("", "wrong"):
        monkeypatch.setenv("MLPLATFORM_ADMIN_TOKEN", token)
        refused = runner.invoke(main, change)
        assert refused.exit_code == 1, refused.output
        assert ("401" in refused.output) == bool(token) and "admin token" in refused.output
        assert TOKEN not in refused.output
    assert routing_file.current() == before

    monkeypatch.setenv("MLPLATFORM_ADMIN_TOKEN", TOKEN)
    try:
        changed = runner.invoke(main, change)
        assert changed.exit_code == 0, changed.output
        assert routing_file.current().mode == "canary" and routing_file.current().challenger_percent == 20
        shown = runner.invoke(main, ["routing", "--api", url])
        assert shown.exit_code == 0 and json.loads(shown.output)["challenger_percent"] == 20
        invalid = runner.invoke(main, ["routing", "--api", url, "--mode", "ab"])  # a split needs a share
        assert invalid.exit_code == 1 and "challenger_percent" in invalid.output
    finally:
        routing_file.write(RoutingPolicy())


def test_without_a_configured_token_the_admin_surface_is_off(tmp_path):
    resources = build_resources(profile="local", state=tmp_path)
    with api_in_thread(create_app(resources, admin_token="")) as url, httpx.Client(base_url=url) as http:
        assert http.get("/routing", headers={"Authorization": "Bearer anything"}).status_code == 403
        assert http.put("/routing", json={"mode": "shadow"}).status_code == 403


def test_docs_work_offline_every_asset_comes_from_the_app(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets, page.text
    for asset in assets:
        assert asset.startswith("/"), f"{asset} is not served by the app"
        fetched = client.get(asset)
        assert fetched.status_code == 200 and len(fetched.content) > 100, asset
    assert "/openapi.json" in page.text and client.get("/openapi.json").status_code == 200
