"""Keys across days and files, and labels for transactions never loaded: each bad file is quarantined
with its own reason, good data (and good neighbours) untouched, and nothing downstream runs on it."""

import json
from datetime import date, timedelta

import pandas as pd
import pytest
from dagster import AssetKey, AssetSelection

from mlplatform.checks import was_judged
from mlplatform.definitions import all_assets
from mlplatform.ingestion.assets import raw_customers, raw_labels, raw_merchants, raw_transactions
from tests.conftest import SMALL, run_assets

DAY1, DAY2, DAY3 = (SMALL.start_date + timedelta(days=n) for n in range(3))


@pytest.fixture
def loaded(resources, instance):
    """Snapshots and three good days of transactions in the warehouse."""
    assert run_assets(all_assets, resources, instance, selection=[raw_customers, raw_merchants]).success
    for day in (DAY1, DAY2, DAY3):
        assert run_assets(
            all_assets, resources, instance, partition_key=str(day), selection=[raw_transactions]
        ).success
    return resources


def rows(warehouse, table: str) -> pd.DataFrame:
    return warehouse.read_sql(f"select * exclude (_loaded_at) from raw.{table} order by all")


def land(state, table: str, day: date, frame: pd.DataFrame, name: str) -> None:
    folder = state / "landing" / table / f"date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(folder / name, index=False)


def landed(state, table: str, day: date, name: str = f"{'transactions'}.parquet") -> pd.DataFrame:
    return pd.read_parquet(state / "landing" / table / f"date={day}" / name)


def failed_judged(result) -> dict[str, str]:
    return {
        e.check_name: e.description or ""
        for e in result.get_asset_check_evaluations()
        if not e.passed and was_judged(dict(e.metadata))
    }


def reason(state, table, day, name) -> str:
    return json.loads((state / "quarantine" / table / f"date={day}" / f"{name}.reason.json").read_text())[
        "reason"
    ]


def test_an_id_loaded_on_another_day_is_quarantined_with_that_day(loaded, state, instance):
    warehouse = loaded["warehouse"]
    before = rows(warehouse, "transactions")
    repeated = landed(state, "transactions", DAY3).head(3)  # a new day's file replays ids of DAY3
    newcomer = landed(state, "transactions", DAY2).head(20).copy()
    newcomer["transaction_id"] = [f"T-NEW-{i}" for i in range(20)]
    newcomer.loc[:2, "transaction_id"] = repeated["transaction_id"].to_numpy()
    land(state, "transactions", DAY2, newcomer, "late.parquet")

    result = run_assets(
        all_assets,
        loaded,
        instance,
        partition_key=str(DAY2),
        selection=AssetSelection.assets(raw_transactions)
        | AssetSelection.assets(AssetKey("stg_transactions")),
    )

    assert not result.success
    failed = failed_judged(result)
    assert set(failed) == {"unique_key"}
    assert f"(loaded on {DAY3})" in reason(state, "transactions", DAY2, "late.parquet")
    assert AssetKey("stg_transactions") not in {
        e.asset_key for e in result.get_asset_materialization_events()
    }
    # nothing was replaced: DAY3's transactions keep their day, the good file of DAY2 stays landed
    pd.testing.assert_frame_equal(rows(warehouse, "transactions"), before)
    assert (state / "landing" / "transactions" / f"date={DAY2}" / "transactions.parquet").exists()
    # re-running without the bad file changes nothing either (idempotent)
    assert run_assets(
        all_assets, loaded, instance, partition_key=str(DAY2), selection=[raw_transactions]
    ).success
    pd.testing.assert_frame_equal(rows(warehouse, "transactions"), before)


@pytest.mark.parametrize("defect", ["collision_only", "collision_and_bad_amount"])
def test_a_bad_neighbour_colliding_with_a_loaded_good_file_is_the_only_one_quarantined(
    defect, loaded, state, instance
):
    """The bad file sorts first (`a-...`) and shares ids with the already-loaded good file."""
    warehouse = loaded["warehouse"]
    before = rows(warehouse, "transactions")
    good = landed(state, "transactions", DAY2)
    neighbour = good.head(10).copy()
    if defect == "collision_and_bad_amount":
        neighbour["transaction_id"] = [f"T-X-{i}" for i in range(10)]
        neighbour.loc[:4, "transaction_id"] = good["transaction_id"].head(5).to_numpy()
        neighbour.loc[7, "amount"] = -5.0
    land(state, "transactions", DAY2, neighbour, "a-neighbour.parquet")

    result = run_assets(all_assets, loaded, instance, partition_key=str(DAY2), selection=[raw_transactions])

    assert not result.success
    quarantine = state / "quarantine" / "transactions" / f"date={DAY2}"
    assert sorted(p.name for p in quarantine.glob("*.parquet")) == ["a-neighbour.parquet"]
    assert (state / "landing" / "transactions" / f"date={DAY2}" / "transactions.parquet").exists()
    note = reason(state, "transactions", DAY2, "a-neighbour.parquet")
    expected = "id_in_another_file_of_the_partition" if defect == "collision_only" else "[value_ranges]"
    assert expected in note
    pd.testing.assert_frame_equal(rows(warehouse, "transactions"), before)
    assert run_assets(
        all_assets, loaded, instance, partition_key=str(DAY2), selection=[raw_transactions]
    ).success
    pd.testing.assert_frame_equal(rows(warehouse, "transactions"), before)


