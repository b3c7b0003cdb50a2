"""Ingestion assets in process: idempotent loads, and every kind of bad input quarantined and blocking."""

import json
from datetime import date

import pandas as pd
import pytest
from dagster import AssetCheckSeverity, AssetKey, AssetSelection

from mlplatform.checks import was_judged
from mlplatform.datagen import BAD_FILE_KINDS, write_bad_file
from mlplatform.definitions import all_assets
from mlplatform.ingestion.assets import raw_customers, raw_labels, raw_merchants, raw_transactions
from mlplatform.ingestion.validation import CONTENT_CHECKS
from tests.conftest import SMALL, run_assets

DAY1 = SMALL.start_date.isoformat()
DAY2 = date.fromordinal(SMALL.start_date.toordinal() + 1).isoformat()
LABEL_DAY = date.fromordinal(SMALL.start_date.toordinal() + 8).isoformat()

FAILING_CHECK = {
    "missing_column": "schema",
    "wrong_type": "schema",
    "null_key": "not_null",
    "duplicate_id": "unique_key",
    "out_of_range_amount": "value_ranges",
    "timestamp_outside_partition": "inside_partition",
    "unknown_customer": "known_entities",
    "empty_file": "schema",
    "unreadable_file": "schema",
}


@pytest.fixture
def loaded(resources, instance):
    """Snapshots and two good days of transactions in the warehouse."""
    assert run_assets(all_assets, resources, instance, selection=[raw_customers, raw_merchants]).success
    for day in (DAY1, DAY2):
        assert run_assets(
            all_assets, resources, instance, partition_key=day, selection=[raw_transactions]
        ).success
    return resources


def partition_rows(warehouse, table: str, day: str) -> pd.DataFrame:
    rows = warehouse.read_sql(
        f"select * exclude (_loaded_at) from raw.{table} where _partition_date = '{day}' order by 1"
    )
    return rows.reset_index(drop=True)


def landing_rows(state, table: str, day: str) -> int:
    return sum(len(pd.read_parquet(p)) for p in (state / "landing" / table / f"date={day}").glob("*.parquet"))


def test_loads_every_landed_row_and_a_rerun_replaces_not_duplicates(loaded, state, instance):
    warehouse = loaded["warehouse"]
    first = partition_rows(warehouse, "transactions", DAY2)
    assert len(first) == landing_rows(state, "transactions", DAY2) > 0
    assert run_assets(all_assets, loaded, instance, partition_key=DAY2, selection=[raw_transactions]).success
    again = partition_rows(warehouse, "transactions", DAY2)
    pd.testing.assert_frame_equal(first, again)
    total = warehouse.read_sql(
        "select count(*) as n, count(distinct transaction_id) as k from raw.transactions"
    )
    assert total["n"].iloc[0] == total["k"].iloc[0] == landing_rows(state, "transactions", DAY1) + len(first)


def test_every_check_of_a_rerun_judges_the_rerun_materialization(loaded, instance):
    """The verdicts name the materialization they judged: the re-run's, not the partition's earlier one."""
    result = run_assets(all_assets, loaded, instance, partition_key=DAY2, selection=[raw_transactions])
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == len(raw_transactions.check_specs) > 1
    for evaluation in evaluations:
        target = evaluation.target_materialization_data
        assert target is not None and target.run_id == result.run_id, evaluation.check_name


def test_transactions_need_the_snapshots_first(resources, instance):
    result = run_assets(all_assets, resources, instance, partition_key=DAY1, selection=[raw_transactions])
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "raw_customers must be materialized before transactions" in failure


def test_a_day_with_nothing_landed_fails_clearly_and_changes_nothing(loaded, instance):
    result = run_assets(
        all_assets, loaded, instance, partition_key="2026-06-01", selection=[raw_transactions]
    )
    assert not result.success
    assert "no file has landed for transactions on 2026-06-01" in (
        result.get_step_failure_events()[0].step_failure_data.error.message
    )


