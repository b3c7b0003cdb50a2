"""The whole graph on small generated data, through the same code path as `make demo`.

Feature values are recomputed here from the landing files with pandas, independently of the SQL.
"""

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from mlplatform.profiles import build_resources

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def built(built_state):
    state, summary = built_state
    return summary, build_resources(profile="local", state=state)["warehouse"], state / "landing"


def landed(landing, table: str) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in sorted((landing / table).glob("date=*/*.parquet"))]
    frame = pd.concat(frames, ignore_index=True)
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
    return frame


def test_every_run_and_check_passes(built):
    summary, _, _ = built
    assert summary.runs_failed == [] and summary.checks_failed == []
    assert summary.checks_passed > 50
    assert {
        "raw_transactions",
        "customer_features",
        "merchant_features",
        "training_labels",
        "feast_registry",
        "online_customer_stats",
        "online_merchant_stats",
        "training_set",
        "fraud_model",
        "fraud_model_champion",
    } <= summary.assets_materialized


def test_row_counts_match_the_landing_zone(built):
    summary, _, landing = built
    transactions, labels = landed(landing, "transactions"), landed(landing, "labels")
    assert summary.table_rows["raw.transactions"] == len(transactions)
    assert summary.table_rows["raw.labels"] == len(labels)
    assert summary.table_rows["marts.training_labels"] == labels["transaction_id"].nunique()


def test_customer_features_match_an_independent_computation(built):
    _, warehouse, landing = built
    transactions = landed(landing, "transactions")
    customers = landed(landing, "customers").set_index("customer_id")
    transactions["day"] = transactions["event_ts"].dt.normalize()
    transactions["foreign"] = transactions["country"] != transactions["customer_id"].map(
        customers["home_country"]
    )
    features = warehouse.read_sql("select * from marts.customer_features")
    features["feature_date"] = pd.to_datetime(features["feature_date"])

    last_day = transactions["day"].max()
    sample_days = [last_day, last_day - timedelta(days=3), last_day - timedelta(days=9)]
    sampled = features[features["feature_date"].isin(sample_days)]
    assert not sampled.duplicated(["customer_id", "feature_date"]).any()
    by_key = {(r["customer_id"], r["feature_date"]): r for r in sampled.to_dict("records")}
    checked = 0
    # every third customer: the windows are the same SQL for all of them, recomputed here row by row
    sampled_customers = sorted(transactions["customer_id"].unique())[::3]
    transactions = transactions[transactions["customer_id"].isin(sampled_customers)]
    for customer_id, history in transactions.groupby("customer_id"):
        for day in sample_days:
            row = by_key.get((customer_id, day))
            if day < history["day"].min():
                assert row is None
                continue
            assert row is not None, (customer_id, day)
            assert row["feature_ts"] == day + timedelta(days=1)
            for n in (1, 7, 30):
                window = history[(history["day"] > day - timedelta(days=n)) & (history["day"] <= day)]
                assert row[f"txn_count_{n}d"] == len(window)
                assert row[f"amount_sum_{n}d"] == pytest.approx(window["amount"].sum())
                expected_max = window["amount"].max() if len(window) else np.nan
                assert row[f"amount_max_{n}d"] == pytest.approx(expected_max, nan_ok=True)
            window = history[(history["day"] > day - timedelta(days=30)) & (history["day"] <= day)]
            assert row["distinct_merchants_30d"] == window["merchant_id"].nunique()
            expected_share = window["foreign"].mean() if len(window) else np.nan
            assert row["foreign_share_30d"] == pytest.approx(expected_share, nan_ok=True)
            checked += 1
    assert checked > 100


def test_merchant_fraud_rate_counts_only_labels_reported_before_the_feature_time(built):
    _, warehouse, landing = built
    transactions = landed(landing, "transactions")
    labels = landed(landing, "labels")
    frauds = transactions.merge(labels[labels["is_fraud"]], on="transaction_id")
    frauds["day"] = frauds["event_ts"].dt.normalize()
    transactions["day"] = transactions["event_ts"].dt.normalize()
    features = warehouse.read_sql("select * from marts.merchant_features")
    features["feature_date"] = pd.to_datetime(features["feature_date"])

    frauds_of = {merchant: rows for merchant, rows in frauds.groupby("merchant_id")}
    days_of = {merchant: rows["day"] for merchant, rows in transactions.groupby("merchant_id")}
    no_frauds = frauds.iloc[:0]
    leaky_would_differ = 0
    for row in features.itertuples():
        start = row.feature_date - timedelta(days=29)
        merchant_frauds = frauds_of.get(row.merchant_id, no_frauds)
        in_window = merchant_frauds[merchant_frauds["day"].between(start, row.feature_date)]
        known = in_window[in_window["reported_at"] < row.feature_ts]
        assert row.reported_fraud_count_30d == len(known), row
        leaky_would_differ += len(in_window) != len(known)
        assert row.txn_count_30d == days_of[row.merchant_id].between(start, row.feature_date).sum()
    assert leaky_would_differ > 0, "the data must contain late labels, or this test proves nothing"
