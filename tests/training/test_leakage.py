"""Unit tests of the point-in-time leakage recomputation."""

import pandas as pd

from mlplatform.training.leakage import leaked_values

TRANSACTIONS = pd.DataFrame(
    {
        "customer_id": ["C1", "C1", "C1"],
        "event_ts": pd.to_datetime(["2026-03-01 10:00", "2026-03-02 09:00", "2026-03-03 08:00"]),
        "amount": [10.0, 20.0, 40.0],
    }
)


def training_row(**features):
    base = {"transaction_id": "T9", "customer_id": "C1", "event_ts": pd.Timestamp("2026-03-03 08:00")}
    for n in (1, 7, 30):
        base[f"customer_stats__txn_count_{n}d"] = features.get("count", {1: 1, 7: 2, 30: 2})[n]
        base[f"customer_stats__amount_sum_{n}d"] = features.get("sums", {1: 20.0, 7: 30.0, 30: 30.0})[n]
    return pd.DataFrame([base])


def test_features_from_strictly_earlier_days_are_clean():
    assert leaked_values(training_row(), TRANSACTIONS) == []


def test_features_that_include_the_event_day_are_leaks():
    leaky = training_row(count={1: 1, 7: 3, 30: 3}, sums={1: 40.0, 7: 70.0, 30: 70.0})
    assert {p["feature"] for p in leaked_values(leaky, TRANSACTIONS)} == {
        "customer_stats__amount_sum_1d",
        "customer_stats__txn_count_7d",
        "customer_stats__amount_sum_7d",
        "customer_stats__txn_count_30d",
        "customer_stats__amount_sum_30d",
    }


def test_missing_features_mean_no_history():
    first = training_row(count={1: None, 7: None, 30: None}, sums={1: None, 7: None, 30: None})
    first["event_ts"] = pd.Timestamp("2026-03-01 10:00")
    assert leaked_values(first, TRANSACTIONS) == []
