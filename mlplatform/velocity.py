"""Velocity features: how fast a card is being used right now, from the customer's last hour of
transactions.

Per transaction, for its customer: the number and the sum of the customer's transactions in the last
10 minutes and the last hour (the transaction itself included), and the seconds since the previous one.
The daily marts cannot show a burst on a compromised card until the next midnight; these can.

`velocity` is the one definition of the values. The stream pusher (`mlplatform/streaming/pusher.py`) calls
it per transaction as it arrives and pushes the result through Feast to the online and offline stores;
the backfill (`velocity_frame` over landed transactions, `mlplatform velocity-backfill`) calls it over
the same transactions in event order. What training sets read offline is what the pusher wrote online,
by construction (no second implementation to drift).

The state is bounded: per customer, only the transactions of the last hour (the longest window). So the
seconds since the previous transaction are capped at an hour: a customer silent for longer (or seen for
the first time) gets 3,600.

`feature_repo/features.py` imports the names from here, so this module imports neither Dagster nor Feast
(the `feast` CLI loads that file), and pandas only where a frame is built.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

WINDOWS = {"10m": 600, "1h": 3_600}  # window name -> length in seconds
HORIZON_SECONDS = max(WINDOWS.values())  # the state keeps this much history per customer

VIEW = "customer_velocity"
PUSH_SOURCE = "customer_velocity_push"
FEATURE_SERVICE = "fraud_model_velocity"  # fraud_model_v1's features plus these
ENTITY = "customer_id"
TIMESTAMP = "feature_ts"  # as the marts' sources: the row is valid from the transaction's time
GAP = "seconds_since_prev"
# feature name -> Python type of its values (Feast types are chosen from these in feature_repo/features.py)
FEATURES: dict[str, type] = {
    **{f"txn_count_{window}": int for window in WINDOWS},
    **{f"amount_sum_{window}": float for window in WINDOWS},
    GAP: float,
}


@dataclass(frozen=True)
class Seen:
    """One transaction as the velocity state remembers it: epoch seconds, amount, id."""

    at: float
    amount: float
    transaction_id: str


Values = dict[str, float]


def velocity(recent: tuple[Seen, ...], new: Seen) -> tuple[Values | None, tuple[Seen, ...]]:
    """The velocity values of `new` given the customer's `recent` transactions, and the state after it.

    Windows are `(new.at - length, new.at]`, so `new` counts in its own windows and a transaction exactly
    one window length earlier no longer does. Only earlier (or simultaneous) transactions count: one that
    arrives late is counted for itself from what is remembered, and the rows already given for later ones
    are not changed. A transaction already in the state (a redelivered message) gives None and leaves the
    state as it was: counting it twice would change every later value.
    """
    if any(seen.transaction_id == new.transaction_id for seen in recent):
        return None, recent
    earlier = [seen for seen in recent if seen.at <= new.at]
    values: Values = {}
    for window, length in WINDOWS.items():
        inside = [seen.amount for seen in earlier if seen.at > new.at - length]
        values[f"txn_count_{window}"] = len(inside) + 1
        values[f"amount_sum_{window}"] = sum(inside) + new.amount
    previous = max((seen.at for seen in earlier), default=None)
    values[GAP] = float(HORIZON_SECONDS if previous is None else min(new.at - previous, HORIZON_SECONDS))
    newest = max(new.at, *(seen.at for seen in recent)) if recent else new.at
    kept = tuple(seen for seen in (*recent, new) if seen.at > newest - HORIZON_SECONDS)
    return values, kept


class VelocityState:
    """Every customer's last hour, updated transaction by transaction with `velocity`.

    Bounded: a customer's own history is cut to the hour on each update, and customers with nothing in
    the last hour of event time (the newest transaction seen) are dropped every `sweep_every` updates.
    """

    def __init__(self, sweep_every: int = 10_000) -> None:
        self.recent: dict[str, tuple[Seen, ...]] = {}
        self.newest = float("-inf")
        self.sweep_every = sweep_every
        self._updates = 0

    def update(self, customer: str, seen: Seen) -> Values | None:
        values, self.recent[customer] = velocity(self.recent.get(customer, ()), seen)
        self.newest = max(self.newest, seen.at)
        self._updates += 1
        if self._updates % self.sweep_every == 0:
            self.sweep()
        return values

    def newest_for(self, customer: str) -> float:
        """The time of the customer's newest remembered transaction (-inf: none in the last hour)."""
        return max((seen.at for seen in self.recent.get(customer, ())), default=float("-inf"))

    def sweep(self) -> None:
        """Forget customers whose newest transaction is older than the horizon."""
        cutoff = self.newest - HORIZON_SECONDS
        self.recent = {c: s for c, s in self.recent.items() if s and max(x.at for x in s) > cutoff}

    def __len__(self) -> int:
        return len(self.recent)


def epoch_seconds(at: datetime) -> float:
    """A datetime as epoch seconds; a naive one is UTC (as the warehouse keeps event times)."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def push_row(customer: str, seen: Seen, values: Values) -> dict:
    """The row pushed for one transaction: entity, validity time (the transaction's), features."""
    return {ENTITY: customer, TIMESTAMP: datetime.fromtimestamp(seen.at, UTC), **values}


def latest_per_instant(rows: list[dict]) -> list[dict]:
    """One row per (customer, time), the last computed: two transactions of a customer at the same instant
    share a validity time, and the second row (counting both) is the value as of that instant. Feast's
    Redis store would skip it as not newer than the first, and the offline join could pick either."""
    return list({(row[ENTITY], row[TIMESTAMP]): row for row in rows}.values())


def push_frame(rows: list[dict]) -> "pd.DataFrame":
    """Rows as the push source takes them, with the same column order and types whoever built them."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=[ENTITY, TIMESTAMP, *FEATURES])
    frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP], utc=True)
    return frame.astype({name: "int64" if kind is int else "float64" for name, kind in FEATURES.items()})


Landed = tuple[str, str, datetime, float]  # transaction_id, customer_id, event_ts, amount


def velocity_rows(transactions: Iterable[Landed], state: VelocityState) -> list[dict]:
    """Push rows for `(transaction_id, customer_id, event_ts, amount)` in the order given, through `state`
    (redelivered transactions give no row)."""
    rows = []
    for transaction_id, customer, at, amount in transactions:
        seen = Seen(epoch_seconds(at), float(amount), str(transaction_id))
        values = state.update(str(customer), seen)
        if values is not None:
            rows.append(push_row(str(customer), seen, values))
    return rows


def velocity_frame(transactions: "pd.DataFrame") -> "pd.DataFrame":
    """The backfill: every transaction's velocity row, from landed transactions (`transaction_id`,
    `customer_id`, `event_ts` naive UTC or aware, `amount`), in event order (ties by id), as the pusher
    would have computed them had they come through the stream in that order."""
    ordered = transactions.sort_values(["event_ts", "transaction_id"], kind="stable")
    columns = ["transaction_id", "customer_id", "event_ts", "amount"]
    records = ordered[columns].itertuples(index=False, name=None)
    rows = velocity_rows(((t, c, at.to_pydatetime(), a) for t, c, at, a in records), VelocityState())
    return push_frame(latest_per_instant(rows))
