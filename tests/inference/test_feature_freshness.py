"""Scoring refuses features older than the day being scored: nothing is written, nothing downstream runs."""

from datetime import date

import duckdb
import pandas as pd
import pytest

from mlplatform.definitions import all_assets, models
from mlplatform.inference.assets import stale_features
from mlplatform.profiles import build_resources
from tests.conftest import built_instance, copy_state, run_assets

BATCH_PREDICTIONS = models["fraud_model"].batch


def test_stale_marts_are_named_and_fresh_ones_pass():
    day = date(2026, 3, 10)
    assert (
        stale_features(day, {"customer_features": date(2026, 3, 9), "merchant_features": date(2026, 3, 10)})
        is None
    )
    reason = stale_features(day, {"customer_features": date(2026, 3, 7), "merchant_features": None})
    assert reason is not None and "customer_features up to 2026-03-07" in reason
    assert "merchant_features up to nothing" in reason and "needs feature date 2026-03-09" in reason


@pytest.mark.e2e
def test_scoring_refuses_a_day_whose_features_are_stale(built_state, tmp_path):
    state = copy_state(built_state[0], tmp_path / "state")
    resources = build_resources(profile="local", state=state)
    warehouse = resources["warehouse"]
    last = pd.Timestamp(
        warehouse.read_sql("select max(_partition_date) as d from raw.transactions")["d"][0]
    ).date()
    before = warehouse.read_sql(f"select * from inference.batch_predictions where _partition_date = '{last}'")
    with duckdb.connect(warehouse.path) as con:  # a dbt rebuild that never happened for the last two days
        con.execute(f"delete from marts.customer_features where feature_date >= date '{last}' - 1")
    with built_instance(state) as instance:
        result = run_assets(
            all_assets, resources, instance, partition_key=str(last), selection=[BATCH_PREDICTIONS]
        )
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert "features are older than the decisions being scored" in failure.step_failure_data.error.message
    after = warehouse.read_sql(f"select * from inference.batch_predictions where _partition_date = '{last}'")
    assert len(after) == len(before) > 0  # the earlier scores of the day are untouched
