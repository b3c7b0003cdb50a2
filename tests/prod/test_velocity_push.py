"""Velocity features pushed on the prod stores: Feast's push API into the Redis online store and the
platform's Postgres offline store (`mlplatform.postgres_offline_store`), the rows read back online and
point in time with the values pushed; a redelivered batch and a backfill run twice leave one row per
customer and instant; the prod backfill stores what the local one (DuckDB) stores for the same
transactions; the stream pusher runs on prod as on the local profile, and as its Deployment runs it
(`mlplatform velocity-push --metrics-port`, a real process: probes on /metrics, SIGTERM ends it cleanly).

Real services only: a throwaway Postgres database and Redis db VELOCITY_REDIS_DB (the online store and the
input stream), flushed before and after. Postgres and Redis must be reachable: this test fails without
them. No built state is needed: the transactions are generated here.
"""

import os
import signal
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime

import pandas as pd
import psycopg
import pytest
import redis

from mlplatform.profiles import build_resources
from mlplatform.resources.feature_store import POSTGRES_OFFLINE_STORE
from mlplatform.settings import PROJECT_ROOT
from mlplatform.streaming.pusher import VelocityPusher, backfill, landed_transactions
from mlplatform.streaming.replay import send
from mlplatform.velocity import ENTITY, FEATURES, PUSH_SOURCE, TIMESTAMP, velocity_frame
from tests.prod.conftest import REDIS_HOST, REDIS_PORT, VELOCITY_REDIS_DB, pg_env
from tests.prod.services import BIN, TELEMETRY_OFF, free_port, http_ok, process, wait_until
from tests.streaming.test_pusher import REFS, as_landed, assert_store_holds, burst_transactions, drain

pytestmark = pytest.mark.e2e

HISTORY_TABLE = "pushed_features.customer_velocity"  # what the README names; the code reads the source


@pytest.fixture(scope="module")
def prod(throwaway_database, tmp_path_factory) -> Iterator[dict]:
    """The prod profile's resources on a throwaway database and Redis db VELOCITY_REDIS_DB, the Feast
    definitions applied (which creates the velocity history table), the environment set while the module
    runs."""
    online = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=VELOCITY_REDIS_DB)
    online.flushdb()
    settings = {
        **TELEMETRY_OFF,
        **pg_env(throwaway_database("velocity")),
        "MLPLATFORM_PROFILE": "prod",
        "MLPLATFORM_STATE_DIR": str(tmp_path_factory.mktemp("velocity_state")),
        "MLPLATFORM_REDIS_URL": f"{REDIS_HOST}:{REDIS_PORT},db={VELOCITY_REDIS_DB}",
        "MLPLATFORM_STREAM_REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{VELOCITY_REDIS_DB}",
    }
    with pytest.MonkeyPatch.context() as env:
        for name, value in settings.items():
            env.setenv(name, value)
        resources = build_resources()
        resources["feature_store"].apply()
        yield resources
    online.flushdb()


@pytest.fixture
def clean(prod) -> dict:
    """Each test starts from an empty history table and an empty Redis db."""
    history(prod, f"truncate {HISTORY_TABLE}")
    redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=VELOCITY_REDIS_DB).flushdb()
    return prod


def history(resources: dict, statement: str) -> list[tuple]:
    with psycopg.connect(resources["warehouse"].postgres.conninfo()) as con:
        cursor = con.execute(statement)
        return cursor.fetchall() if cursor.description else []


def stored(resources: dict) -> pd.DataFrame:
    """The history table as the pusher's frames are built (rows ordered by time, then customer)."""
    columns = [ENTITY, TIMESTAMP, *FEATURES]
    rows = history(resources, f"select {', '.join(columns)} from {HISTORY_TABLE} order by 2, 1")
    frame = pd.DataFrame(rows, columns=columns)
    frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP], utc=True)
    return frame


