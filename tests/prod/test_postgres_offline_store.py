"""The prod offline store's point-in-time join on the local Postgres, through Feast's API, on the hand-made
sources of tests/features/test_duckdb_offline_store.py (events before any row, rows past the ttl, an event
exactly at a row, two rows with one timestamp, two events with the same keys in the same second, an entity
with no rows): the same answers as the bare DuckDB ASOF join and the local DuckDB store, on one connection
and with the events split by time over several."""

import itertools
import time
from datetime import timedelta
from types import SimpleNamespace

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from feast import Entity, FeatureView, Field
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource
from feast.types import Int64, String

from mlplatform import postgres_offline_store
from mlplatform.duckdb_offline_store import STORE_TYPE as DUCKDB_STORE
from mlplatform.point_in_time import ROW, TIME
from mlplatform.postgres_offline_store import EVENTS, answer, lookup_index, planned_ways, uses_index
from mlplatform.resources.feature_store import POSTGRES_OFFLINE_STORE, PostgresRedisFeastFeatureStore
from mlplatform.resources.postgres import PostgresConnection
from tests.features.test_duckdb_offline_store import (
    FEATURES,
    bare_asof,
    build_store,
    customer_rows,
    events,
    merchant_rows,
)
from tests.prod.conftest import PG_HOST, PG_PASSWORD, PG_PORT, PG_USER

TABLES = {
    "customers": "customer_id text, feature_ts timestamp, txn_count bigint, avg double precision, home text",
    "merchants": "merchant_id text, feature_ts timestamp, created_ts timestamp, risk bigint",
}


# one connection; or the events split by time over three, one event each at least (the same answers)
SPLITS = {
    "one connection": {"retrieval_connections": 1},
    "split over connections": {"retrieval_connections": 3, "events_per_connection": 1},
}
# the way the store takes for every view: plain tables (a hash join); the tables as the prod marts are read
# (a source query stating the time's zone, and the index dbt's feast_lookup_indexes creates: one lookup per
# event); or those, fetched whatever their number of rows and ASOF-joined by DuckDB
WAYS = ["hash join", "lookup", "fetch"]
FILLER_KEYS = 3_000  # other entities' rows, enough for Postgres to prefer an index to a scan


@pytest.fixture(params=WAYS)
def way(request) -> str:
    return request.param


@pytest.fixture
def indexed(way) -> bool:
    return way != "hash join"


@pytest.fixture(params=SPLITS.values(), ids=SPLITS.keys())
def postgres_store(request, tmp_path, throwaway_database, indexed, way):
    database = throwaway_database("pit")
    login = {"host": PG_HOST, "port": PG_PORT, "user": PG_USER, "password": PG_PASSWORD or None}
    with psycopg.connect(**login, dbname=database, autocommit=True) as con:
        con.execute("create schema features")
        for (table, columns), rows in zip(TABLES.items(), (customer_rows(), merchant_rows()), strict=True):
            con.execute(f"create table features.{table} ({columns})")
            values = rows.astype(object).where(rows.notna(), None)
            with con.cursor().copy(f"copy features.{table} from stdin") as copy:
                for row in values.itertuples(index=False):
                    copy.write_row(row)
            key = rows.columns[0]
            con.execute(
                f"insert into features.{table} ({key}, feature_ts) select 'other' || k, %s::timestamp + d "
                f"* interval '1 day' from generate_series(1, {FILLER_KEYS}) k, generate_series(0, 3) d",
                (rows["feature_ts"].min(),),
            )
            if indexed:
                con.execute(lookup_index(f"features.{table}", [key]))
            con.execute(f"vacuum analyze features.{table}")
    sources = {
        name: PostgreSQLSource(
            name=name,
            **(
                {"query": f"select *, feature_ts at time zone 'UTC' as feature_utc from features.{name}"}
                if indexed
                else {"table": f"features.{name}"}
            ),
            timestamp_field="feature_utc" if indexed else "feature_ts",
            created_timestamp_column="created_ts" if name == "merchants" else "",
        )
        for name in TABLES
    }
    offline = {"type": POSTGRES_OFFLINE_STORE, **login, "password": PG_PASSWORD, "database": database}
    offline |= request.param
    offline["fetched_rows_per_event"] = 1e9 if way == "fetch" else 0.0
    offline["sslmode"] = "prefer"  # Feast defaults to require; the test server has no TLS
    return build_store(tmp_path, offline, sources)


