"""Monitoring assets on a copy of the built medium state: a stable day, a drifted day, delayed labels."""

from datetime import timedelta
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize

from mlplatform.definitions import all_assets, models
from mlplatform.ingestion.assets import raw_transactions
from mlplatform.profiles import build_resources
from tests.conftest import copy_state, land_transactions, run_assets

pytestmark = pytest.mark.e2e
feature_drift = models["fraud_model"].drift
monitoring = models["fraud_model"].monitoring
assert monitoring is not None
model_performance, monitoring_report = monitoring.performance, monitoring.report
serving_health, serving_skew = monitoring.serving_health, monitoring.serving_skew


@pytest.fixture(scope="module")
def monitored(built_state, tmp_path_factory):
    state = copy_state(built_state[0], tmp_path_factory.mktemp("monitoring") / "state")
    resources = build_resources(profile="local", state=state)
    resources["feature_store"].apply()
    days = (
        resources["warehouse"]
        .read_sql("select distinct _partition_date as day from raw.transactions order by 1")["day"]
        .dt.date.tolist()
    )
    return state, resources, days


def checks_of(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_a_normal_day_shows_stable_transactions_and_scores(monitored):
    """Rolling 30-day counts still fill up over this short (24-day) history and may move; what the
    transactions themselves look like and how the model scores them must not."""
    _, resources, days = monitored
    day = str(days[-2])
    with DagsterInstance.ephemeral() as instance:
        result = run_assets(all_assets, resources, instance, partition_key=day, selection=[feature_drift])
    assert checks_of(result)["prediction_psi"].passed
    stored = (
        resources["warehouse"]
        .read_sql(f"select feature, psi from monitoring.feature_drift where partition_date = '{day}'")
        .set_index("feature")["psi"]
    )
    assert len(stored) > 25 and stored.notna().all()  # every model input
    for feature in ("amount", "channel", "transaction_context__amount_to_avg_30d"):
        assert stored[feature] < 0.1, feature


def test_the_champion_is_judged_on_a_day_whose_labels_have_arrived(monitored):
    _, resources, days = monitored
    day = str(days[-10])  # ten days back: most of its chargebacks have arrived
    with DagsterInstance.ephemeral() as instance:
        result = run_assets(all_assets, resources, instance, partition_key=day, selection=[model_performance])
    performance = checks_of(result)["roc_auc"]
    assert performance.passed and performance.metadata["judged"].value
    assert performance.metadata["roc_auc"].value > 0.85


def test_a_drifted_day_fails_with_error_and_alerts(monitored):
    state, resources, days = monitored
    new_day = days[-1] + timedelta(days=1)
    landed = land_transactions(resources["warehouse"], state / "landing", new_day, 400)
    drifted = landed.assign(amount=landed["amount"] * 6)
    drifted.to_parquet(state / "landing" / "transactions" / f"date={new_day}" / "new.parquet", index=False)
    with DagsterInstance.ephemeral() as instance:
        loaded = run_assets(
            all_assets, resources, instance, partition_key=str(new_day), selection=[raw_transactions]
        )
        assert loaded.success
        result = run_assets(
            all_assets, resources, instance, partition_key=str(new_day), selection=[feature_drift]
        )
    psi_check = checks_of(result)["feature_psi"]
    assert not psi_check.passed and psi_check.severity.value == "ERROR"
    assert "transaction_context__amount_to_avg_30d" in psi_check.metadata["drifted_features"].value
    alerts = resources["alerts"].read()
    assert any(
        a["check"] == "feature_psi" and a["severity"] == "ERROR" and a["partition"] == str(new_day)
        for a in alerts
    )


def test_a_day_without_labels_yet_is_not_judged(monitored):
    _, resources, days = monitored
    with DagsterInstance.ephemeral() as instance:
        result = run_assets(
            all_assets, resources, instance, partition_key=str(days[-1]), selection=[model_performance]
        )
    check = checks_of(result)["roc_auc"]
    assert not check.passed and check.severity.value == "WARN"  # shown as a warning, never a pass
    assert check.metadata["judged"].value is False
    assert check.metadata["not_judged_reason"].value.startswith("not enough labels yet")
    assert not resources["alerts"].read() or all(a["check"] != "roc_auc" for a in resources["alerts"].read())


@pytest.mark.parametrize("asset_name", ["serving_health", "serving_skew"])
def test_a_day_without_traffic_is_not_judged(monitored, asset_name):
    """latency_p99 and feature_skew have nothing to judge on a day the API served nobody."""

    _, resources, days = monitored
    asset = {"serving_health": serving_health, "serving_skew": serving_skew}[asset_name]
    with DagsterInstance.ephemeral() as instance:
        result = run_assets(all_assets, resources, instance, partition_key=str(days[-1]), selection=[asset])
    assert result.success
    check = checks_of(result)[{"serving_health": "latency_p99", "serving_skew": "feature_skew"}[asset_name]]
    assert not check.passed and check.severity.value == "WARN"
    assert check.metadata["judged"].value is False
    assert "no online" in check.metadata["not_judged_reason"].value


def test_serving_health_reads_a_day_of_the_prediction_log(tmp_path):
    """Latency, volume and shadow agreement from a log written by the API's own writer."""
    from mlplatform.resources import JsonlAlertSink, MonitoringSettings, PredictionLog

    log = PredictionLog(directory=str(tmp_path / "predictions"))
    writer = log.writer()
    for n in range(100):
        served = {
            "logged_at": "2026-11-20T10:00:00+00:00",
            "request_id": f"r{n}",
            "model_name": "fraud_model",  # the model behind /predict
            "transaction_id": None,
            "customer_id": f"C{n}",
            "merchant_id": "M1",
            "event_ts": "2026-11-20T09:59:59+00:00",
            "decision": "flag" if n % 10 == 0 else "approve",
            "latency_ms": 300.0 if n >= 97 else 20.0,
            "shadow": False,
        }
        writer.record(served)
        writer.record({**served, "shadow": True, "decision": "approve"})
    writer.flush()
    writer.close()
    alerts = JsonlAlertSink(path=str(tmp_path / "alerts.jsonl"))
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [serving_health],
            partition_key="2026-11-20",
            resources={"prediction_log": log, "monitoring": MonitoringSettings(), "alerts": alerts},
            instance=instance,
        )
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["requests"].value == 100 and metadata["flag_rate"].value == 0.1
    assert metadata["latency_p50_ms"].value == 20.0 and metadata["shadow_agreement"].value == 0.9
    check = checks_of(result)["latency_p99"]
    assert not check.passed and check.severity.value == "ERROR"  # 3 of 100 requests took 300 ms
    assert alerts.read()[0]["check"] == "latency_p99"


