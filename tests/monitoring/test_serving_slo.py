"""Serving SLOs: each model's route is judged on its own day of traffic from the prediction log (p99 latency,
server errors), never on a quiet day; a champion on probation whose own traffic breaks it is rolled back,
once. The traffic is real: requests over HTTP to the prediction API on a copy of the built state."""

import time
from datetime import UTC, datetime, timedelta

import httpx
import pandas as pd
import pytest
from dagster import DagsterInstance, materialize

from mlplatform.localserver import api_in_thread
from mlplatform.monitoring.slo import ERROR_RATE_CHECK, LATENCY_CHECK, build_slo, serving_day
from mlplatform.profiles import build_resources
from mlplatform.resources.model_registry import CHAMPION, PREVIOUS
from mlplatform.resources.prediction_log import failure_entry
from mlplatform.serving.app import create_app
from mlplatform.training.gates import GateResult, Verdict
from mlplatform.training.registry import promote
from mlplatform.training.spec import ModelSpecError, ServingSlo, load_specs
from tests.conftest import copy_applied_state

MODEL = "merchant_risk"
ROUTE = f"/models/{MODEL}/predict"
SPEC = load_specs()[MODEL]


def log_rows(model: str, request: str, version: str, latency: float, rows: int = 1, **extra) -> list[dict]:
    return [
        {
            "model_name": model,
            "request_id": request,
            "model_version": version,
            "latency_ms": latency,
            "shadow": False,
            **extra,
        }
        for _ in range(rows)
    ]


def test_a_day_counts_each_request_once_with_its_failures_and_not_the_shadow_or_other_models():
    log = pd.DataFrame(
        [
            *log_rows(MODEL, "a", "2", 10.0, rows=3),  # a batch request: one latency, one request
            *log_rows(MODEL, "b", "2", 30.0),
            *log_rows(MODEL, "c", "3", 900.0, shadow=True),  # what a challenger would have said
            *log_rows("fraud_model", "d", "7", 500.0),
            {"model_name": MODEL, "request_id": "e", "status": 503, "error": "no_model"},
        ]
    )
    day = serving_day(log, MODEL, min_requests=3)
    assert (day.requests, day.errors, day.served_by) == (3, 1, "2")
    assert day.latency_p99_ms == pytest.approx(29.8)
    slo = ServingSlo(max_p99_latency_ms=25, max_error_rate=0.5)
    assert day.breaches(slo) == ["p99 latency 29.8 ms > 25 ms"]
    assert day.breaches(slo.model_copy(update={"max_error_rate": 0.2})) == [
        "p99 latency 29.8 ms > 25 ms",
        "error rate 33.33% > 20.00%",
    ]
    quiet = serving_day(log, MODEL, min_requests=4)
    assert quiet.latency_p99_ms is None and quiet.reason == "3 requests logged, 4 needed"
    assert quiet.breaches(slo) == []  # not judged: no verdict either way
    assert serving_day(pd.DataFrame(), MODEL, min_requests=1).requests == 0
    # every request failed: the error rate is judged, the latency has nothing to judge (not 0 ms)
    failures = pd.DataFrame(
        [{"model_name": MODEL, "request_id": r, "status": 503, "error": "no_model"} for r in "xyz"]
    )
    outage = serving_day(failures, MODEL, min_requests=3)
    assert outage.judged and outage.latency_p99_ms is None and outage.error_rate == 1.0
    assert outage.breaches(slo) == ["error rate 100.00% > 50.00%"]


def test_a_day_when_every_request_failed_judges_the_errors_and_not_a_latency(tmp_path):
    resources = build_resources(profile="local", state=tmp_path)
    writer = resources["prediction_log"].writer()
    for _ in range(SPEC.slo.serving.min_requests):
        writer.record(failure_entry(MODEL, 503, "no_model"))
    writer.close()
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [build_slo(SPEC).serving],
            partition_key=f"{datetime.now(UTC):%Y-%m-%d}",
            resources=resources,
            instance=instance,
        )
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    latency, errors = checks[LATENCY_CHECK], checks[ERROR_RATE_CHECK]
    assert not latency.passed and latency.metadata["judged"].value is False
    assert "no request was answered" in (latency.description or "")
    assert not errors.passed and errors.metadata["error_rate"].value == 1.0


def test_a_serving_slo_out_of_range_names_the_field():
    with pytest.raises(ModelSpecError, match=r"slo\.serving\.max_error_rate: Input should be less than 1"):
        SPEC.updated({"slo.serving.max_error_rate": 1.5})


def wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.mark.e2e
def test_serving_slo_judged_from_real_traffic_and_a_breach_on_probation_rolls_back(built_state, tmp_path):
    _, resources = copy_applied_state(built_state[0], tmp_path / "state")
    registry, log = resources["model_registry"], resources["prediction_log"]
    merchants = list(
        resources["warehouse"].read_sql("select distinct merchant_id from marts.merchant_features limit 3")[
            "merchant_id"
        ]
    )
    today = f"{datetime.now(UTC):%Y-%m-%d}"
    instance = DagsterInstance.ephemeral()

    def judge(spec, day=today) -> tuple[dict, dict]:
        serving = build_slo(spec).serving
        result = materialize([serving], partition_key=day, resources=resources, instance=instance)
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
        return checks[LATENCY_CHECK], checks[ERROR_RATE_CHECK]

    def requests_logged() -> int:
        return serving_day(log.read(today), MODEL, min_requests=1).requests

    # a new champion on probation: the first version registered again, with the gates it passed
    first = registry.version_for(MODEL, CHAMPION)
    mlflow = registry.client()
    source = mlflow.get_model_version_download_uri(MODEL, first)
    second = str(
        mlflow.create_model_version(
            MODEL, source, run_id=mlflow.get_model_version(MODEL, first).run_id
        ).version
    )
    same_model = GateResult("not_worse_than_champion", Verdict.PASSED, {"roc_auc_delta": 0.0}, "test")
    registry.tag_version(MODEL, second, {**registry.version_tags(MODEL, first), **same_model.tags()})
    promote(registry, MODEL, second, actor="test", reason="a champion on probation")
    assert registry.version_for(MODEL, PREVIOUS) == first

    with (
        api_in_thread(create_app(resources, reload_seconds=0.2)) as url,
        httpx.Client(base_url=url) as client,
    ):

        def served() -> str | None:
            answer = client.post(ROUTE, json={"rows": [{"merchant_id": m} for m in merchants]})
            return answer.json()["predictions"][0]["model_version"] if answer.status_code == 200 else None

        wait_for(lambda: served() == second, "the API serving the new champion")
        for _ in range(SPEC.slo.serving.min_requests):
            assert served() == second
        wait_for(lambda: requests_logged() >= SPEC.slo.serving.min_requests, "the requests logged")
        assert log.recent(MODEL, hours=1) >= SPEC.slo.serving.min_requests  # retirement sees the route in use

        # the committed SLO: kept, judged on the day's requests
        latency, errors = judge(SPEC)
        assert latency.passed and errors.passed, (latency.metadata, errors.metadata)
        assert latency.metadata["requests"].value == requests_logged()

        # a promise its traffic breaks (0.001 ms): rolled back to the previous champion, audited, once
        strict = SPEC.updated({"slo.serving.max_p99_latency_ms": 0.001})
        latency, errors = judge(strict)
        assert not latency.passed and latency.metadata["judged"].value is not False and errors.passed
        assert latency.metadata["probation"].value == f"rolled back version {second} to {first}"
        record = registry.audit_trail(MODEL)[-1]
        assert (record["action"], record["actor"], record["version"]) == ("rollback", "slo probation", first)
        assert record["reason"].startswith("serving SLO broken on probation: p99 latency")
        again = judge(strict)[0].metadata["probation"].value
        assert again == f"none: the breach is version {second}'s, champion is {first}"
        assert registry.audit_trail(MODEL)[-1] == record

        # no champion: the route answers 503, each logged as a server error of the model
        wait_for(lambda: served() == first, "the API serving the version rolled back to")
        registry.move_alias(MODEL, CHAMPION, None)
        wait_for(lambda: served() is None, "the API without a champion")
        before = serving_day(log.read(today), MODEL, min_requests=1).errors
        for _ in range(3):
            assert client.post(ROUTE, json={"rows": [{"merchant_id": merchants[0]}]}).status_code == 503
        registry.move_alias(MODEL, CHAMPION, first)
        wait_for(lambda: serving_day(log.read(today), MODEL, 1).errors >= before + 3, "the failures logged")
        _, errors = judge(SPEC)
        assert not errors.passed and errors.metadata["error_rate"].value > SPEC.slo.serving.max_error_rate

    # a day without traffic is not judged: neither passed nor failed as a verdict
    quiet_day = f"{datetime.now(UTC) - timedelta(days=1):%Y-%m-%d}"
    for check in judge(SPEC, quiet_day):
        assert check.metadata["judged"].value is False and "0 requests logged" in check.description