def ordered(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values([TIMESTAMP, ENTITY]).reset_index(drop=True)


def as_of(store, rows: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time values of the view for each row's customer and time (ordered: Postgres keeps no
    entity row order)."""
    events = rows[[ENTITY, TIMESTAMP]].rename(columns={TIMESTAMP: "event_timestamp"})
    found = store.get_historical_features(entity_df=events, features=REFS).to_df()
    # DuckDB answers nanoseconds, Postgres microseconds: the same instants
    found["event_timestamp"] = pd.to_datetime(found["event_timestamp"], utc=True).dt.as_unit("ns")
    return found.sort_values(["event_timestamp", ENTITY]).reset_index(drop=True)


def test_apply_creates_the_history_table_with_its_key(prod):
    store = prod["feature_store"].store()
    assert store.config.offline_store.type == POSTGRES_OFFLINE_STORE
    key = history(
        prod,
        "select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid "
        f"and a.attnum = any(i.indkey) where i.indrelid = '{HISTORY_TABLE}'::regclass and i.indisprimary "
        "order by array_position(i.indkey, a.attnum)",
    )
    assert [name for (name,) in key] == [ENTITY, TIMESTAMP]
    prod["feature_store"].apply()  # again: nothing to create, nothing lost


def test_pushed_rows_read_back_online_and_point_in_time_and_a_redelivery_stores_nothing_new(clean):
    from feast.data_source import PushMode

    store = clean["feature_store"].store()
    pushed = velocity_frame(as_landed(burst_transactions()))
    store.push(PUSH_SOURCE, pushed, to=PushMode.ONLINE_AND_OFFLINE)

    latest = pushed.groupby(ENTITY).tail(1).reset_index(drop=True)
    online = store.get_online_features(
        features=REFS, entity_rows=[{ENTITY: c} for c in latest[ENTITY]]
    ).to_dict()
    read = [[online[f][i] for f in FEATURES] for i in range(len(latest))]
    assert read == latest[list(FEATURES)].values.tolist()

    expected = ordered(pushed)
    found = as_of(store, pushed)
    assert found[list(FEATURES)].values.tolist() == expected[list(FEATURES)].values.tolist()
    # between two rows of a customer: the earlier row's values
    between = expected.assign(**{TIMESTAMP: expected[TIMESTAMP] + pd.Timedelta(seconds=30)})
    assert as_of(store, between)[list(FEATURES)].values.tolist() == expected[list(FEATURES)].values.tolist()

    store.push(PUSH_SOURCE, pushed.iloc[::-1], to=PushMode.ONLINE_AND_OFFLINE)  # redelivered, reordered
    store.push(PUSH_SOURCE, pushed.iloc[:5], to=PushMode.OFFLINE)
    counts = f"select count(*), count(distinct ({ENTITY}, {TIMESTAMP})) from {HISTORY_TABLE}"
    assert history(clean, counts) == [(len(pushed), len(pushed))]
    pd.testing.assert_frame_equal(stored(clean), expected)


def test_the_prod_backfill_stores_what_the_local_one_does(clean, tmp_path):
    """Same landed transactions in both warehouses, `mlplatform velocity-backfill`'s function on each:
    the Postgres table holds `mlplatform.velocity`'s rows, once after two runs, and point-in-time
    retrieval gives the same values as the DuckDB store's."""
    landed = as_landed(burst_transactions(60))
    landed["event_ts"] = pd.to_datetime(landed["event_ts"], utc=True).dt.tz_localize(None)  # naive, as landed
    local = build_resources(profile="local", state=tmp_path)
    local["feature_store"].apply()
    for resources in (clean, local):
        resources["warehouse"].write_table("raw", "transactions", landed)

    store = clean["feature_store"].store()
    rows = [backfill(store, landed_transactions(clean["warehouse"])) for _ in range(2)]
    expected = ordered(velocity_frame(landed))
    assert rows == [len(expected)] * 2
    pd.testing.assert_frame_equal(stored(clean), expected)

    backfill(local["feature_store"].store(), landed_transactions(local["warehouse"]))
    on_prod = as_of(store, expected)
    on_local = as_of(local["feature_store"].store(), expected)
    pd.testing.assert_frame_equal(on_prod, on_local, check_like=True)
    assert on_prod[list(FEATURES)].values.tolist() == expected[list(FEATURES)].values.tolist()


def test_the_stream_pusher_runs_on_prod(clean):
    """`mlplatform velocity-push`'s pusher on the prod resources (its stream, online and offline stores):
    online each customer's last row, offline every row, the same as the backfill computes."""
    store = clean["feature_store"].store()
    settings = clean["streaming"].model_copy(update={"batch_size": 7})
    pusher = VelocityPusher(settings, store, name="prod-1")
    rows = burst_transactions()
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=VELOCITY_REDIS_DB, decode_responses=True)
    send(settings, rows + rows[-3:], client=client)  # the last three sent twice
    drain(pusher)
    assert_store_holds(store, rows)
    pd.testing.assert_frame_equal(stored(clean), ordered(velocity_frame(as_landed(rows))))
    assert datetime.now(UTC) - stored(clean)[TIMESTAMP].max() < pd.Timedelta(hours=2)


def test_the_deployments_command_pushes_on_prod_and_stops_on_sigterm(clean, tmp_path):
    """deploy/k8s/velocity-pusher.yaml's command with only the prod environment: /metrics (its probes)
    answers, the rows sent reach the history table, the counters say so, SIGTERM exits 0."""
    port = free_port()
    command = [str(BIN / "mlplatform"), "velocity-push", "--metrics-port", str(port), "--name", "pod-1"]
    # the worktree's package, whatever the interpreter's editable install points at
    path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    rows = burst_transactions(12)
    log = tmp_path / "pusher.log"
    with process(command, {**os.environ, "PYTHONPATH": path}, log) as proc:
        metrics = f"http://127.0.0.1:{port}/metrics"
        wait_until(lambda: proc.poll() is None and http_ok(metrics), 120, f"velocity-push (see {log})")
        send(clean["streaming"], rows)
        wait_until(lambda: len(stored(clean)) == len(rows), 60, f"rows in {HISTORY_TABLE} (see {log})")
        # the pusher counts a batch once its push returned: the rows can be stored a moment before
        pushed = f'mlplatform_velocity_messages_total{{outcome="pushed"}} {float(len(rows))}'
        wait_until(lambda: pushed in series_at(metrics), 30, f"{pushed} at {metrics} (see {log})")
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    pd.testing.assert_frame_equal(stored(clean), ordered(velocity_frame(as_landed(rows))))


def series_at(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()