def test_labels_for_transactions_never_loaded_are_quarantined_not_dropped(loaded, state, instance):
    warehouse = loaded["warehouse"]
    known = landed(state, "transactions", DAY1)["transaction_id"].head(4).tolist()
    day = DAY3
    labels = pd.DataFrame(
        {
            "transaction_id": [*known, "T-NEVER-LANDED-1", "T-NEVER-LANDED-2"],
            "is_fraud": [False, True, False, False, True, False],
            "reported_at": pd.Timestamp(day) + pd.to_timedelta(range(6), unit="h"),
        }
    )
    for path in (state / "landing" / "labels" / f"date={day}").glob("*"):
        path.unlink()  # only this file on that day
    land(state, "labels", day, labels, "orphans.parquet")

    result = run_assets(all_assets, loaded, instance, partition_key=str(day), selection=[raw_labels])

    assert not result.success
    assert set(failed_judged(result)) == {"known_transactions"}
    note = reason(state, "labels", day, "orphans.parquet")
    assert "[known_transactions]" in note and "T-NEVER-LANDED-1" in note
    assert not warehouse.table_exists("raw", "labels") or rows(warehouse, "labels").empty
    # the same labels for loaded transactions only: accepted
    land(state, "labels", day, labels.head(4), "orphans-fixed.parquet")
    assert run_assets(all_assets, loaded, instance, partition_key=str(day), selection=[raw_labels]).success
    assert sorted(rows(warehouse, "labels")["transaction_id"]) == sorted(known)


def test_a_label_corrected_on_a_later_day_is_accepted(loaded, state, instance):
    """Labels are the exception to ids unique across days: a later label for a transaction is a correction."""
    warehouse = loaded["warehouse"]
    [transaction] = landed(state, "transactions", DAY1)["transaction_id"].head(1).tolist()
    for day, is_fraud in ((DAY2, False), (DAY3, True)):
        for path in (state / "landing" / "labels" / f"date={day}").glob("*"):
            path.unlink()
        label = pd.DataFrame(
            {"transaction_id": [transaction], "is_fraud": [is_fraud], "reported_at": [pd.Timestamp(day)]}
        )
        land(state, "labels", day, label, "label.parquet")
        result = run_assets(all_assets, loaded, instance, partition_key=str(day), selection=[raw_labels])
        assert result.success
    assert rows(warehouse, "labels")["is_fraud"].tolist() == [False, True]


def test_a_reloaded_snapshot_is_what_known_entities_checks_against(loaded, state, instance):
    """The snapshots' ids are kept between runs in a process, until a snapshot is loaded again."""
    customers_root = state / "landing" / "customers"
    first = sorted(customers_root.glob("date=*"))[-1]
    customers = pd.read_parquet(next(first.glob("*.parquet")))
    newcomer = (
        landed(state, "transactions", DAY2)
        .head(1)
        .assign(transaction_id="T-NEW-CUSTOMER", customer_id="C-NEW")
    )
    land(state, "transactions", DAY2, newcomer, "newcomer.parquet")
    result = run_assets(all_assets, loaded, instance, partition_key=str(DAY2), selection=[raw_transactions])
    assert not result.success and set(failed_judged(result)) == {"known_entities"}

    new_customer = customers.head(1).assign(customer_id="C-NEW")
    later = date.fromisoformat(first.name.removeprefix("date=")) + timedelta(days=30)
    land(
        state,
        "customers",
        later,
        pd.concat([customers, new_customer], ignore_index=True),
        "customers.parquet",
    )
    assert run_assets(all_assets, loaded, instance, selection=[raw_customers]).success
    land(state, "transactions", DAY2, newcomer, "newcomer.parquet")
    assert run_assets(
        all_assets, loaded, instance, partition_key=str(DAY2), selection=[raw_transactions]
    ).success
    assert "T-NEW-CUSTOMER" in set(rows(loaded["warehouse"], "transactions")["transaction_id"])
