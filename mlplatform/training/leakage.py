"""Point-in-time leakage: recompute every stored feature family from staging data strictly before the
features' valid-from time and compare with what the training set holds. Pure pandas, no Dagster, no Feast.

A training row for a transaction at time t gets the feature rows valid from midnight of t's day (features
are valid from the midnight after their window), so an N-day window must equal the entity's transactions
in [midnight - N days, midnight). NULL features (no row yet) count as no history.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


CUSTOMER_WINDOWS = (1, 7, 30)
MERCHANT_WINDOWS = (7, 30)
FRAUD_WINDOW = 30
# the families the check covers; each is recomputed independently of dbt
FAMILIES = ("customer_activity", "merchant_activity", "merchant_reported_fraud")


def _window(history: pd.DataFrame, cutoff: pd.Timestamp, days: int) -> pd.DataFrame:
    import pandas as pd

    return history[(history["event_ts"] >= cutoff - pd.Timedelta(days=days)) & (history["event_ts"] < cutoff)]


def known_fraud(labels: pd.DataFrame, transaction_ids: pd.Series, at: pd.Timestamp) -> int:
    """How many of these transactions a label known at `at` says are fraud: the label version reported
    before `at` and not yet superseded then (a chargeback reported later must not count)."""
    versions = labels[labels["transaction_id"].isin(transaction_ids)]
    in_force = versions[
        (versions["reported_at"] < at)
        & (versions["superseded_at"].isna() | (versions["superseded_at"] >= at))
    ]
    return int(in_force["is_fraud"].astype(bool).sum())


def expected_features(
    row, customer_history: pd.DataFrame, merchant_history: pd.DataFrame, labels: pd.DataFrame
) -> Iterator[tuple[str, str, float]]:
    """(family, feature, value recomputed from staging) for one training row."""
    import numpy as np
    import pandas as pd

    cutoff = pd.Timestamp(row.event_ts).floor("D")
    for n in CUSTOMER_WINDOWS:
        window = _window(customer_history, cutoff, n)
        yield "customer_activity", f"customer_stats__txn_count_{n}d", len(window)
        yield "customer_activity", f"customer_stats__amount_sum_{n}d", window["amount"].sum()
    for n in MERCHANT_WINDOWS:
        window = _window(merchant_history, cutoff, n)
        yield "merchant_activity", f"merchant_stats__txn_count_{n}d", len(window)
        yield "merchant_activity", f"merchant_stats__amount_sum_{n}d", window["amount"].sum()
    window = _window(merchant_history, cutoff, FRAUD_WINDOW)
    frauds = known_fraud(labels, window["transaction_id"], cutoff)
    yield "merchant_reported_fraud", "merchant_stats__reported_fraud_count_30d", frauds
    yield (
        "merchant_reported_fraud",
        "merchant_stats__fraud_rate_30d",
        frauds / len(window) if len(window) else np.nan,
    )


def _differs(got, expected) -> bool:
    import pandas as pd

    if pd.isna(expected):
        return not pd.isna(got)
    got = 0 if pd.isna(got) else got
    return abs(got - expected) > 1e-6 * max(1.0, abs(expected))


def leaked_values(
    training: pd.DataFrame, transactions: pd.DataFrame, labels: pd.DataFrame, identity: str = "transaction_id"
) -> list[dict]:
    """Every feature value of `training` that differs from its point-in-time recomputation; each problem
    names its row by the `identity` column (and event_ts).

    `transactions`: transaction_id, customer_id, merchant_id, event_ts, amount. `labels`: the label
    history (transaction_id, is_fraud, reported_at, superseded_at; NULL = still in force). A feature
    missing from `training` is not checked, nor an entity's family when `training` has no key for it."""
    by_customer = dict(iter(transactions.groupby("customer_id")))
    by_merchant = dict(iter(transactions.groupby("merchant_id")))
    empty = transactions.iloc[0:0]
    problems = []
    for row in training.itertuples(index=False):
        recomputed = expected_features(
            row,
            by_customer.get(getattr(row, "customer_id", None), empty),
            by_merchant.get(getattr(row, "merchant_id", None), empty),
            labels,
        )
        for family, feature, expected in recomputed:
            if not hasattr(row, feature):
                continue
            got = getattr(row, feature)
            if _differs(got, expected):
                problems.append(
                    {
                        identity: getattr(row, identity),
                        "event_ts": row.event_ts,
                        "family": family,
                        "feature": feature,
                        "got": got,
                        "expected": expected,
                    }
                )
    return problems