@pytest.mark.parametrize("kind", BAD_FILE_KINDS)
def test_bad_file_is_quarantined_with_its_reason_and_blocks_downstream(kind, loaded, state, instance):
    warehouse = loaded["warehouse"]
    day1_before = partition_rows(warehouse, "transactions", DAY1)
    day2_before = partition_rows(warehouse, "transactions", DAY2)
    bad = write_bad_file(state / "landing", kind, date.fromisoformat(DAY2))

    result = run_assets(
        all_assets,
        loaded,
        instance,
        partition_key=DAY2,
        selection=AssetSelection.assets(raw_transactions)
        | AssetSelection.assets(AssetKey("stg_transactions")),
    )

    assert not result.success
    evaluations = result.get_asset_check_evaluations()
    failed = {e.check_name for e in evaluations if not e.passed and was_judged(dict(e.metadata))}
    assert failed == {FAILING_CHECK[kind]}
    # a check that could not look at the bad file never passes: it says "not judged" (a WARN)
    not_judged = {e.check_name for e in evaluations if not was_judged(dict(e.metadata))}
    if FAILING_CHECK[kind] == "schema":
        assert not_judged == set(CONTENT_CHECKS) & {e.check_name for e in evaluations}
        assert all(
            e.severity == AssetCheckSeverity.WARN and not e.passed
            for e in evaluations
            if e.check_name in not_judged
        )
    else:
        assert not not_judged
    assert AssetKey("stg_transactions") not in {
        e.asset_key for e in result.get_asset_materialization_events()
    }
    # the bad file moved to quarantine with a readable reason; the good file stayed where it landed
    quarantined = state / "quarantine" / "transactions" / f"date={DAY2}" / bad.name
    assert quarantined.exists() and not bad.exists()
    note = json.loads(quarantined.with_name(bad.name + ".reason.json").read_text())
    assert f"[{FAILING_CHECK[kind]}]" in note["reason"] and note["partition"] == DAY2
    assert (state / "landing" / "transactions" / f"date={DAY2}" / "transactions.parquet").exists()
    # the warehouse did not change
    pd.testing.assert_frame_equal(partition_rows(warehouse, "transactions", DAY2), day2_before)
    pd.testing.assert_frame_equal(partition_rows(warehouse, "transactions", DAY1), day1_before)
    # with the bad file out of the way, the re-run loads the same good data again
    assert run_assets(all_assets, loaded, instance, partition_key=DAY2, selection=[raw_transactions]).success
    pd.testing.assert_frame_equal(partition_rows(warehouse, "transactions", DAY2), day2_before)


def test_bad_labels_file_is_quarantined_and_good_labels_stay(loaded, state, instance):
    for ordinal in range(SMALL.start_date.toordinal() + 2, date.fromisoformat(LABEL_DAY).toordinal()):
        # the transactions the labels are about
        day = date.fromordinal(ordinal).isoformat()
        assert run_assets(
            all_assets, loaded, instance, partition_key=day, selection=[raw_transactions]
        ).success
    assert run_assets(all_assets, loaded, instance, partition_key=LABEL_DAY, selection=[raw_labels]).success
    before = partition_rows(loaded["warehouse"], "labels", LABEL_DAY)
    bad = write_bad_file(state / "landing", "duplicate_id", date.fromisoformat(LABEL_DAY), table="labels")
    result = run_assets(all_assets, loaded, instance, partition_key=LABEL_DAY, selection=[raw_labels])
    assert not result.success
    assert {e.check_name for e in result.get_asset_check_evaluations() if not e.passed} == {"unique_key"}
    assert (state / "quarantine" / "labels" / f"date={LABEL_DAY}" / bad.name).exists()
    pd.testing.assert_frame_equal(partition_rows(loaded["warehouse"], "labels", LABEL_DAY), before)
