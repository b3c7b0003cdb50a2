"""Feast's Postgres offline store, with pushes and a point-in-time join that keeps every event.

Named in the prod profile's feature store configuration by its import path:

    offline_store:
      type: mlplatform.postgres_offline_store.PostgresOfflineStore
      host: ...            # PostgreSQLOfflineStoreConfig's settings, unchanged

`get_historical_features` for entity rows given as a DataFrame answers as the local DuckDB store does
(mlplatform/point_in_time.py): every event kept once, in order, each view's newest row at or before it
within the ttl. Each view takes the cheapest of three ways (`planned_ways`): when the view's rows that can
answer the events are few per event (a training set over the history: ~1.8 per event), they are fetched
(`ViewJoin.fetched`) and ASOF-joined to the events in process by DuckDB, with the local store's statement;
else, where Postgres can read them through an index on the keys and time (the one dbt creates with each
mart: dbt_project/macros/feast_lookup_indexes.sql), each event's row is looked up on its own
(`ViewJoin.lookup`), a cost per event that does not grow with the history (a day's batch); otherwise a hash
join on the keys with `distinct on` the event (`ViewJoin.hash_join`). Events and rows move as arrow through
the ADBC Postgres driver (binary COPY). Postgres runs a statement on one core, so a large retrieval's work
is split by time over a few connections answered side by side (`retrieval_connections`; measured in
benchmarks/offline_stores.py against the DuckDB store on the same data). Feast 0.67's own
statement keys events by their text (so it merges two events of one customer in the same second),
uploads them row by row and, past a few thousand events, gets a nested-loop plan that grows
quadratically (30,000 events took ~13 s, 9x the DuckDB store). Materialization pulls, saved datasets
and SQL entity queries are Feast's.

Added besides: `offline_write_batch`, so `store.push(..., to=PushMode.ONLINE_AND_OFFLINE)` (the
velocity pusher) and `PushMode.OFFLINE` (the backfill) store the rows in the table the view's batch
source reads (a `PostgreSQLSource(table="schema.name")`, see `postgres_source` in
feature_repo/features.py), and `create_history`, which creates that table before the first push: Feast
reads the source's columns before it writes a batch, and retrieval needs a table to read. The table's
primary key is the view's join keys and timestamp (`pushed_history.history_key`); a batch is upserted on
it, so a redelivered batch or a backfill run again leaves one row per key, the last written, as the
DuckDB store of the local profile does with its content-named files.

This module imports Feast, psycopg, ADBC, DuckDB and pyarrow only (no Dagster): `feast` commands and
`feast serve` import it through the configuration.
"""

import concurrent.futures
import contextlib
import itertools
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import adbc_driver_postgresql.dbapi as adbc
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from adbc_driver_postgresql import StatementOptions
from feast.feature_view import FeatureView
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import (
    PostgreSQLOfflineStore,
    PostgreSQLOfflineStoreConfig,
)
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource
from feast.infra.offline_stores.offline_store import RetrievalJob
from feast.infra.registry.base_registry import BaseRegistry
from feast.infra.utils.postgres.connection_utils import _get_conn, _get_conn_kwargs, _get_conninfo
from feast.repo_config import RepoConfig
from feast.type_map import arrow_to_pg_type, feast_value_type_to_pa
from feast.types import String
from psycopg import Cursor, sql
from psycopg.conninfo import make_conninfo
from pydantic import StrictFloat, StrictInt

from mlplatform.duckdb_offline_store import AsofJoin, asof_features, connect
from mlplatform.point_in_time import (
    ROW,
    TIME,
    PointInTimeRequest,
    quoted,
    time_range,
    timestamp_literal,
)
from mlplatform.pushed_history import history_key, history_rows, history_schema

if TYPE_CHECKING:
    from feast import FeatureStore

