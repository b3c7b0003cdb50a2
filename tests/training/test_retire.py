"""Retirement on a copy of the built state: a retired model serves nothing, is neither scored nor
retrained, keeps its history and audit; a model whose route answered recently is not retired unless
forced."""

from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from dagster import AssetMaterialization, AssetSelection, SkipReason, build_sensor_context, materialize

from mlplatform.cli import main
from mlplatform.definitions import all_assets, all_checks, models
from mlplatform.ingestion.assets import raw_labels
from mlplatform.profiles import build_resources
from mlplatform.resources import MonitoringSettings
from mlplatform.resources.model_registry import CHAMPION
from mlplatform.training.model_card import read_model_card
from tests.conftest import built_instance, copy_state

pytestmark = pytest.mark.e2e


def test_retire_stops_serving_scoring_and_retraining_and_keeps_the_history(
    built_state, tmp_path, monkeypatch
):
    state = copy_state(built_state[0], tmp_path / "state")
    monkeypatch.setenv("MLPLATFORM_STATE_DIR", str(state))
    resources = build_resources(profile="local", state=state)
    registry, warehouse = resources["model_registry"], resources["warehouse"]
    model = models["merchant_risk"]
    assert registry.version_for("merchant_risk", CHAMPION) == "1"
    before = warehouse.read_sql("select count(*) as n from inference.merchant_risk_predictions")["n"][0]

    retired = CliRunner().invoke(main, ["retire", "merchant_risk", "--reason", "replaced by the risk desk"])
    assert retired.exit_code == 0, retired.output
    assert "aliases removed: champion (version 1)" in retired.output
    assert registry.aliases("merchant_risk") == {}
    assert registry.model_tags("merchant_risk")["lifecycle"] == "retired"
    assert registry.version_tags("merchant_risk", "1")["lifecycle"] == "retired"
    record = registry.audit_trail("merchant_risk")[-1]
    assert (record["action"], record["aliases_removed"], record["forced"]) == (
        "retire",
        {"champion": "1"},
        False,
    )
    card = read_model_card(registry, "merchant_risk", "1")
    assert "**Stage:** retired" in card and "retire" in card
    again = CliRunner().invoke(main, ["retire", "merchant_risk", "--reason", "twice"])
    assert again.exit_code == 0 and "already retired" in again.output
    assert registry.audit_trail("merchant_risk")[-1] == record

    # scheduled scoring skips it, visibly, and keeps what it scored before
    day = f"{warehouse.read_sql('select max(event_date) as d from marts.merchant_days')['d'][0]:%Y-%m-%d}"
    with built_instance(state) as instance:
        scored = materialize(
            [*all_assets, *all_checks],
            selection=AssetSelection.assets(model.batch),
            partition_key=day,
            resources=resources,
            instance=instance,
        )
        assert scored.success
        metadata = scored.get_asset_materialization_events()[0].materialization.metadata
        assert metadata["retired"].value is True
        check = scored.get_asset_check_evaluations()[0]
        assert (
            check.metadata["judged"].value is False and "retired" in check.metadata["not_judged_reason"].value
        )
        after = warehouse.read_sql("select count(*) as n from inference.merchant_risk_predictions")["n"][0]
        assert after == before

        # new labels would retrain it; retired, it is not
        instance.report_runless_asset_event(
            AssetMaterialization(raw_labels.key, partition=day, metadata={"dagster/row_count": 10**6})
        )
        context = build_sensor_context(
            instance=instance,
            resources={
                "monitoring": MonitoringSettings(retrain_min_new_labels=1),
                "model_registry": registry,
            },
        )
        skipped = model.retrain_sensor(context)
        assert isinstance(skipped, SkipReason) and "retired" in (skipped.skip_message or "")


def test_a_model_whose_route_is_in_use_is_retired_only_when_forced(built_state, tmp_path, monkeypatch):
    state = copy_state(built_state[0], tmp_path / "state")
    monkeypatch.setenv("MLPLATFORM_STATE_DIR", str(state))
    resources = build_resources(profile="local", state=state)
    registry = resources["model_registry"]
    writer = resources["prediction_log"].writer()
    now = datetime.now(UTC).isoformat()
    writer.record_lines(
        [{"logged_at": now, "model_name": "fraud_model", "model_version": "1", "score": 0.1}] * 3
    )
    writer.close()

    refused = CliRunner().invoke(main, ["retire", "fraud_model", "--reason", "cleanup"])
    assert refused.exit_code == 1 and "in use (3 predictions in the last 24 h)" in refused.output
    assert registry.version_for("fraud_model", CHAMPION) == "1"
    forced = CliRunner().invoke(main, ["retire", "fraud_model", "--reason", "cut over", "--force"])
    assert forced.exit_code == 0, forced.output
    assert registry.version_for("fraud_model", CHAMPION) is None
    assert registry.audit_trail("fraud_model")[-1]["forced"] is True
    unknown = CliRunner().invoke(main, ["retire", "no_such_model", "--reason", "x"])
    assert unknown.exit_code == 2 and "not declared in models/" in unknown.output