@pytest.fixture
def ways(monkeypatch) -> list[str]:
    """The way each view of each retrieval took."""
    chosen: list[str] = []

    def recorded(*args) -> list[str]:
        chosen.extend(planned_ways(*args))
        return chosen[-len(args[1].joins) :]

    monkeypatch.setattr(postgres_offline_store, "planned_ways", recorded)
    return chosen


def test_point_in_time_values_equal_a_bare_asof_join_and_the_duckdb_store(
    postgres_store, tmp_path, way, ways
):
    duckdb_store = build_store(tmp_path, {"type": DUCKDB_STORE})  # also writes the bare join's files
    by_postgres = postgres_store.get_historical_features(
        entity_df=events(), features=FEATURES, full_feature_names=True
    ).to_df()
    pd.testing.assert_frame_equal(by_postgres, bare_asof(tmp_path), check_dtype=False)
    assert ways and set(ways) == {way}

    features = [*FEATURES, "local_clock:utc_hour", "local_clock:avg_missing"]
    rows = events().assign(event_ts=events()["event_timestamp"].dt.tz_convert("Asia/Kolkata"))
    by_each = [
        store.get_historical_features(entity_df=rows, features=features, full_feature_names=True).to_df()
        for store in (postgres_store, duckdb_store)
    ]
    pd.testing.assert_frame_equal(*by_each)
    # every event once and in order, the two in the same second with their own request data
    assert by_each[0]["amount"].tolist() == events()["amount"].tolist()
    assert by_each[0]["doubled__amount_x2"][2:4].tolist() == [14.0, 16.0]


def test_no_events_give_no_rows(postgres_store):
    empty = postgres_store.get_historical_features(entity_df=events().head(0), features=FEATURES).to_df()
    assert empty.empty
    assert {"txn_count", "risk", "amount_x2"} <= set(empty.columns)


def test_the_prod_profile_splits_a_retrieval_over_the_connections_it_is_given():
    connection = PostgresConnection(
        host=PG_HOST, port=PG_PORT, user=PG_USER, password=PG_PASSWORD, database="x"
    )
    by_default = PostgresRedisFeastFeatureStore(postgres=connection, redis_connection="127.0.0.1:6379,db=15")
    assert by_default.repo_config().offline_store.retrieval_connections == 2
    four = PostgresRedisFeastFeatureStore(
        postgres=connection, redis_connection="127.0.0.1:6379,db=15", retrieval_connections=4
    )
    assert four.repo_config().offline_store.retrieval_connections == 4


def test_the_work_is_split_into_consecutive_time_ranges_one_per_connection(postgres_store, way, monkeypatch):
    """Joined by Postgres, each connection takes a time range of the events; fetched, a span of time of
    each view's rows (and no events to upload)."""
    shares = []  # each connection's events and the rows it fetched, per view

    def recorded(conn, events, fetches, joined):
        found, fetched = answer(conn, events, fetches, joined)
        shares.append((events, fetched))
        return found, fetched

    monkeypatch.setattr(postgres_offline_store, "answer", recorded)
    postgres_store.get_historical_features(entity_df=events(), features=FEATURES).to_df()
    split = postgres_store.config.offline_store.retrieval_connections > 1
    assert len(shares) > 1 if split else len(shares) == 1
    uploaded = [share for share, fetched in shares if share.num_rows]
    assert sum(share.num_rows for share in uploaded) == (0 if way == "fetch" else 8)
    assert all(len(fetched) == (2 if way == "fetch" else 0) for _, fetched in shares)
    spans = [[fetched[view]["ts"] for _, fetched in shares] for view in range(2 if way == "fetch" else 0)]
    for times in [[share[TIME] for share in uploaded], *spans]:
        bounds = sorted(
            (b["min"].as_py(), b["max"].as_py()) for b in map(pc.min_max, times) if b["min"].is_valid
        )
        assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(bounds))