# a view is fetched when its rows number up to this many per event. Measured on the 42-day benchmark state
# (benchmarks/offline_stores.py), one connection: 1.81M customer rows for 1.03M events (1.75 per event)
# fetched in 1.6 s (Postgres sends a row in ~0.75 us, ADBC reads it in ~0.15) and ASOF-joined in ~1 s, where
# looking the events up took ~4.5 s; a day's 30k events against 99k rows (3.3 per event) fetched in 0.25 s
# (the scan reads the whole table) against 0.22 s of lookups: about even at 3 rows per event
FETCHED_ROWS_PER_EVENT = 2.5
# how a view's rows meet the events: fetched and ASOF-joined by DuckDB, or joined by Postgres (planned_ways)
Way = Literal["fetch", "lookup", "hash join"]
EVENTS = "__feast_events"  # the entity rows' spine, a temporary table of the retrieval's connection
# the settings of a retrieval's session, given as its connection opens
SESSION = {
    "TimeZone": "UTC",
    # each sort of a retrieval in memory (a view's candidates: 225k events x 28 features sort ~120 MB)
    "work_mem": "256MB",
    "jit": "off",  # compiling took longer than the statement it was for
    # each event's lookup has keys and a time of its own: the cache the planner put before the lookups
    # missed every time (126k misses, 2 hits), 252k customer lookups 1.9 s -> 1.5-1.8 s without
    "enable_memoize": "off",
}


class PostgresOfflineStoreConfig(PostgreSQLOfflineStoreConfig):
    """Feast's Postgres offline store settings; only the type names this class."""

    # narrows Feast's Literal["postgres"] to this class's name: Feast finds the store by it
    type: Literal["mlplatform.postgres_offline_store.PostgresOfflineStore"] = (
        "mlplatform.postgres_offline_store.PostgresOfflineStore"  # type: ignore[assignment]
    )
    # Postgres runs a statement over a temporary table on one core: a retrieval's events can be split by
    # time over up to this many connections, one statement each, run side by side (the prod profile: 2)
    retrieval_connections: StrictInt = 1
    # ... one more connection per this many events (each costs a connect and an upload of its own)
    events_per_connection: StrictInt = 10_000
    # a view whose rows in the retrieval's time range number at most this many per event (and no more
    # than `fetched_rows_limit`, which bounds the memory they take) is fetched and ASOF-joined in process
    # by DuckDB: reading a row out costs Postgres less than looking an event up (0: never fetched)
    fetched_rows_per_event: StrictFloat = FETCHED_ROWS_PER_EVENT
    fetched_rows_limit: StrictInt = 10_000_000


def history_table(view: FeatureView) -> list[str]:
    """The `[schema, ]table` a pushed view's batch source reads (pushes go nowhere else)."""
    source = view.batch_source
    # the source's table name is only in its options: PostgreSQLSource has no public accessor in 0.67
    table = source._postgres_options._table if isinstance(source, PostgreSQLSource) else ""
    if not table:
        raise TypeError(
            f"feature view {view.name}: pushed rows go to the table of a PostgreSQLSource(table=...), "
            f"not to {source!r}"
        )
    return table.split(".", 1)


def create_table(cur: Cursor, view: FeatureView) -> None:
    """The view's history table (and its schema) unless it exists: the view's columns typed as Feast maps
    arrow types to Postgres, keys not null, the history key as primary key."""
    names = history_table(view)
    schema = history_schema(view)
    key = history_key(view)
    columns = [
        sql.SQL("{} {}{}").format(
            sql.Identifier(field.name),
            sql.SQL(arrow_to_pg_type(str(field.type))),
            sql.SQL(" not null" if field.name in key else ""),
        )
        for field in schema
    ]
    if len(names) > 1:
        cur.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(names[0])))
    cur.execute(
        sql.SQL("create table if not exists {} ({}, primary key ({}))").format(
            sql.Identifier(*names), sql.SQL(", ").join(columns), sql.SQL(", ").join(map(sql.Identifier, key))
        )
    )


def upsert(cur: Cursor, view: FeatureView, rows: pa.Table) -> None:
    """`rows` (one per key) into the view's table: copied into a temporary table, then inserted, a key
    already stored taking the new values (the last write wins, as in the DuckDB store's history)."""
    table = sql.Identifier(*history_table(view))
    key = history_key(view)
    columns = sql.SQL(", ").join(map(sql.Identifier, rows.column_names))
    values = [name for name in rows.column_names if name not in key]
    cur.execute(sql.SQL("create temporary table incoming (like {}) on commit drop").format(table))
    with cur.copy(sql.SQL("copy incoming ({}) from stdin").format(columns)) as copy:
        for row in zip(*(rows[name].to_pylist() for name in rows.column_names), strict=True):
            copy.write_row(row)
    on_conflict = (
        sql.SQL("do update set {}").format(
            sql.SQL(", ").join(sql.SQL("{0} = excluded.{0}").format(sql.Identifier(v)) for v in values)
        )
        if values
        else sql.SQL("do nothing")
    )
    cur.execute(
        sql.SQL("insert into {} ({}) select {} from incoming on conflict ({}) {}").format(
            table, columns, columns, sql.SQL(", ").join(map(sql.Identifier, key)), on_conflict
        )
    )


