"""Unit tests of the point-in-time leakage recomputation: one planted leak per feature family."""

import numpy as np
import pandas as pd
import pytest

from mlplatform.training.leakage import expected_features, leaked_values

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


def test_every_window_of_every_row_equals_a_row_by_row_recomputation():
    """Ties, entities without history, a missing amount, a label corrected after the cutoff and amounts a
    billion times larger in the first days (a running sum would round the later windows): each row's every
    expected value is what filtering its entity's transactions one row at a time gives."""
    rng = np.random.default_rng(5)
    n = 60_000
    start = pd.Timestamp("2026-01-01")
    transactions = pd.DataFrame(
        {
            "transaction_id": [f"T{i}" for i in range(n)],
            "customer_id": rng.choice(["C1", "C2", "C3", None], n),
            "merchant_id": rng.choice(["M1", "M2"], n),
            # whole hours: many transactions share an instant, and some fall on a midnight
            "event_ts": start + pd.to_timedelta(rng.integers(0, 90 * 24, n), unit="h"),
            "amount": rng.uniform(0, 1e6, n).round(2),
        }
    )
    transactions.loc[7, "amount"] = np.nan
    transactions.loc[transactions.event_ts < start + pd.Timedelta(days=3), "amount"] *= 1e9
    frauds = transactions.sample(300, random_state=1)
    labels = pd.DataFrame(
        {
            "transaction_id": frauds["transaction_id"].to_numpy(),
            "is_fraud": rng.random(300) < 0.7,
            "reported_at": frauds["event_ts"].to_numpy()
            + pd.to_timedelta(rng.integers(1, 20 * 24, 300), unit="h"),
            "superseded_at": pd.Series(pd.NaT, index=range(300)).where(
                rng.random(300) < 0.8, start + pd.Timedelta(days=60)
            ),
        }
    )
    rows = pd.DataFrame(
        {
            "customer_id": rng.choice(["C1", "C2", "C9"], 40),
            "merchant_id": rng.choice(["M1", "M2", "M9"], 40),
            "event_ts": start + pd.to_timedelta(rng.integers(0, 95 * 24, 40), unit="h"),
        }
    )

    expected = {feature: values for _, feature, values in expected_features(rows, transactions, labels)}
    histories = {key: dict(iter(transactions.groupby(key))) for key in ("customer_id", "merchant_id")}

    for i, row in rows.iterrows():
        cutoff = row.event_ts.floor("D")

        def window(key: str, days: int, row=row, cutoff=cutoff) -> pd.DataFrame:
            of_entity = histories[key].get(row[key], transactions.iloc[0:0])
            return of_entity[
                (of_entity.event_ts >= cutoff - pd.Timedelta(days=days)) & (of_entity.event_ts < cutoff)
            ]

        for key, prefix, windows in (
            ("customer_id", "customer", (1, 7, 30)),
            ("merchant_id", "merchant", (7, 30)),
        ):
            for days in windows:
                assert expected[f"{prefix}_stats__txn_count_{days}d"][i] == len(window(key, days))
                assert expected[f"{prefix}_stats__amount_sum_{days}d"][i] == pytest.approx(
                    window(key, days).amount.sum(), rel=1e-12, abs=1e-6
                )
        month = window("merchant_id", 30)
        versions = labels[labels.transaction_id.isin(month.transaction_id)]
        in_force = versions[
            (versions.reported_at < cutoff)
            & (versions.superseded_at.isna() | (versions.superseded_at >= cutoff))
        ]
        assert expected["merchant_stats__reported_fraud_count_30d"][i] == in_force.is_fraud.sum()
        rate = expected["merchant_stats__fraud_rate_30d"][i]
        assert rate == pytest.approx(in_force.is_fraud.sum() / len(month)) if len(month) else np.isnan(rate)


def test_a_feature_value_that_is_not_a_number_is_an_error_not_a_zero():
    garbled = training_row(customer_stats__txn_count_1d="one")
    with pytest.raises(ValueError, match='customer_stats__txn_count_1d: Unable to parse string "one"'):
        leaked_values(garbled, TRANSACTIONS, LABELS)
