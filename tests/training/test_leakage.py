"""Unit tests of the point-in-time leakage recomputation: one planted leak per feature family."""

import numpy as np
import pandas as pd
import pytest

from mlplatform.training.leakage import leaked_values

TRANSACTIONS = pd.DataFrame(
    {
        "transaction_id": ["T1", "T2", "T3", "T4"],
        "customer_id": ["C1", "C1", "C1", "C2"],
        "merchant_id": ["M1", "M1", "M2", "M1"],
        "event_ts": pd.to_datetime(
            ["2026-03-01 10:00", "2026-03-02 09:00", "2026-03-03 08:00", "2026-03-02 12:00"]
        ),
        "amount": [10.0, 20.0, 40.0, 5.0],
    }
)
# T2 is reported as fraud on 03-02 (known at the 03-03 midnight); T1 only on 03-03 (not yet known then)
LABELS = pd.DataFrame(
    {
        "transaction_id": ["T2", "T1", "T4"],
        "is_fraud": [True, True, False],
        "reported_at": pd.to_datetime(["2026-03-02 20:00", "2026-03-03 01:00", "2026-03-02 13:00"]),
        "superseded_at": pd.to_datetime([None, None, None]),
    }
)


def training_row(**overrides):
    """A transaction of C1 at M1 on 03-03 08:00, with the features valid from the 03-03 midnight."""
    row = {
        "transaction_id": "T3",
        "customer_id": "C1",
        "merchant_id": "M1",
        "event_ts": pd.Timestamp("2026-03-03 08:00"),
    }
    counts, sums = {1: 1, 7: 2, 30: 2}, {1: 20.0, 7: 30.0, 30: 30.0}
    for n in (1, 7, 30):
        row[f"customer_stats__txn_count_{n}d"] = counts[n]
        row[f"customer_stats__amount_sum_{n}d"] = sums[n]
    for n in (7, 30):  # M1 before the 03-03 midnight: T1, T2, T4
        row[f"merchant_stats__txn_count_{n}d"] = 3
        row[f"merchant_stats__amount_sum_{n}d"] = 35.0
    row["merchant_stats__reported_fraud_count_30d"] = 1  # T2 only: T1's label came after the midnight
    row["merchant_stats__fraud_rate_30d"] = 1 / 3
    row.update(overrides)
    return pd.DataFrame([row])


def test_features_from_strictly_earlier_days_are_clean():
    assert leaked_values(training_row(), TRANSACTIONS, LABELS) == []


def test_customer_features_that_include_the_event_day_are_leaks():
    leaky = training_row(
        customer_stats__txn_count_7d=3,
        customer_stats__amount_sum_30d=70.0,
        customer_stats__amount_sum_1d=40.0,
    )
    problems = leaked_values(leaky, TRANSACTIONS, LABELS)
    assert {p["feature"] for p in problems} == {
        "customer_stats__txn_count_7d",
        "customer_stats__amount_sum_30d",
        "customer_stats__amount_sum_1d",
    }
    assert {p["family"] for p in problems} == {"customer_activity"}


def test_merchant_volumes_that_include_the_event_day_are_leaks():
    leaky = training_row(merchant_stats__txn_count_30d=4, merchant_stats__amount_sum_7d=75.0)
    problems = leaked_values(leaky, TRANSACTIONS, LABELS)
    assert {(p["family"], p["feature"]) for p in problems} == {
        ("merchant_activity", "merchant_stats__txn_count_30d"),
        ("merchant_activity", "merchant_stats__amount_sum_7d"),
    }


@pytest.mark.parametrize(
    ("count", "rate"),
    [(2, 2 / 3), (0, 0.0)],  # a label reported after the feature time counted / a known fraud missed
)
def test_a_merchant_fraud_rate_using_labels_from_the_future_is_a_leak(count, rate):
    leaky = training_row(merchant_stats__reported_fraud_count_30d=count, merchant_stats__fraud_rate_30d=rate)
    problems = leaked_values(leaky, TRANSACTIONS, LABELS)
    assert {p["family"] for p in problems} == {"merchant_reported_fraud"}
    assert {p["feature"] for p in problems} == {
        "merchant_stats__reported_fraud_count_30d",
        "merchant_stats__fraud_rate_30d",
    }


def test_a_corrected_label_counts_as_it_was_known_at_the_feature_time():
    corrected = LABELS.copy()
    # T2 was first reported as legitimate, then corrected to fraud only after the midnight
    corrected.loc[0, "reported_at"] = pd.Timestamp("2026-03-03 03:00")
    history = pd.concat(
        [
            corrected,
            pd.DataFrame(
                {
                    "transaction_id": ["T2"],
                    "is_fraud": [False],
                    "reported_at": [pd.Timestamp("2026-03-02 20:00")],
                    "superseded_at": [pd.Timestamp("2026-03-03 03:00")],
                }
            ),
        ]
    )
    clean = training_row(merchant_stats__reported_fraud_count_30d=0, merchant_stats__fraud_rate_30d=0.0)
    assert leaked_values(clean, TRANSACTIONS, history) == []


def test_missing_features_mean_no_history():
    first = training_row(
        **{f"customer_stats__txn_count_{n}d": None for n in (1, 7, 30)},
        **{f"customer_stats__amount_sum_{n}d": None for n in (1, 7, 30)},
        merchant_id="M9",
        **{f"merchant_stats__txn_count_{n}d": None for n in (7, 30)},
        **{f"merchant_stats__amount_sum_{n}d": None for n in (7, 30)},
        merchant_stats__reported_fraud_count_30d=None,
        merchant_stats__fraud_rate_30d=np.nan,
    )
    first["event_ts"] = pd.Timestamp("2026-03-01 10:00")
    assert leaked_values(first, TRANSACTIONS, LABELS) == []
