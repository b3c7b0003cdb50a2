"""Feast's Postgres offline store, with pushes and a point-in-time join that keeps every event.

Named in the prod profile's feature store configuration by its import path:

    offline_store:
      type: mlplatform.postgres_offline_store.PostgresOfflineStore
      host: ...            # PostgreSQLOfflineStoreConfig's settings, unchanged

`get_historical_features` for entity rows given as a DataFrame answers as the local DuckDB store does
(mlplatform/point_in_time.py): every event kept once, in order, each view's newest row at or before it
within the ttl. The events go in and the answers come out as arrow through the ADBC Postgres driver
(binary COPY); each view is a statement of its own. Where Postgres can read the view's rows through an
index on its keys and time (the one dbt creates with each mart: dbt_project/macros/feast_lookup_indexes.sql),
each event's row is looked up on its own (`ViewJoin.lookup`), a cost per event that does not grow with
the history; otherwise a hash join on the keys with `distinct on` the event (`ViewJoin.hash_join`).
Postgres runs a statement over a temporary table on one core, so a large retrieval's events are split by
time over a few connections answered side by side (`retrieval_connections`; measured in
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

This module imports Feast, psycopg, ADBC and pyarrow only (no Dagster): `feast` commands and `feast serve`
import it through the configuration.
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
from pydantic import StrictInt

from mlplatform.point_in_time import (
    ROW,
    TIME,
    PointInTimeRequest,
    ViewColumns,
    quoted,
    time_range,
    timestamp_literal,
)
from mlplatform.pushed_history import history_key, history_rows, history_schema

if TYPE_CHECKING:
    from feast import FeatureStore

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


class ViewJoin(ViewColumns):
    """One feature view's statement of a point-in-time retrieval: for each event that has one, the view's
    newest row at or before it within the ttl, looked up event by event or hash-joined."""

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

    def hash_join(self, first: datetime, last: datetime) -> str:
        """For each event that has one, the newest of the view's rows at or before it (within the ttl): a
        hash join on the keys, then `distinct on` the event. Only rows that can answer some event are read
        (no newer than the newest event, no older than the oldest event's ttl allows), and they are read
        once, into a CTE of their own: inlined, a source's timestamp expression (a view's `at time zone`)
        was computed again for every candidate pair of the join (~25% of the statement)."""
        ts, created = self._times("src")
        columns = [
            *(f"{quoted(column)} as k{i}" for i, (column, _) in enumerate(self.keys)),
            f"{ts} as ts",
            *([f"{created} as created"] if created else []),
            *(f"{quoted(column)} as f{i}" for i, (column, _) in enumerate(self.features)),
        ]
        rows = f"{ts} <= {timestamp_literal(last)}"
        on = [f"s.k{i} = e.{quoted(column)}" for i, (_, column) in enumerate(self.keys)]
        on.append(f"s.ts <= e.{TIME}")
        if self.ttl is not None:
            rows += f" and {ts} >= {timestamp_literal(first - self.ttl)}"
            on.append(self._within(self.ttl, "s.ts"))
        return (
            f"with {self.alias}_rows as materialized (select {', '.join(columns)} "
            f"from {self.source.get_table_query_string()} as src where {rows}) "
            f"select distinct on (e.{ROW}) e.{ROW}, {self._named('s')} from {EVENTS} as e "
            f"join {self.alias}_rows as s on {' and '.join(on)} "
            f"order by e.{ROW}, {newest_first('s.ts', 's.created' if created else None)}"
        )

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

    The events, ordered by time, are split into up to `retrieval_connections` consecutive time ranges of
    about equal work (`split`), each answered on its own connection at the same time (each reads only the
    rows its range can use). The connections open side by side (each starts a Postgres backend, ~40 ms),
    and the first also plans the views' way. Each view's answer comes back alone, only for the events it
    has a row for, and is put in place by ROW here: joined to the events in SQL, Postgres spent as long
    sending the wider rows as joining."""
    types = {ROW: pa.int64(), **{name: t for j in request.joins for name, t in j.types.items()}}
    events = request.events
    if events.num_rows == 0:
        return pa.schema(types.items()).empty_table()
    store = config.offline_store
    parts = max(1, min(store.retrieval_connections, events.num_rows // store.events_per_connection))
    # ADBC releases the GIL while Postgres works
    with ThreadPoolExecutor(parts) as pool, contextlib.ExitStack() as opened:
        connections = opened_side_by_side(pool, opened, store, parts)
        lookups, slices = split(connections[0], request.joins, events, parts)
        answers = list(
            pool.map(lambda conn, part: answer(conn, request.joins, part, lookups), connections, slices)
        )
    columns = {ROW: pa.array(np.arange(events.num_rows))}
    for by_slice in zip(*answers, strict=True):  # a view's answers, from every slice
        # one chunk per column: arrow's take across chunks cost 10-30x more (1M rows, 25 columns: 0.4-2.9 s)
        found = pa.concat_tables(by_slice).combine_chunks()
        at = np.full(events.num_rows, -1)
        at[found[ROW].to_numpy()] = np.arange(found.num_rows)
        placed = pa.array(at, mask=at < 0)  # each event's row of `found`, null where it has none
        columns |= {name: found[name].take(placed) for name in found.column_names[1:]}
    return pa.table(columns).cast(pa.schema(types.items()))


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


def split(
    conn: adbc.Connection, joins: list[ViewJoin], events: pa.Table, parts: int
) -> tuple[list[bool], list[pa.Table]]:
    """Each view's way (`planned_lookups` on `conn`) and the events cut into `parts` consecutive time
    ranges of about equal work: equal numbers of events when every view is looked up, `balanced_ranges`
    when some are hash-joined (a hash join's work grows with its range's span; a lookup's does not)."""
    lookups = planned_lookups(conn, joins, events.schema)
    if parts == 1:
        return lookups, [events]
    by_time = events.take(pc.sort_indices(events, [(TIME, "ascending")]))
    times = pc.cast(by_time[TIME], pa.int64()).to_numpy()  # microseconds
    joined = [join for join, lookup in zip(joins, lookups, strict=True) if not lookup]
    ranges = (
        balanced_ranges(times, parts, reach(joined, times)) if joined else equal_ranges(len(times), parts)
    )
    return lookups, [by_time.slice(start, end - start) for start, end in ranges]


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
    conn: adbc.Connection, joins: list[ViewJoin], events: pa.Table, lookups: list[bool]
) -> list[pa.Table]:
    """Each view's answer for `events`, on `conn`: looked up event by event where `lookups` says so,
    hash-joined otherwise. Through ADBC, which moves the events in and the answer out as arrow (psycopg's
    COPY hands Python one row at a time: ~2.5 s of 225k events)."""
    first, last = time_range(events)
    with conn.cursor() as cur:
        cur.adbc_ingest(EVENTS, events, mode="create_append", temporary=True)  # planned on it, empty
        if not all(lookups):  # a hash join's plan weighs the events' keys; a lookup's is the same for any
            cur.execute(f"analyze {EVENTS}")
        found = []
        for join, lookup in zip(joins, lookups, strict=True):
            cur.execute(join.lookup() if lookup else join.hash_join(first, last))
            found.append(cur.fetch_arrow_table())
        return found


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