class ViewJoin(AsofJoin):
    """One feature view's part of a point-in-time retrieval: for each event that has one, the view's
    newest row at or before it within the ttl, looked up event by event or hash-joined by Postgres, or
    ASOF-joined by DuckDB to the view's rows fetched from Postgres (`Way`)."""

    def __init__(self, view: FeatureView, features: list[str], full_feature_names: bool, alias: str):
        super().__init__(view, features, full_feature_names, alias)
        if not isinstance(self.source, PostgreSQLSource):
            raise TypeError(f"{view.name}: the Postgres offline store reads PostgreSQLSource tables")
        # text keys sorted bytewise: in the database's collation, sorting 500k events took 600-900 ms of a
        # view's 1.9 s (bytewise 300-450 ms); neighbouring keys of the index stay neighbours either way
        self.sort_keys = [
            f'{quoted(key)} collate "C"' if entity.dtype == String else quoted(key)
            for entity, (_, key) in zip(view.entity_columns, self.keys, strict=True)
        ]
        dtypes = {field.name: field.dtype for field in view.features}
        self.types = {
            name: feast_value_type_to_pa(dtypes[f].to_value_type())
            for f, (_, name) in zip(features, self.features, strict=True)
        }

    def _times(self, alias: str) -> tuple[str, str | None]:
        """The source's row time, and its created time if it has one, as timestamptz."""
        created = f"{alias}.{quoted(self.created)}::timestamptz" if self.created else None
        return f"{alias}.{quoted(self.timestamp)}::timestamptz", created

    @staticmethod
    def _within(ttl: timedelta, ts: str) -> str:
        return f"{ts} >= e.{TIME} - interval '{ttl // timedelta(microseconds=1)} microseconds'"

    def candidates(self, since: datetime | None, until: datetime, *, until_included: bool = True) -> str:
        """The view's rows timed from `since` (when given) to `until` (included or not): keys `k0..`, time
        `ts`, created time `created` when the source has one, features `f0..`."""
        ts, created = self._times("src")
        where = [f"{ts} {'<=' if until_included else '<'} {timestamp_literal(until)}"]
        if since is not None:
            where.append(f"{ts} >= {timestamp_literal(since)}")
        return (
            f"select {', '.join(self.candidate_columns(ts, created))} "
            f"from {self.source.get_table_query_string()} as src where {' and '.join(where)}"
        )

    def earliest(self, first: datetime) -> datetime | None:
        """The oldest row time that can answer an event at `first` (none without a ttl)."""
        return first - self.ttl if self.ttl is not None else None

    def hash_join(self, first: datetime, last: datetime) -> str:
        """For each event that has one, the newest of the view's rows at or before it (within the ttl): a
        hash join on the keys, then `distinct on` the event. Only rows that can answer some event are read
        (no newer than the newest event, no older than the oldest event's ttl allows), and they are read
        once, into a CTE of their own: inlined, a source's timestamp expression (a view's `at time zone`)
        was computed again for every candidate pair of the join (~25% of the statement)."""
        on = [f"s.k{i} = e.{quoted(column)}" for i, (_, column) in enumerate(self.keys)]
        on.append(f"s.ts <= e.{TIME}")
        if self.ttl is not None:
            on.append(self._within(self.ttl, "s.ts"))
        return (
            f"with {self.alias}_rows as materialized ({self.candidates(self.earliest(first), last)}) "
            f"select distinct on (e.{ROW}) e.{ROW}, {self._named('s')} from {EVENTS} as e "
            f"join {self.alias}_rows as s on {' and '.join(on)} "
            f"order by e.{ROW}, {newest_first('s.ts', 's.created' if self.created else None)}"
        )

    def fetched(self, first: datetime, last: datetime, parts: int) -> list[str]:
        """The statements reading the rows that can answer events from `first` to `last` (those
        `hash_join` reads), cut into `parts` consecutive spans of time, one per connection."""
        since = self.earliest(first)
        start = since or first
        edges = [start + (last - start) * i / parts for i in range(1, parts)]
        spans = list(zip([since, *edges], [*edges, last], strict=True))
        return [
            self.candidates(low, high, until_included=i == parts - 1) for i, (low, high) in enumerate(spans)
        ]

    def lookup(self) -> str:
        """For each event that has one, the newest of the view's rows at or before it (within the ttl),
        looked up on its own: `limit 1` of the rows of the event's keys, newest first. Through an index on
        the keys and the timestamp this is one index descent per event, whatever the history's length
        (`uses_index`); without one it would scan the source for every event. The events are taken in the
        index's order (`sort_keys`), so consecutive lookups read neighbouring pages (taken in time order,
        the 42-day benchmark's 1M customer lookups read 11x more pages from outside Postgres's buffers:
        9.4 s against 6.4 s)."""
        ts, created = self._times("src")
        where = [f"src.{quoted(column)} = e.{quoted(key)}" for column, key in self.keys]
        where.append(f"{ts} <= e.{TIME}")
        if self.ttl is not None:
            where.append(self._within(self.ttl, ts))
        features = ", ".join(f"src.{quoted(column)} as f{i}" for i, (column, _) in enumerate(self.features))
        by_key = ", ".join([*self.sort_keys, TIME])
        return (
            f"select e.{ROW}, {self._named('s')} from (select * from {EVENTS} order by {by_key}) as e "
            f"cross join lateral (select {features} from {self.source.get_table_query_string()} as src "
            f"where {' and '.join(where)} order by {newest_first(ts, created)} limit 1) as s"
        )

    def _named(self, alias: str) -> str:
        return ", ".join(f"{alias}.f{i} as {quoted(name)}" for i, (_, name) in enumerate(self.features))


