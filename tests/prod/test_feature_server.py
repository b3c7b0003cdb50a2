"""Feast's feature server on the prod stores, as deploy/k8s/feature-server.yaml runs it.

`mlplatform feature-server` (the container's command) is started as a real process with only the prod
profile's environment: it writes the Feast configuration the Dagster code builds (Postgres SQL registry,
Redis online store, settings as `${NAME}` references) and becomes `feast serve`. Its
`/get-online-features` must answer what the in-process SDK answers on the same stores for the same
transactions, every column of `fraud_model_v1`, the on-demand view's included.

The stores hold the built demo state's marts, copied into a throwaway Postgres database, applied and
materialized to Redis db FEATURE_SERVER_REDIS_DB by the prod profile's own resource. Postgres and Redis
must be reachable: this test fails without them.

Two request shapes, both Feast 0.67's (see the README, "Feature server"): the service's stored features
need `full_feature_names` (its views share feature names), and with full names Feast drops a python-mode
on-demand view's columns, so those are asked for by reference with short names.
"""

import json
import os
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from mlplatform.profiles import build_resources
from mlplatform.settings import PROJECT_ROOT
from tests.prod.conftest import (
    FEATURE_SERVER_REDIS_DB,
    REDIS_HOST,
    REDIS_PORT,
    pg_env,
)
from tests.prod.services import BIN, TELEMETRY_OFF, free_port, http_ok, process, wait_until

pytestmark = pytest.mark.e2e

SERVICE = "fraud_model_v1"
CONTEXT_VIEW = "transaction_context"
MARTS = ("customer_features", "merchant_features")
SAMPLE = 40
REDIS_URL_VAR = "MLPLATFORM_REDIS_URL"


@pytest.fixture(scope="module")
def prod_env(built_state, throwaway_database, tmp_path_factory) -> Iterator[dict[str, str]]:
    """The prod profile's environment on stores holding the built state's features (Postgres registry
    and offline marts, Redis online store), set in this process while the module runs."""
    local = build_resources(profile="local", state=built_state[0])
    online = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=FEATURE_SERVER_REDIS_DB)
    online.flushdb()
    settings = {
        **TELEMETRY_OFF,
        **pg_env(throwaway_database("featsrv")),
        "MLPLATFORM_PROFILE": "prod",
        "MLPLATFORM_STATE_DIR": str(tmp_path_factory.mktemp("featsrv_state")),
        REDIS_URL_VAR: f"{REDIS_HOST}:{REDIS_PORT},db={FEATURE_SERVER_REDIS_DB}",
    }
    with pytest.MonkeyPatch.context() as env:
        for name, value in settings.items():
            env.setenv(name, value)
        prod = build_resources()
        for mart in MARTS:
            prod["warehouse"].write_table(
                "marts", mart, local["warehouse"].read_sql(f"select * from marts.{mart}")
            )
        feature_store = prod["feature_store"]
        feature_store.apply()
        for view in ("customer_stats", "merchant_stats"):
            feature_store.materialize(view, end=datetime.now(UTC))
        yield settings
    online.flushdb()


@pytest.fixture(scope="module")
def server(prod_env, tmp_path_factory) -> Iterator[tuple[str, Path, int]]:
    """`mlplatform feature-server` as the Deployment runs it; yields its URL, its config folder and pid."""
    folder = tmp_path_factory.mktemp("feature_server")
    port = free_port()
    command = [str(BIN / "mlplatform"), "feature-server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--repo-dir", str(folder / "repo")]
    # the worktree's package, whatever the interpreter's editable install points at
    path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    log = folder / "serve.log"
    with process(command, {**os.environ, "PYTHONPATH": path}, log) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: proc.poll() is None and http_ok(f"{url}/health"), 120, f"feast serve (see {log})")
        yield url, folder / "repo", proc.pid


