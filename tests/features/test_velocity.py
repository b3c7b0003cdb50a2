"""Velocity features: the pure function on bursts and window edges, push then read back through the real
Feast registry, SQLite online store and DuckDB offline store, and point-in-time retrieval of the pushed
history for a training set on the built state."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from mlplatform.features.retrieval import features_as_of_events
from mlplatform.resources.feature_store import LocalFeastFeatureStore
from mlplatform.streaming.pusher import backfill, landed_transactions, prepare_history
from mlplatform.velocity import (
    FEATURE_SERVICE,
    FEATURES,
    GAP,
    HORIZON_SECONDS,
    PUSH_SOURCE,
    VIEW,
    Seen,
    VelocityState,
    latest_per_instant,
    push_frame,
    push_row,
    velocity,
    velocity_frame,
)
from tests.conftest import copy_applied_state

T0 = datetime(2026, 3, 5, 14, 0, tzinfo=UTC).timestamp()


def run(transactions: list[tuple[float, float]]) -> list[dict]:
    """Velocity values of one customer's transactions (seconds after T0, amount), in order."""
    recent: tuple[Seen, ...] = ()
    out = []
    for i, (offset, amount) in enumerate(transactions):
        values, recent = velocity(recent, Seen(T0 + offset, amount, f"t{i}"))
        out.append(values)
    return out


def test_a_burst_moves_the_ten_minute_count_and_the_gap():
    burst = run([(0, 10.0), (60, 20.0), (120, 30.0), (700, 5.0)])
    assert [v["txn_count_10m"] for v in burst] == [1, 2, 3, 2]  # at 700 s only 120 s and 700 s are inside
    assert [v["amount_sum_10m"] for v in burst] == [10.0, 30.0, 60.0, 35.0]
    assert [v["txn_count_1h"] for v in burst] == [1, 2, 3, 4]
    assert [v["amount_sum_1h"] for v in burst] == [10.0, 30.0, 60.0, 65.0]
    assert [v[GAP] for v in burst] == [HORIZON_SECONDS, 60.0, 60.0, 580.0]  # the first: capped at an hour


def test_windows_expire_at_their_length_and_the_state_keeps_only_the_last_hour():
    at_edges = run([(0, 1.0), (600, 2.0), (3_600, 4.0)])
    assert at_edges[1]["txn_count_10m"] == 1  # exactly 10 minutes later: the first is out of the window
    assert at_edges[1]["txn_count_1h"] == 2
    assert (at_edges[2]["txn_count_1h"], at_edges[2]["amount_sum_1h"]) == (2, 6.0)  # 600 s and 3,600 s
    assert at_edges[2][GAP] == 3_000.0

    _, recent = velocity((), Seen(T0, 1.0, "a"))
    _, recent = velocity(recent, Seen(T0 + 7_200, 1.0, "b"))
    assert [s.transaction_id for s in recent] == ["b"]  # two hours on: the first is forgotten
    values, _ = velocity(recent, Seen(T0 + 7_300, 1.0, "c"))
    assert values is not None and values[GAP] == 100.0


def test_a_redelivered_transaction_counts_once_and_a_late_one_only_for_itself():
    _, recent = velocity((), Seen(T0, 10.0, "a"))
    again, same = velocity(recent, Seen(T0, 10.0, "a"))
    assert again is None and same == recent

    _, recent = velocity(recent, Seen(T0 + 300, 5.0, "b"))
    late, recent = velocity(recent, Seen(T0 + 100, 1.0, "late"))  # arrives after b, happened before it
    assert late is not None and (late["txn_count_10m"], late[GAP]) == (2, 100.0)  # a and itself, not b
    assert len(recent) == 3


def test_the_state_forgets_customers_idle_for_an_hour():
    state = VelocityState(sweep_every=3)
    state.update("c1", Seen(T0, 1.0, "a"))
    state.update("c2", Seen(T0 + 10, 1.0, "b"))
    state.update("c3", Seen(T0 + HORIZON_SECONDS + 5, 1.0, "c"))  # third update: the sweep runs
    assert set(state.recent) == {"c2", "c3"}