def test_the_day_report_shows_charts_in_the_ui_and_as_a_static_page(monitored):
    _, resources, days = monitored
    day = str(days[-9])
    with DagsterInstance.ephemeral() as instance:
        result = run_assets(
            all_assets,
            resources,
            instance,
            partition_key=day,
            selection=[feature_drift, model_performance, serving_health, serving_skew, monitoring_report],
        )
    assert result.success
    metadata = {
        e.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    for asset, chart in (
        ("feature_drift", "psi_chart"),
        ("feature_drift", "score_distribution"),
        ("model_performance", "performance_over_time"),
    ):
        assert metadata[asset][chart].value.startswith("![")  # an inline PNG the UI renders
    report = metadata["monitoring_report"]
    assert report["charts"].value == 3 and report["feature_drift.max_psi"].value >= 0
    page = Path(report["report"].value).read_text()
    assert page.count("data:image/png;base64,") == 3 and "transaction_context__amount_to_avg_30d" in page
    assert f"monitoring-{day}.html" in (Path(report["report"].value).parent / "index.html").read_text()
    # the day's verdict from its checks' evaluations of that day (partitioned checks)
    assert report["verdict"].value in {"OK", "WARN", "ERROR"}
    assert "feature_drift:prediction_psi" in page and "model_performance:roc_auc" in page
    assert f"on {day}: " in report["checks"].value
    history = resources["warehouse"].read_sql(
        f"select roc_auc from monitoring.model_performance where partition_date = '{day}'"
    )
    assert len(history) == 1 and history["roc_auc"].iloc[0] > 0.85  # stored once, whatever the re-runs


def test_the_second_model_gets_the_same_monitoring_from_its_spec(monitored):
    """merchant_risk's performance on a labelled day is judged on its own labels (merchant-days, 7-day
    window), a day without its traffic is not judged, and its report lists its own checks in its folder."""
    _, resources, days = monitored
    chain = models["merchant_risk"]
    assert chain.monitoring is not None and chain.drift is not None
    day = str(days[-10])  # its 7-day windows closed: labelled
    selection = [chain.drift, *chain.monitoring.daily, *chain.monitoring.traffic]
    with DagsterInstance.ephemeral() as instance:
        result = run_assets(all_assets, resources, instance, partition_key=day, selection=selection)
    assert result.success
    checks = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    performance = checks[("merchant_risk_performance", "roc_auc")]
    assert performance.metadata["judged"].value and performance.metadata["roc_auc"].value > 0.75
    for traffic in (
        ("merchant_risk_serving_health", "latency_p99"),
        ("merchant_risk_serving_skew", "feature_skew"),
    ):
        assert not checks[traffic].passed and not checks[traffic].metadata["judged"].value  # no traffic
    [report] = [
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key == chain.monitoring.report.key
    ]
    page = Path(report["report"].value)
    assert page.parent.name == "merchant_risk" and (page.parent / "index.html").exists()
    text = page.read_text()
    assert (
        "merchant_risk_performance:roc_auc" in text and "merchant_risk_feature_drift:prediction_psi" in text
    )
    assert "model_performance" not in text  # fraud_model's checks are in fraud_model's report
    stored = resources["warehouse"].read_sql(
        f"select frauds, roc_auc from monitoring.merchant_risk_performance where partition_date = '{day}'"
    )
    assert len(stored) == 1 and stored["frauds"].iloc[0] > 10
