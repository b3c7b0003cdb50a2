"""Point-in-time leakage: recompute trailing windows from raw transactions strictly before the features'
valid-from time and compare with what the training set holds. Pure pandas, no Dagster, no Feast."""

import pandas as pd

WINDOWS = (1, 7, 30)


def leaked_values(training: pd.DataFrame, transactions: pd.DataFrame) -> list[dict]:
    """Rows whose customer window features include transactions at or after their valid-from time.

    A training row for a transaction at time t gets the customer row valid from midnight of t's day
    (features are valid from the midnight after their window), so its N-day window must equal the
    customer's transactions in [midnight - N days, midnight). NULL features (no row yet) count as 0.
    """
    by_customer = {c: g for c, g in transactions.groupby("customer_id")}
    empty = transactions.iloc[0:0]
    problems = []
    for row in training.itertuples(index=False):
        history = by_customer.get(row.customer_id, empty)
        cutoff = pd.Timestamp(row.event_ts).floor("D")
        for n in WINDOWS:
            window = history[
                (history["event_ts"] >= cutoff - pd.Timedelta(days=n)) & (history["event_ts"] < cutoff)
            ]
            for feature, expected in (
                (f"customer_stats__txn_count_{n}d", len(window)),
                (f"customer_stats__amount_sum_{n}d", window["amount"].sum()),
            ):
                got = getattr(row, feature)
                got = 0 if pd.isna(got) else got
                if abs(got - expected) > 1e-6 * max(1.0, abs(expected)):
                    problems.append(
                        {
                            "transaction_id": row.transaction_id,
                            "feature": feature,
                            "got": got,
                            "expected": expected,
                        }
                    )
    return problems