def test_the_backfill_keeps_the_last_row_of_an_instant_and_matches_the_stream_order():
    transactions = pd.DataFrame(
        {
            "transaction_id": ["t2", "t1", "t3", "t4"],
            "customer_id": ["c1", "c1", "c1", "c2"],
            "event_ts": pd.to_datetime(
                ["2026-03-05 14:00:00", "2026-03-05 14:00:00", "2026-03-05 14:03:00", "2026-03-05 14:01:00"]
            ),
            "amount": [2.0, 1.0, 4.0, 9.0],
        }
    )
    frame = velocity_frame(transactions)
    # t1 and t2 share an instant: one row, counting both
    assert frame[["customer_id", "txn_count_10m", "amount_sum_10m"]].values.tolist() == [
        ["c1", 2, 3.0],
        ["c2", 1, 9.0],
        ["c1", 3, 7.0],
    ]
    assert list(frame.dtypes[list(FEATURES)].astype(str)) == [
        "int64" if kind is int else "float64" for kind in FEATURES.values()
    ]
    rows = [push_row("c", Seen(T0, 1.0, "x"), {"n": 1}), push_row("c", Seen(T0, 1.0, "y"), {"n": 2})]
    assert latest_per_instant(rows) == rows[1:]


@pytest.fixture
def store(tmp_path):
    """The platform's Feast definitions applied to a fresh local state: file registry, SQLite online
    store, DuckDB offline store, the velocity history folder ready."""
    feature_store = LocalFeastFeatureStore(state_dir=str(tmp_path))
    feature_store.apply()
    store = feature_store.store()
    prepare_history(store)
    return store


def test_push_then_read_online_and_offline_gives_the_same_values(store):
    from feast.data_source import PushMode

    now = datetime.now(UTC).replace(microsecond=0)
    transactions = pd.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in range(5)],
            "customer_id": ["c1", "c1", "c1", "c2", "c1"],
            "event_ts": [now - timedelta(minutes=m) for m in (30, 9, 5, 4, 1)],
            "amount": [100.0, 20.0, 30.0, 7.5, 40.0],
        }
    )
    pushed = velocity_frame(transactions)
    store.push(PUSH_SOURCE, pushed, to=PushMode.ONLINE_AND_OFFLINE)

    refs = [f"{VIEW}:{feature}" for feature in FEATURES]
    entity_rows = [{"customer_id": "c1"}, {"customer_id": "c2"}]
    online = store.get_online_features(features=refs, entity_rows=entity_rows)
    latest = pushed.groupby("customer_id").tail(1).set_index("customer_id")
    for i, customer in enumerate(("c1", "c2")):
        assert {f: online.to_dict()[f][i] for f in FEATURES} == latest.loc[customer, list(FEATURES)].to_dict()
    assert latest.loc["c1", "txn_count_10m"] == 3 and latest.loc["c1", "txn_count_1h"] == 4

    events = pushed[["customer_id", "feature_ts"]].rename(columns={"feature_ts": "event_timestamp"})
    offline = store.get_historical_features(entity_df=events, features=refs).to_df()
    assert offline[list(FEATURES)].values.tolist() == pushed[list(FEATURES)].values.tolist()

    store.push(PUSH_SOURCE, pushed, to=PushMode.OFFLINE)  # the same batch again (a redelivery)
    again = store.get_historical_features(entity_df=events, features=refs).to_df()
    assert again[list(FEATURES)].values.tolist() == pushed[list(FEATURES)].values.tolist()
    folder = store.get_feature_view(VIEW).batch_source.path
    assert len(list(Path(folder).glob("*.parquet"))) == 2  # the empty one + the batch


def test_push_frame_of_nothing_is_typed():
    frame = push_frame([])
    assert frame.empty and str(frame.dtypes["txn_count_1h"]) == "int64"


@pytest.mark.e2e
def test_a_training_set_gets_the_backfilled_values_as_of_each_transaction(built_state, tmp_path):
    _, resources = copy_applied_state(built_state[0], tmp_path / "state")
    store = resources["feature_store"].store()
    warehouse = resources["warehouse"]
    transactions = landed_transactions(warehouse)
    assert backfill(store, transactions) == len(velocity_frame(transactions))

    labels = warehouse.read_sql("select * from marts.training_labels order by transaction_id limit 3000")
    spine = labels.drop(columns=["home_country", "category"])
    rows = features_as_of_events(store, spine, FEATURE_SERVICE)
    assert len(rows) == len(spine)
    assert rows["customer_stats__txn_count_7d"].notna().any()  # fraud_model_v1's features still there

    # each labelled transaction's own row, recomputed from scratch over every loaded transaction
    expected = velocity_frame(transactions).drop_duplicates(["customer_id", "feature_ts"], keep="last")
    expected["event_ts"] = expected.pop("feature_ts").dt.tz_localize(None)
    merged = rows.merge(expected, on=["customer_id", "event_ts"], how="left", validate="many_to_one")
    for feature in FEATURES:
        assert merged[f"{VIEW}__{feature}"].tolist() == merged[feature].tolist(), feature
    assert (merged[f"{VIEW}__txn_count_1h"] >= 1).all()