def newest_first(ts: str, created: str | None) -> str:
    """The order that puts a key's newest row first, ties decided by the created time."""
    return ", ".join([f"{ts} desc", *([f"{created} desc nulls last"] if created else [])])


def lookup_index(table: str, join_keys: list[str]) -> str:
    """The statement creating the index through which `ViewJoin.lookup` reads a mart's rows, for a table
    loaded without dbt (benchmarks, tests): the one dbt creates with each mart on Postgres
    (dbt_project/macros/feast_lookup_indexes.sql), on the keys and the row time as the Feast source states
    it (feature_repo/features.py, `postgres_source`)."""
    return f"create index on {table} ({', '.join(join_keys)}, (feature_ts at time zone 'UTC'))"


def uses_index(plan: dict) -> bool:
    """Whether a plan (EXPLAIN's JSON) reads the view's rows only through an index bounded by the event's
    time as well as its keys: each lookup then reads just the rows it can choose from, and
    `ViewJoin.lookup` costs less than the hash join. A sequential or bitmap scan, or an index on the keys
    alone, reads more of the view for every event."""
    nodes, scans = [plan], []
    while nodes:
        node = nodes.pop()
        nodes.extend(node.get("Plans", []))
        if node.get("Relation Name", EVENTS) != EVENTS:
            scans.append(node)
    return bool(scans) and all(
        scan["Node Type"] in ("Index Scan", "Index Only Scan") and TIME in scan.get("Index Cond", "")
        for scan in scans
    )