@pytest.fixture(scope="module")
def transactions(built_state) -> list[dict]:
    """Landed transactions of the last day (known customers and merchants), and one of strangers."""
    rows = build_resources(profile="local", state=built_state[0])["warehouse"].read_sql(
        "select * from raw.transactions where _partition_date = (select max(_partition_date) from "
        f"raw.transactions) order by transaction_id limit {SAMPLE}"
    )
    known = [
        {
            "customer_id": r["customer_id"],
            "merchant_id": r["merchant_id"],
            "amount": float(r["amount"]),
            "country": r["country"],
            "event_ts": r["event_ts"].to_pydatetime().replace(tzinfo=UTC),
        }
        for r in rows.to_dict("records")
    ]
    stranger = {**known[0], "customer_id": "C-NOBODY", "merchant_id": "M-NOBODY"}
    return [*known, stranger]


def request_shapes(store) -> list[tuple[list[str], bool]]:
    """The feature references and `full_feature_names` of the two requests that return every column."""
    views = store.get_feature_service(SERVICE).feature_view_projections
    stored = [f"{v.name}:{f.name}" for v in views if v.name != CONTEXT_VIEW for f in v.features]
    on_demand = [f"{v.name}:{f.name}" for v in views if v.name == CONTEXT_VIEW for f in v.features]
    return [(stored, True), (on_demand, False)]


def http_answer(url: str, body: dict) -> dict[str, list]:
    """`POST /get-online-features` as columns by name (Feast answers a list of columns and their names)."""
    request = urllib.request.Request(
        f"{url}/get-online-features",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    names = answer["metadata"]["feature_names"]
    return {name: column["values"] for name, column in zip(names, answer["results"], strict=True)}


def entity_columns(transactions: list[dict], event_ts) -> dict[str, list]:
    """The request's `entities` (JSON has no datetime: `event_ts` maps each one to what is sent)."""
    columns = {name: [t[name] for t in transactions] for name in transactions[0] if name != "event_ts"}
    return {**columns, "event_ts": [event_ts(t["event_ts"]) for t in transactions]}


EVENT_TS_FORMS = {
    "iso8601": lambda at: at.isoformat(),
    "epoch_seconds": lambda at: int(at.timestamp()),  # Feast's UnixTimestamp unit
}


@pytest.mark.parametrize("form", EVENT_TS_FORMS)
def test_the_server_answers_what_the_sdk_answers_for_every_column(prod_env, server, transactions, form):
    """The SDK is given datetimes; the server what a JSON client sends."""
    store = build_resources()["feature_store"].store()
    answered: dict[str, list] = {}
    for features, full_names in request_shapes(store):
        expected = store.get_online_features(
            features=features, entity_rows=transactions, full_feature_names=full_names
        ).to_dict()
        body = {
            "features": features,
            "entities": entity_columns(transactions, EVENT_TS_FORMS[form]),
            "full_feature_names": full_names,
        }
        assert http_answer(server[0], body) == expected
        answered |= expected
    features = {name: values for name, values in answered.items() if name not in transactions[0]}
    assert len(features) == 28  # 25 stored, 3 from the on-demand view
    # not equal by being empty: every known transaction has every feature; the strangers no stored one
    assert all(value is not None for values in features.values() for value in values[:-1])
    assert all(values[-1] is None for name, values in features.items() if "__" in name)


def test_the_whole_service_by_full_names_lacks_the_on_demand_columns(prod_env, server, transactions):
    """Why the README asks for the on-demand features apart: Feast 0.67 drops a python-mode view's
    columns when full names are asked for (the SDK alike). When this fails, one request does it all."""
    body = {
        "feature_service": SERVICE,
        "entities": entity_columns(transactions, EVENT_TS_FORMS["iso8601"]),
        "full_feature_names": True,
    }
    names = http_answer(server[0], body)
    assert not [name for name in names if name.startswith(CONTEXT_VIEW)]
    assert len([name for name in names if "__" in name]) == 25


def test_the_configuration_comes_from_the_environment_and_holds_no_secret(prod_env, server):
    url, repo, pid = server
    config = (repo / "feature_store.yaml").read_text()
    assert f"${{{REDIS_URL_VAR}}}" in config and prod_env[REDIS_URL_VAR] not in config
    assert "${MLPLATFORM_PG_HOST}" in config and "registry_type: sql" in config
    # the CLI became `feast serve` (exec): the orchestrator's SIGTERM reaches the server itself
    assert b"serve" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert http_ok(f"{url}/health")