def test_a_fetched_views_spans_hold_every_row_it_can_use_once(postgres_store):
    """The spans of a view's rows fetched over 1, 2 or 5 connections: the rows `hash_join` reads for the
    same events (two of them sharing keys and time), none twice, none lost at a span's edge, a row's own
    time included."""
    view = postgres_store.get_feature_view("merchant_stats")
    join = postgres_offline_store.ViewJoin(view, [f.name for f in view.features], False, "v0")
    times = pd.to_datetime(events()["event_timestamp"], utc=True)
    first, last = times.min().to_pydatetime(), times.max().to_pydatetime()
    with postgres_offline_store.connection(postgres_store.config.offline_store) as conn, conn.cursor() as cur:
        cur.execute(join.candidates(join.earliest(first), last))
        every = sorted(cur.fetch_arrow_table().to_pylist(), key=repr)
        for parts in (1, 2, 5):
            spans = []
            for statement in join.fetched(first, last, parts):
                cur.execute(statement)
                spans.append(cur.fetch_arrow_table())
            assert sorted(pa.concat_tables(spans).to_pylist(), key=repr) == every
        edge = every[len(every) // 2]["ts"]  # a row's own time as the edge between two spans
        halves = []
        for half in (
            join.candidates(join.earliest(first), edge, until_included=False),
            join.candidates(edge, last),
        ):
            cur.execute(half)
            halves.extend(cur.fetch_arrow_table().to_pylist())
    assert sorted(halves, key=repr) == every
    assert len(every) > 100


def test_a_view_is_fetched_when_postgres_expects_few_rows_per_event_and_no_more_than_the_limit(
    postgres_store, way, ways
):
    """The default: the 8 test events, against the few hundred rows of each view in their time range, are
    joined by Postgres; allowed 10,000 rows per event they are fetched, unless the limit is lower than the
    rows."""
    if way == "fetch":
        pytest.skip("the fixture's store fetches whatever the rows")
    config = postgres_store.config.offline_store

    def retrieve() -> pd.DataFrame:
        return postgres_store.get_historical_features(entity_df=events(), features=FEATURES).to_df()

    config.fetched_rows_per_event = postgres_offline_store.FETCHED_ROWS_PER_EVENT
    by_postgres = retrieve()
    assert ways[-2:] == [way, way]
    config.fetched_rows_per_event = 10_000
    fetched = retrieve()
    assert ways[-2:] == ["fetch", "fetch"]
    pd.testing.assert_frame_equal(fetched, by_postgres)
    config.fetched_rows_limit = 10
    retrieve()
    assert ways[-2:] == [way, way]


def costliest(times: np.ndarray, ranges: list[tuple[int, int]], reach: int) -> int:
    return max((end - start) * (int(times[end - 1] - times[start]) + reach) for start, end in ranges)


@pytest.mark.parametrize("seed", range(40))
def test_balanced_ranges_cost_no_more_than_the_best_cut_found_by_trying_every_one(seed):
    rng = np.random.default_rng(seed)
    count, parts, reach = int(rng.integers(1, 10)), int(rng.integers(1, 5)), int(rng.integers(0, 50))
    times = np.sort(rng.integers(0, 100, count))
    ranges = postgres_offline_store.balanced_ranges(times, parts, reach)
    assert ranges[0][0] == 0 and ranges[-1][1] == count and len(ranges) <= parts
    assert all(start < end for start, end in ranges)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    every_cut = (
        list(itertools.pairwise([0, *cuts, count]))
        for k in range(min(parts, count))
        for cuts in itertools.combinations(range(1, count), k)
    )
    assert costliest(times, ranges, reach) == min(costliest(times, r, reach) for r in every_cut)


def test_labelled_events_thinning_out_are_cut_later_than_half_way():
    """Dense early, thin late (labels arrive later for recent transactions): equal counts would give the
    later range most of the time span; the balanced cut gives the earlier range more events."""
    day = 86_400_000_000
    times = np.concatenate([np.linspace(0, 8 * day, 150_000), np.linspace(8 * day, 16 * day, 100_000)])
    times = times.astype(np.int64)
    ranges = postgres_offline_store.balanced_ranges(times, 2, 2 * day)
    assert ranges[0][1] > 125_000
    assert costliest(times, ranges, 2 * day) < costliest(times, [(0, 125_000), (125_000, 250_000)], 2 * day)


def test_the_reach_is_the_longest_ttl_or_without_one_the_events_whole_span():
    """How far back a range's statements read rows: what the cut weighs each range's span against."""
    day = timedelta(days=1)
    times = np.array([0, 5 * 86_400_000_000])
    with_ttls = [SimpleNamespace(ttl=day), SimpleNamespace(ttl=2 * day)]
    assert postgres_offline_store.reach(with_ttls, times) == 2 * 86_400_000_000
    assert postgres_offline_store.reach([*with_ttls, SimpleNamespace(ttl=None)], times) == 5 * 86_400_000_000


def scan(kind: str, condition: str = "") -> dict:
    """A scan of the view's rows."""
    return {"Node Type": kind, "Relation Name": "rows", "Index Cond": condition}


def node(kind: str, *below: dict) -> dict:
    return {"Node Type": kind, "Plans": list(below)}


BY_KEY_AND_TIME = f"((customer_id = e.customer_id) AND (ts <= e.{TIME}))"
EVENTS_SCAN = {"Node Type": "Seq Scan", "Relation Name": postgres_offline_store.EVENTS}
PLANS = {  # a lookup's plan -> whether it reads the view's rows through an index on the keys and time
    "index scan": (
        node("Nested Loop", EVENTS_SCAN, node("Limit", scan("Index Scan", BY_KEY_AND_TIME))),
        True,
    ),
    "index-only scan, events sorted first": (
        node(
            "Nested Loop", node("Sort", EVENTS_SCAN), node("Limit", scan("Index Only Scan", BY_KEY_AND_TIME))
        ),
        True,
    ),
    "ties sorted by created time": (
        node("Nested Loop", EVENTS_SCAN, node("Limit", node("Sort", scan("Index Scan", BY_KEY_AND_TIME)))),
        True,
    ),
    "a scan per event": (
        node("Nested Loop", EVENTS_SCAN, node("Limit", node("Sort", scan("Seq Scan")))),
        False,
    ),
    "a bitmap scan per event": (
        node("Nested Loop", EVENTS_SCAN, node("Limit", node("Sort", scan("Bitmap Heap Scan")))),
        False,
    ),
    "an index on the keys alone": (
        node("Nested Loop", EVENTS_SCAN, node("Limit", node("Sort", scan("Index Scan", "(k = e.k)")))),
        False,
    ),
    "no rows read": (EVENTS_SCAN, False),
}


@pytest.mark.parametrize(("plan", "through_index"), PLANS.values(), ids=PLANS.keys())
def test_a_view_is_looked_up_only_through_an_index_on_its_keys_and_time(plan, through_index):
    assert uses_index(plan) is through_index


@pytest.fixture
def store_config(throwaway_database) -> postgres_offline_store.PostgresOfflineStoreConfig:
    return postgres_offline_store.PostgresOfflineStoreConfig(
        host=PG_HOST,
        port=PG_PORT,
        user=PG_USER,
        password=PG_PASSWORD,
        database=throwaway_database("session"),
        sslmode="prefer",
    )


def backends(database: str) -> int:
    with psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, password=PG_PASSWORD or None, dbname="postgres"
    ) as con:
        [(count,)] = con.execute("select count(*) from pg_stat_activity where datname = %s", (database,))
    return count


