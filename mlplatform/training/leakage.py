"""Point-in-time leakage: recompute every stored feature family from staging data strictly before the
features' valid-from time and compare with what the training set holds. Pure pandas and numpy, no Dagster,
no Feast.

A training row for a transaction at time t gets the feature rows valid from midnight of t's day (features
are valid from the midnight after their window), so an N-day window must equal the entity's transactions
in [midnight - N days, midnight). NULL features (no row yet) count as no history.

Every window of every row is answered at once: with the transactions sorted by entity and time, a window
is the slice between two binary searches, summed on its own. Row by row, the check's 400 rows took ~4 s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


CUSTOMER_WINDOWS = (1, 7, 30)
MERCHANT_WINDOWS = (7, 30)
FRAUD_WINDOW = 30
# the families the check covers; each is recomputed independently of dbt
FAMILIES = ("customer_activity", "merchant_activity", "merchant_reported_fraud")
DAY_NS = 86_400 * 10**9


def _nanoseconds(times: pd.Series) -> np.ndarray:
    """Instants as int64 nanoseconds (a time zone, if any, taken into account)."""
    import pandas as pd

    times = pd.to_datetime(times)
    if times.dt.tz is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    return times.astype("datetime64[ns]").to_numpy().view("int64")


class EntityHistory:
    """One entity kind's transactions, ready to count and sum any window of any of its entities."""

    def __init__(self, transactions: pd.DataFrame, key: str):
        import pandas as pd

        codes, self.entities = pd.factorize(transactions[key])  # a missing key: -1, never matched
        known = codes >= 0
        self.codes = codes[known]
        self.times = _nanoseconds(transactions["event_ts"])[known]
        self.amounts = transactions["amount"].fillna(0).to_numpy(dtype=float)[known]  # sum() skips NaN

    def windows(self, entities: pd.Series, cutoffs: np.ndarray, days: tuple[int, ...]) -> dict:
        """{days: (transaction count, amount sum)} of each entity in [cutoff - days, cutoff)."""
        import numpy as np
        import pandas as pd

        queried = pd.Index(self.entities).get_indexer(entities)  # unknown: -1, before every known entity
        bounds = [cutoffs] + [cutoffs - n * DAY_NS for n in days]
        # times as ranks among every time involved, so (entity, time) is one sortable int64
        instants = np.unique(np.concatenate([self.times, *bounds]))
        width = len(instants) + 1
        keys = self.codes.astype(np.int64) * width + np.searchsorted(instants, self.times)
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        amounts = np.append(self.amounts[order], 0.0)  # a window may end after the last transaction

        def before(bound: np.ndarray) -> np.ndarray:
            """How many of the sorted transactions precede (entity, bound)."""
            return np.searchsorted(keys, queried.astype(np.int64) * width + np.searchsorted(instants, bound))

        end = before(cutoffs)
        result = {}
        for n, bound in zip(days, bounds[1:], strict=True):
            start = before(bound)
            # each window summed on its own, so a large history before it cannot round it
            sums = np.add.reduceat(amounts, np.column_stack([start, end]).ravel())[::2]
            result[n] = end - start, np.where(end > start, sums, 0.0)
        return result


def known_frauds(
    merchants: pd.Series, cutoffs: np.ndarray, transactions: pd.DataFrame, labels: pd.DataFrame
) -> np.ndarray:
    """For each row (a merchant and a cutoff), how many of the merchant's transactions in
    [cutoff - FRAUD_WINDOW days, cutoff) a label known at the cutoff says are fraud: the label version
    reported before the cutoff and not yet superseded then (a chargeback reported later must not count)."""
    import numpy as np
    import pandas as pd

    frauds = labels[labels["is_fraud"].astype(bool)].merge(
        transactions[["transaction_id", "merchant_id", "event_ts"]].dropna(subset=["merchant_id"]),
        on="transaction_id",
    )
    pairs = pd.DataFrame(
        {"row": np.arange(len(merchants)), "merchant_id": merchants.to_numpy(), "cutoff": cutoffs}
    )
    pairs = pairs.dropna(subset=["merchant_id"]).merge(
        pd.DataFrame(
            {
                "merchant_id": frauds["merchant_id"],
                "at": _nanoseconds(frauds["event_ts"]),
                "reported": _nanoseconds(frauds["reported_at"]),
                "superseded": _nanoseconds(frauds["superseded_at"]),
                "in_force_forever": frauds["superseded_at"].isna().to_numpy(),
            }
        ),
        on="merchant_id",
    )
    cutoff = pairs["cutoff"]
    counted = (
        (pairs["at"] >= cutoff - FRAUD_WINDOW * DAY_NS)
        & (pairs["at"] < cutoff)
        & (pairs["reported"] < cutoff)
        & (pairs["in_force_forever"] | (pairs["superseded"] >= cutoff))
    )
    per_row = np.zeros(len(merchants), dtype=np.int64)
    np.add.at(per_row, pairs.loc[counted, "row"].to_numpy(), 1)
    return per_row


