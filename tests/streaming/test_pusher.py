"""The velocity pusher on the real Redis (database 11) and a real Feast store (file registry, SQLite online
store, DuckDB offline store; tests/prod/test_velocity_push.py runs it on the prod stores): what it pushes
from the stream equals the backfill of the same transactions online and offline, a restarted pusher
rebuilds its state from the stream, and `velocity_freshness` judges the health log it wrote (and does
not judge a day without pushes)."""

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from dagster import AssetCheckSeverity, DagsterInstance, materialize

from mlplatform.checks import was_judged
from mlplatform.profiles import build_resources
from mlplatform.resources.prediction_log import PredictionLogWriter
from mlplatform.serving.schemas import EXAMPLE
from mlplatform.streaming.pusher import VelocityPusher
from mlplatform.streaming.replay import send
from mlplatform.streaming.velocity_health import velocity_freshness
from mlplatform.velocity import FEATURES, VIEW, velocity_frame
from tests.streaming.conftest import settings_for

REFS = [f"{VIEW}:{feature}" for feature in FEATURES]


@pytest.fixture
def local(tmp_path):
    """(resources on a fresh state with the Feast definitions applied, stream settings on database 11)."""
    resources = build_resources(profile="local", state=tmp_path)
    resources["feature_store"].apply()
    resources["streaming"] = settings_for(tmp_path, batch_size=7)
    return resources, resources["streaming"]


def burst_transactions(n: int = 40) -> list[dict]:
    """Three customers over the last 90 minutes; c000001 in bursts a minute apart."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=90)
    rows = []
    for i in range(n):
        customer = ["c000001", "c000001", "c000002", "c000003"][i % 4]
        rows.append(
            {**EXAMPLE, "transaction_id": f"t-{i:03d}", "customer_id": customer, "amount": 10.0 + i}
            | {"event_ts": start + timedelta(minutes=2 * i + (i % 4))}
        )
    return rows


def as_landed(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)[["transaction_id", "customer_id", "event_ts", "amount"]]


def drain(pusher: VelocityPusher, timeout: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while True:
        pusher.step()
        lag, pending = pusher.broker.lag()
        if lag == 0 and pending == 0:
            return
        assert time.monotonic() < deadline, f"not drained: lag {lag}, pending {pending}"


def assert_store_holds(store, rows: list[dict]) -> None:
    """Online: each customer's last backfilled row. Offline: every backfilled row, as of its own time."""
    expected = velocity_frame(as_landed(rows))
    latest = expected.groupby("customer_id").tail(1).reset_index(drop=True)
    online = store.get_online_features(
        features=REFS, entity_rows=[{"customer_id": c} for c in latest["customer_id"]]
    ).to_dict()
    read = [[online[f][i] for f in FEATURES] for i in range(len(latest))]
    assert read == latest[list(FEATURES)].values.tolist()
    events = expected[["customer_id", "feature_ts"]].rename(columns={"feature_ts": "event_timestamp"})
    offline = store.get_historical_features(entity_df=events, features=REFS).to_df()
    # compared in time order: the Postgres offline store (prod, tests/prod) does not keep the rows' order
    offline = offline.sort_values(["event_timestamp", "customer_id"])
    expected = expected.sort_values(["feature_ts", "customer_id"])
    assert offline[list(FEATURES)].values.tolist() == expected[list(FEATURES)].values.tolist()


def test_the_pusher_writes_what_the_backfill_computes_online_and_offline(local, redis_db, tmp_path):
    resources, settings = local
    store = resources["feature_store"].store()
    health = PredictionLogWriter(tmp_path / "streaming" / "velocity")
    pusher = VelocityPusher(settings, store, health, name="p1")
    rows = burst_transactions()
    send(settings, rows + rows[-2:-1], client=redis_db)  # one sent twice
    redis_db.xadd(settings.input_stream, {"transaction": "{"})  # invalid: skipped (scorers dead-letter it)
    drain(pusher)
    health.close()

    assert_store_holds(store, rows)
    (log,) = (tmp_path / "streaming" / "velocity").glob("date=*/*.jsonl")
    lines = [json.loads(line) for line in log.open()]
    assert sum(line["pushed"] for line in lines) == len(rows)
    assert (sum(line["duplicates"] for line in lines), sum(line["invalid"] for line in lines)) == (1, 1)
    assert sum(line["probes"] for line in lines) > 0 and sum(line["stale_reads"] for line in lines) == 0
    assert all(lag >= 0 for line in lines for lag in line["lag_ms"])


