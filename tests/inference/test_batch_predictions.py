"""batch_predictions on the built medium state: every landed transaction scored by the champion."""

from datetime import UTC, datetime, timedelta

import pytest
from dagster import (
    AssetSelection,
    DagsterInstance,
    Definitions,
    build_schedule_context,
    evaluate_automation_conditions,
)

from mlplatform.datagen import write_bad_file
from mlplatform.definitions import all_assets, all_checks, defs, models
from mlplatform.inference.assets import score_distribution
from mlplatform.ingestion.assets import raw_transactions
from mlplatform.profiles import build_resources
from mlplatform.resources.model_registry import CHAMPION
from mlplatform.training.spec import FRAUD_MODEL
from tests.conftest import built_instance, copy_state, land_transactions, run_assets

BATCH_PREDICTIONS = models["fraud_model"].batch

pytestmark = pytest.mark.e2e


def test_the_demo_scores_every_landed_transaction_with_the_champion(built_state):
    state, summary = built_state
    resources = build_resources(profile="local", state=state)
    scored = resources["warehouse"].read_sql("select * from inference.batch_predictions")
    transactions = resources["warehouse"].read_sql("select transaction_id from raw.transactions")
    assert "batch_predictions" in summary.assets_materialized
    assert sorted(scored["transaction_id"]) == sorted(transactions["transaction_id"])
    champion = resources["model_registry"].version_for(FRAUD_MODEL.name, CHAMPION)
    assert set(scored["model_version"]) == {champion}
    assert scored["score"].between(0, 1).all()
    assert (scored["decision"] == (scored["score"] >= scored["threshold"])).all()
    # the alert budget the threshold was chosen for (1% of legitimate transactions) roughly holds
    assert 0.001 < scored["decision"].mean() < 0.05


def test_rescoring_a_day_replaces_it(built_state, tmp_path):
    state = copy_state(built_state[0], tmp_path / "state")
    resources = build_resources(profile="local", state=state)
    resources["feature_store"].apply()
    warehouse = resources["warehouse"]
    day = str(warehouse.read_sql("select max(_partition_date) as d from raw.transactions")["d"].iloc[0])[:10]
    before = warehouse.read_sql(
        f"select * from inference.batch_predictions where _partition_date = '{day}' order by transaction_id"
    )
    total = len(warehouse.read_sql("select transaction_id from inference.batch_predictions"))

    with DagsterInstance.ephemeral() as instance:
        result = run_assets(
            all_assets,
            resources,
            instance,
            partition_key=day,
            selection=AssetSelection.assets(BATCH_PREDICTIONS),
        )
    assert result.success
    after = warehouse.read_sql(
        f"select * from inference.batch_predictions where _partition_date = '{day}' order by transaction_id"
    )
    assert len(warehouse.read_sql("select transaction_id from inference.batch_predictions")) == total
    assert list(after["transaction_id"]) == list(before["transaction_id"])
    assert after["score"].to_numpy() == pytest.approx(before["score"].to_numpy(), abs=1e-12)
    assert (after["scored_at"] > before["scored_at"]).all()
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["dagster/row_count"].value == len(after)
    assert metadata["model_version"].value == after["model_version"].iloc[0]


def test_the_nightly_schedule_scores_the_day_that_just_ended():
    context = build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 23, 2, 0, tzinfo=UTC),
        repository_def=defs.get_repository_def(),
    )
    request = defs.resolve_schedule_def("nightly_batch_scoring").evaluate_tick(context).run_requests[0]
    assert request.partition_key == "2026-11-22" and request.run_key == "2026-11-22"


def test_score_distribution_summarises_scores():
    import pandas as pd

    figures = score_distribution(pd.Series([0.0, 0.1, 0.2, 0.9]))
    assert figures["score_mean"] == pytest.approx(0.3)
    assert figures["score_p50"] == pytest.approx(0.15)
    assert score_distribution(pd.Series([], dtype=float)) == {}


def test_a_newly_loaded_day_is_scored_and_a_day_that_failed_its_checks_is_not(built_state, tmp_path):
    state = copy_state(built_state[0], tmp_path / "state")
    resources = build_resources(profile="local", state=state)
    resources["feature_store"].apply()
    last = resources["warehouse"].read_sql("select max(_partition_date) as d from raw.transactions")["d"][0]
    good, bad = (last.date() + timedelta(days=n) for n in (1, 2))
    defs = Definitions(assets=all_assets, asset_checks=all_checks, resources=resources)
    scoring = AssetSelection.assets(BATCH_PREDICTIONS)

    def newly_requested(instance, cursor):
        evaluated = evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=scoring, cursor=cursor
        )
        return evaluated.get_requested_partitions(BATCH_PREDICTIONS.key), evaluated.cursor

    with built_instance(state) as instance:
        requested, cursor = newly_requested(instance, None)
        assert requested == set()  # the history is scored already
        land_transactions(resources["warehouse"], state / "landing", good, 30)
        assert run_assets(
            all_assets, resources, instance, partition_key=str(good), selection=[raw_transactions]
        ).success
        requested, cursor = newly_requested(instance, cursor)
        assert requested == {str(good)}

        write_bad_file(state / "landing", "duplicate_id", bad)
        assert not run_assets(
            all_assets, resources, instance, partition_key=str(bad), selection=[raw_transactions]
        ).success
        requested, cursor = newly_requested(instance, cursor)
        assert requested == set()