def expected_features(
    rows: pd.DataFrame, transactions: pd.DataFrame, labels: pd.DataFrame
) -> list[tuple[str, str, np.ndarray]]:
    """(family, feature, each row's value recomputed from staging), in the families' order. An entity
    the rows have no key for has no history."""
    import numpy as np
    import pandas as pd

    midnights = pd.to_datetime(rows["event_ts"]).dt.floor("D")
    missing_time = midnights.isna().to_numpy()
    cutoffs = np.where(missing_time, 0, _nanoseconds(midnights))  # no time: no history
    absent = pd.Series([None] * len(rows), dtype=object)
    customers = rows.get("customer_id", absent)
    merchants = rows.get("merchant_id", absent)
    by_customer = EntityHistory(transactions, "customer_id").windows(customers, cutoffs, CUSTOMER_WINDOWS)
    merchant_days = tuple(sorted({*MERCHANT_WINDOWS, FRAUD_WINDOW}))
    by_merchant = EntityHistory(transactions, "merchant_id").windows(merchants, cutoffs, merchant_days)

    expected = []
    for family, prefix, windows, answers in (
        ("customer_activity", "customer_stats", CUSTOMER_WINDOWS, by_customer),
        ("merchant_activity", "merchant_stats", MERCHANT_WINDOWS, by_merchant),
    ):
        for n in windows:
            count, amount = answers[n]
            expected.append((family, f"{prefix}__txn_count_{n}d", count))
            expected.append((family, f"{prefix}__amount_sum_{n}d", amount))
    frauds = known_frauds(merchants, cutoffs, transactions, labels)
    volume = by_merchant[FRAUD_WINDOW][0]
    rate = np.divide(frauds, volume, out=np.full(len(rows), np.nan), where=volume > 0)
    expected.append(("merchant_reported_fraud", "merchant_stats__reported_fraud_count_30d", frauds))
    expected.append(("merchant_reported_fraud", "merchant_stats__fraud_rate_30d", rate))
    return expected


def _differs(got: pd.Series, expected: np.ndarray) -> np.ndarray:
    """Per row: a value where none is expected, or one off by more than a relative 1e-6 (NULL counts as 0;
    a value that is not a number is an error, not a zero)."""
    import numpy as np
    import pandas as pd

    try:
        values = pd.to_numeric(got).to_numpy(dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"training set column {got.name}: {error}") from None
    expected = expected.astype(float)
    none_expected = np.isnan(expected)
    off = np.abs(np.nan_to_num(values) - expected) > 1e-6 * np.maximum(1.0, np.abs(expected))
    return np.where(none_expected, ~np.isnan(values), off)


def leaked_values(
    training: pd.DataFrame, transactions: pd.DataFrame, labels: pd.DataFrame, identity: str = "transaction_id"
) -> list[dict]:
    """Every feature value of `training` that differs from its point-in-time recomputation; each problem
    names its row by the `identity` column (and event_ts).

    `transactions`: transaction_id, customer_id, merchant_id, event_ts, amount. `labels`: the label
    history (transaction_id, is_fraud, reported_at, superseded_at; NULL = still in force). A feature
    missing from `training` is not checked."""
    import numpy as np

    rows = training.reset_index(drop=True)
    checked = [
        (family, feature, expected, _differs(rows[feature], expected))
        for family, feature, expected in expected_features(rows, transactions, labels)
        if feature in rows
    ]
    problems = []
    any_differs = np.logical_or.reduce([differs for *_, differs in checked] or [np.zeros(len(rows), bool)])
    for i in np.flatnonzero(any_differs):
        for family, feature, expected, differs in checked:
            if differs[i]:
                problems.append(
                    {
                        identity: rows[identity].iloc[i],
                        "event_ts": rows["event_ts"].iloc[i],
                        "family": family,
                        "feature": feature,
                        "got": rows[feature].iloc[i],
                        "expected": expected[i].item(),
                    }
                )
    return problems