def test_a_retrieval_connection_opens_with_its_session_set(store_config):
    with postgres_offline_store.connection(store_config) as conn, conn.cursor() as cur:
        names = list(postgres_offline_store.SESSION)
        cur.execute("select " + ", ".join(f"current_setting('{name}')" for name in names))
        assert dict(zip(names, cur.fetchone(), strict=True)) == postgres_offline_store.SESSION
        cur.execute("select current_setting('search_path')")
        assert "public" in cur.fetchone()[0]  # Feast's own option kept beside them


def test_a_session_setting_refused_leaves_no_connection_open(store_config, monkeypatch):
    """A setting the server refuses fails the connect itself: nothing is left open behind the error (set
    by statements after connecting, the refused one left an open connection with the caller's traceback)."""
    monkeypatch.setitem(postgres_offline_store.SESSION, "work_mem", "plenty")
    before = backends(store_config.database)
    with pytest.raises(Exception, match="work_mem") as refused:
        postgres_offline_store.connection(store_config)
    assert refused.value is not None  # the traceback, and everything its frames hold, still alive
    assert backends(store_config.database) == before


def test_a_connection_that_fails_to_open_leaves_none_of_the_others_open(postgres_store, monkeypatch):
    """The connections of a split retrieval open side by side: when one fails, the error is raised and
    the ones that did open are closed."""
    config = postgres_store.config.offline_store
    if config.retrieval_connections == 1:
        pytest.skip("one connection: nothing else to leave open")
    calls = itertools.count()

    def first_fails_last(store):  # the others have opened by the time it fails
        if next(calls) == 0:
            time.sleep(0.5)
            raise psycopg.OperationalError("connection refused: too many clients")
        return connect(store)

    connect = postgres_offline_store.connection
    monkeypatch.setattr(postgres_offline_store, "connection", first_fails_last)
    before = backends(config.database)
    with pytest.raises(Exception, match="too many clients"):
        postgres_store.get_historical_features(entity_df=events(), features=FEATURES).to_df()
    assert backends(config.database) == before