def test_a_late_transaction_is_history_only(local, redis_db):
    """One older than its customer's newest pushed: stored offline as of its time, the online row stays."""
    resources, settings = local
    store = resources["feature_store"].store()
    pusher = VelocityPusher(settings, store, name="p1")
    rows = burst_transactions(8)
    send(settings, rows[:4] + rows[5:] + rows[4:5], client=redis_db)  # t-004 (c000001) arrives last
    drain(pusher)
    online = store.get_online_features(features=REFS, entity_rows=[{"customer_id": "c000001"}]).to_dict()
    # c000001 at 0, 3, 8 (t-004, late) and 11 minutes (t-005): online stays t-005's row, computed before
    # t-004 arrived (t-000, t-001 and itself; 8 minutes after t-001)
    assert (online["txn_count_1h"], online["seconds_since_prev"]) == ([3], [480.0])
    late = next(r for r in rows if r["transaction_id"] == "t-004")
    events = pd.DataFrame({"customer_id": ["c000001"], "event_timestamp": [late["event_ts"]]})
    offline = store.get_historical_features(entity_df=events, features=REFS).to_df()
    assert (offline["txn_count_1h"].tolist(), offline["seconds_since_prev"].tolist()) == ([3], [300.0])


def test_a_restarted_pusher_rebuilds_its_state_from_the_stream(local, redis_db):
    resources, settings = local
    store = resources["feature_store"].store()
    rows = burst_transactions()
    first, second, third = rows[:20], rows[20:27], rows[27:]
    send(settings, first, client=redis_db)
    drain(VelocityPusher(settings, store, name="p1"))

    send(settings, second, client=redis_db)
    crashed = VelocityPusher(settings, store, name="p2")
    assert len(crashed.broker.read_new()) == len(second)  # delivered, never pushed nor acknowledged

    restarted = VelocityPusher(settings, store, name="p2")
    assert restarted.warmed_up == len(first)  # the acknowledged last hour; the pending batch comes next
    send(settings, third, client=redis_db)
    drain(restarted)
    assert_store_holds(store, rows)


def run_freshness(resources, day: str):
    with DagsterInstance.ephemeral() as instance:
        result = materialize([velocity_freshness], partition_key=day, resources=resources, instance=instance)
    assert result.success
    (materialization,) = result.asset_materializations_for_node("velocity_freshness")
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    return {k: v.value for k, v in materialization.metadata.items()}, checks


def test_velocity_freshness_judges_the_pushers_day_and_not_a_quiet_one(local, redis_db, tmp_path):
    resources, settings = local
    health = PredictionLogWriter(tmp_path / "streaming" / "velocity")
    pusher = VelocityPusher(settings, resources["feature_store"].store(), health, name="p1")
    send(settings, burst_transactions(), client=redis_db)
    drain(pusher)
    health.close()

    today = f"{datetime.now(UTC):%Y-%m-%d}"
    figures, checks = run_freshness(resources, today)
    assert figures["pushed"] == 40 and 0 <= figures["push_lag_p50_ms"] <= figures["push_lag_p99_ms"]
    assert figures["stale_read_share"] == 0.0
    assert all(was_judged(c.metadata) for c in checks.values())
    assert checks["stale_read_share"].passed

    # a batch whose read-back probes saw older values: the share fails with ERROR and alerts
    stale = PredictionLogWriter(tmp_path / "streaming" / "velocity")
    stale.record(
        {"logged_at": datetime.now(UTC).isoformat(), "pusher": "p0", "messages": 5, "pushed": 5}
        | {"duplicates": 0, "invalid": 0, "lag_ms": [5] * 5, "probes": 5, "stale_reads": 5}
        | {"customers_in_state": 5}
    )
    stale.close()
    _, checks = run_freshness(resources, today)
    assert not checks["stale_read_share"].passed
    assert checks["stale_read_share"].severity == AssetCheckSeverity.ERROR
    alerts = (tmp_path / "alerts" / "alerts.jsonl").read_text()
    assert "stale_read_share" in alerts

    quiet = f"{datetime.now(UTC) - timedelta(days=3):%Y-%m-%d}"
    figures, checks = run_freshness(resources, quiet)
    assert figures["pushed"] == 0
    assert all(not c.passed and not was_judged(c.metadata) for c in checks.values())
    assert all(c.description.startswith("not judged: no velocity pushes") for c in checks.values())