def point_in_time(config: RepoConfig, request: PointInTimeRequest[ViewJoin]) -> pa.Table:
    """The feature columns for `request`'s events, in their order (after ROW), typed as the views declare.

    Each view takes its way (`planned_ways`). The work is shared among up to `retrieval_connections`
    connections answered at the same time: the events, ordered by time, cut into consecutive time ranges
    of about equal work (`split`), each range's lookups and hash joins on a connection of its own (each
    reads only the rows its range can use); a fetched view's rows cut into consecutive spans of time, one
    per connection. The connections open side by side (each starts a Postgres backend, ~40 ms), and the
    first also plans the views' ways. A Postgres-joined view's answer comes back alone, only for the
    events it has a row for, and is put in place by ROW here (joined to the events in SQL, Postgres spent
    as long sending the wider rows as joining); the fetched views are ASOF-joined to the events by DuckDB,
    as the local store joins its files."""
    types = {ROW: pa.int64(), **{name: t for j in request.joins for name, t in j.types.items()}}
    events = request.events
    if events.num_rows == 0:
        return pa.schema(types.items()).empty_table()
    store = config.offline_store
    parts = max(1, min(store.retrieval_connections, events.num_rows // store.events_per_connection))
    # ADBC releases the GIL while Postgres works
    with ThreadPoolExecutor(parts) as pool, contextlib.ExitStack() as opened:
        connections = opened_side_by_side(pool, opened, store, parts)
        ways = planned_ways(connections[0], request, store)
        joined: list[tuple[ViewJoin, Way]] = [
            (j, way) for j, way in zip(request.joins, ways, strict=True) if way != "fetch"
        ]
        fetched = [j for j, way in zip(request.joins, ways, strict=True) if way == "fetch"]
        slices = split(events, joined, parts)
        spans = [j.fetched(request.first, request.last, parts) for j in fetched]  # per view, per part
        fetches = [tuple(statements[part] for statements in spans) for part in range(parts)]
        answers = list(
            pool.map(
                lambda conn, part, reads: answer(conn, part, reads, joined), connections, slices, fetches
            )
        )
    by_view = {}
    for (join, _), by_slice in zip(joined, zip(*(found for found, _ in answers), strict=True), strict=True):
        # one chunk per column: arrow's take across chunks cost 10-30x more (1M rows, 25 columns: 0.4-2.9 s)
        found = pa.concat_tables(by_slice).combine_chunks()
        at = np.full(events.num_rows, -1)
        at[found[ROW].to_numpy()] = np.arange(found.num_rows)
        placed = pa.array(at, mask=at < 0)  # each event's row of `found`, null where it has none
        by_view[join.alias] = {name: found[name].take(placed) for name in found.column_names[1:]}
    if fetched:
        rows = [pa.concat_tables(parts) for parts in zip(*(read for _, read in answers), strict=True)]
        asof = asof_joined(config, events, fetched, rows)
        by_view |= {j.alias: {name: asof[name] for name in j.types} for j in fetched}
    columns = {ROW: pa.array(np.arange(events.num_rows))}
    for join in request.joins:
        columns |= by_view[join.alias]
    return pa.table(columns).cast(pa.schema(types.items()))


def asof_joined(
    config: RepoConfig, events: pa.Table, joins: list[ViewJoin], rows: list[pa.Table]
) -> pa.Table:
    """The `joins` views' features for `events` (in their order), ASOF-joined by DuckDB to each view's
    fetched `rows`."""
    with connect(config) as con:
        for join, view_rows in zip(joins, rows, strict=True):
            con.register(f"{join.alias}_fetched", view_rows)
        relations = [j.deduplicated(f"select * from {j.alias}_fetched") for j in joins]
        return asof_features(con, events, joins, relations)


def opened_side_by_side(
    pool: ThreadPoolExecutor, opened: contextlib.ExitStack, store: PostgresOfflineStoreConfig, count: int
) -> list[adbc.Connection]:
    """`count` connections to the store, opened at the same time, each closed with `opened`; if one
    fails to open, its error is raised once the others are in `opened`."""
    futures = [pool.submit(connection, store) for _ in range(count)]
    concurrent.futures.wait(futures)
    for future in futures:
        if future.exception() is None:
            opened.enter_context(future.result())
    return [future.result() for future in futures]


def split(events: pa.Table, joined: list[tuple[ViewJoin, Way]], parts: int) -> list[pa.Table]:
    """The events cut into `parts` consecutive time ranges of about equal work for the views Postgres
    joins: equal numbers of events when every view is looked up, `balanced_ranges` when some are
    hash-joined (a hash join's work grows with its range's span; a lookup's does not). None to upload
    when every view is fetched."""
    if not joined:
        return [events.slice(0, 0)] * parts
    if parts == 1:
        return [events]
    by_time = events.take(pc.sort_indices(events, [(TIME, "ascending")]))
    times = pc.cast(by_time[TIME], pa.int64()).to_numpy()  # microseconds
    hashed = [join for join, way in joined if way == "hash join"]
    ranges = (
        balanced_ranges(times, parts, reach(hashed, times)) if hashed else equal_ranges(len(times), parts)
    )
    return [by_time.slice(start, end - start) for start, end in ranges]


def reach(joins: list[ViewJoin], times: np.ndarray) -> int:
    """How far before a range's first event its statements read rows, in microseconds: the longest ttl
    of the views; a view without one reads every older row (counted as the events' whole span)."""
    ttls = [j.ttl for j in joins]
    if any(ttl is None for ttl in ttls):
        return int(times[-1] - times[0])
    return max(ttl // timedelta(microseconds=1) for ttl in ttls if ttl is not None)


def equal_ranges(count: int, parts: int) -> list[tuple[int, int]]:
    """`parts` consecutive (start, end) ranges of `count` events, as equal as can be."""
    return list(itertools.pairwise(count * i // parts for i in range(parts + 1)))


def balanced_ranges(times: np.ndarray, parts: int, reach: int) -> list[tuple[int, int]]:
    """Up to `parts` consecutive (start, end) ranges of the sorted event `times` (microseconds), cut where
    the most costly range costs least.

    A view's statement hash-joins each event of its range with every row of the event's keys that the
    range reads: the rows from `reach` before its first event to its last. So a range costs about its
    events times its span plus `reach`. Cut into equal numbers of events, the range spanning the most time
    did the most work: the later half of 249k labelled transactions (labels thin out towards the end)
    took 2.3x as long as the earlier, and the other connection then sat idle."""
    count = len(times)

    def cost(start: int, end: int) -> int:
        return (end - start) * (int(times[end - 1] - times[start]) + reach)

    def cut(budget: int) -> list[int]:
        """Range starts when each range takes as many events as `budget` allows (one at least); past
        `parts` ranges, the rest is not cut (the budget is too small anyway)."""
        starts: list[int] = []
        start = 0
        while start < count and len(starts) <= parts:
            starts.append(start)
            low, high = start + 1, count  # the longest end within budget, by bisection
            while low < high:
                middle = (low + high + 1) // 2
                low, high = (middle, high) if cost(start, middle) <= budget else (low, middle - 1)
            start = low
        return starts

    low, high = 0, cost(0, count)  # the least budget that needs no more than `parts` ranges
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if len(cut(middle)) <= parts else (middle + 1, high)
    starts = cut(low)
    return list(itertools.pairwise([*starts, count]))


def connection(store: PostgresOfflineStoreConfig) -> adbc.Connection:
    """An ADBC connection to the store's database, its session set for the point-in-time statements as
    it opens (libpq's `options`, beside Feast's search path): no statement runs, or can fail and leave the
    connection open, before it is handed over."""
    options = {k: v for k, v in _get_conn_kwargs(store).items() if v is not None}
    settings = [options.get("options", ""), *(f"-c {name}={value}" for name, value in SESSION.items())]
    options["options"] = " ".join(settings).strip()
    return adbc.connect(make_conninfo(_get_conninfo(store), **options))


def answer(
    conn: adbc.Connection, events: pa.Table, fetches: tuple[str, ...], joined: list[tuple[ViewJoin, Way]]
) -> tuple[list[pa.Table], list[pa.Table]]:
    """On `conn`: each Postgres-joined view's answer for `events`, looked up event by event or hash-joined
    as its way says, then the rows each `fetches` statement reads. Through ADBC, which moves the events in
    and the rows out as arrow (psycopg's COPY hands Python one row at a time: ~2.5 s of 225k events)."""
    found, fetched = [], []
    with conn.cursor() as cur:
        if joined:
            first, last = time_range(events)
            cur.adbc_ingest(EVENTS, events, mode="create_append", temporary=True)  # planned on it, empty
            if any(way == "hash join" for _, way in joined):  # its plan weighs the events' keys
                cur.execute(f"analyze {EVENTS}")
            for join, way in joined:
                cur.execute(join.lookup() if way == "lookup" else join.hash_join(first, last))
                found.append(cur.fetch_arrow_table())
        for statement in fetches:
            cur.execute(statement)
            fetched.append(cur.fetch_arrow_table())
    return found, fetched


def planned_ways(
    conn: adbc.Connection, request: PointInTimeRequest[ViewJoin], store: PostgresOfflineStoreConfig
) -> list[Way]:
    """Each view's way, planned on `conn`: fetched when Postgres expects the rows that can answer the
    events (`ViewJoin.fetched`) to number at most `fetched_rows_per_event` per event and
    `fetched_rows_limit` in all; else looked up when Postgres reads them through an index (`looked_up`);
    else hash-joined."""
    budget = min(store.fetched_rows_limit, store.fetched_rows_per_event * request.events.num_rows)
    fetch = [
        budget > 0
        and plan(conn, j.candidates(j.earliest(request.first), request.last))["Plan Rows"] <= budget
        for j in request.joins
    ]
    joined = [j for j, fetched in zip(request.joins, fetch, strict=True) if not fetched]
    lookups = iter(planned_lookups(conn, joined, request.events.schema) if joined else [])
    return ["fetch" if fetched else "lookup" if next(lookups) else "hash join" for fetched in fetch]


def planned_lookups(conn: adbc.Connection, joins: list[ViewJoin], events: pa.Schema) -> list[bool]:
    """`looked_up`, planned on an empty table of the events' columns (it then takes the events)."""
    with conn.cursor() as cur:
        cur.adbc_ingest(EVENTS, events.empty_table(), mode="create_append", temporary=True)
    return looked_up(conn, joins)


def looked_up_views(store: "FeatureStore", names: list[str]) -> dict[str, bool]:
    """For each named feature view of `store` (on this offline store), whether a retrieval looks its rows
    up event by event through an index (else it hash-joins them): what the benchmark reports and the
    dbt tests check of the marts dbt builds. The join keys are taken as text, as the platform's are."""
    views = [store.get_feature_view(name) for name in names]
    joins = [ViewJoin(view, [f.name for f in view.features], False, f"v{i}") for i, view in enumerate(views)]
    keys = dict.fromkeys(column for join in joins for _, column in join.keys)
    events = pa.schema(
        [(ROW, pa.int64()), *((key, pa.string()) for key in keys), (TIME, pa.timestamp("us", "UTC"))]
    )
    with connection(store.config.offline_store) as conn:
        lookups = planned_lookups(conn, joins, events)
    return dict(zip(names, lookups, strict=True))


def looked_up(conn: adbc.Connection, joins: list[ViewJoin]) -> list[bool]:
    """For each view, whether Postgres reads its rows through an index for `ViewJoin.lookup` (the
    connection holds the events' table, empty or not): then the lookups are cheaper than the hash join,
    and cost the same for every event."""
    return [uses_index(plan(conn, join.lookup())) for join in joins]


def plan(conn: adbc.Connection, statement: str) -> dict:
    """The plan Postgres chooses for `statement` (EXPLAIN's JSON), read without COPY: ADBC reads results
    through `COPY (...) TO STDOUT`, which cannot wrap an EXPLAIN."""
    with conn.cursor() as cur:
        cur.adbc_statement.set_options(**{StatementOptions.USE_COPY.value: "false"})
        cur.execute(f"explain (format json) {statement}")
        return json.loads(cur.fetchone()[0])[0]["Plan"]


class PostgresOfflineStore(PostgreSQLOfflineStore):
    """Feast's `PostgreSQLOfflineStore` with its own point-in-time join for DataFrame entity rows, and
    pushed rows (see the module's docstring)."""

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str | None,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
        **kwargs: Any,
    ) -> RetrievalJob:
        if entity_df is None or isinstance(entity_df, str):  # entities from SQL or none: Feast's
            return PostgreSQLOfflineStore.get_historical_features(
                config,
                feature_views,
                feature_refs,
                entity_df,
                registry,
                project,
                full_feature_names,
                filter_by_created_timestamp,
                **kwargs,
            )
        request = PointInTimeRequest(
            ViewJoin, feature_views, feature_refs, entity_df, registry, project, full_feature_names
        )
        return request.job(lambda: point_in_time(config, request))

    @staticmethod
    def create_history(config: RepoConfig, view: FeatureView) -> None:
        """The view's history table, if it does not exist yet (`mlplatform.pushed_history.HistoryStore`)."""
        with _get_conn(config.offline_store) as conn, conn.cursor() as cur:
            create_table(cur, view)

    @staticmethod
    def offline_write_batch(
        config: RepoConfig,
        feature_view: FeatureView,
        table: pa.Table,
        progress: Callable[[int], Any] | None,
    ) -> None:
        """Pushed rows (Feast has already checked their columns against the table's), upserted in one
        transaction: a batch is stored whole or not at all, and stored again it changes nothing."""
        rows = history_rows(feature_view, table)
        with _get_conn(config.offline_store) as conn, conn.cursor() as cur:
            create_table(cur, feature_view)  # a catalog lookup when it exists; writers need no apply
            upsert(cur, feature_view, rows)
        if progress:
            progress(table.num_rows)