@pytest.mark.parametrize(("key_type", "key"), [(String, "'a'"), (Int64, "1")], ids=["text", "bigint"])
def test_the_events_are_sorted_bytewise_for_the_lookups_when_their_key_is_text(store_config, key_type, key):
    """Text keys are sorted in the "C" collation (the database's took twice as long); a key of another
    type takes none, which Postgres would refuse: the lookup answers on both."""
    entity = Entity(name="thing", join_keys=["thing_id"], value_type=key_type.to_value_type())
    view = FeatureView(
        name="things",
        entities=[entity],
        schema=[Field(name="thing_id", dtype=key_type), Field(name="x", dtype=Int64)],
        source=PostgreSQLSource(name="things", table="public.things", timestamp_field="feature_ts"),
        ttl=timedelta(days=1),
    )
    join = postgres_offline_store.ViewJoin(view, ["x"], False, "v0")
    pg_type = "text" if key_type == String else "bigint"
    with postgres_offline_store.connection(store_config) as conn, conn.cursor() as cur:
        cur.execute(f"create table things (thing_id {pg_type}, feature_ts timestamptz, x bigint)")
        cur.execute(f"insert into things values ({key}, now() - interval '1 hour', 7)")
        cur.execute(f"create temporary table {EVENTS} ({ROW} bigint, thing_id {pg_type}, {TIME} timestamptz)")
        cur.execute(f"insert into {EVENTS} values (0, {key}, now())")
        cur.execute(join.lookup())
        assert cur.fetch_arrow_table().to_pydict() == {ROW: [0], "x": [7]}
    assert ('collate "C"' in join.lookup()) is (key_type == String)
