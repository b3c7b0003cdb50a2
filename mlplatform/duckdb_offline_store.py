"""A Feast offline store that answers point-in-time queries over parquet file sources with DuckDB.

Named in a feature store configuration by its import path:

    offline_store:
      type: mlplatform.duckdb_offline_store.DuckDBOfflineStore

`get_historical_features` is one DuckDB statement: an `ASOF LEFT JOIN` per feature view of the entity
rows with the view's parquet file (the newest row at or before each event; a row older than the view's
ttl gives nulls; rows sharing a timestamp are decided by the source's created timestamp). Unlike Feast's
file (dask) store it keeps every entity row, once and in the order given: an event with no earlier
feature row gets nulls instead of being dropped, and two events with the same keys and time keep their
own rows (and so their own request data for on-demand views). `pull_latest_from_table_or_query` and
`pull_all_from_table_or_query` serve materialization into the online store. `offline_write_batch` takes
Feast's pushes to the offline store (`store.push(..., to=PushMode.ONLINE_AND_OFFLINE)`): each batch is one
more parquet file in the view's source folder (`create_history` makes the folder readable before any push).

This module imports only Feast, DuckDB and pyarrow (no Dagster): `feast` commands and `feast serve`
import it through the configuration. Feast ships its own `type: duckdb` store; with the versions pinned
here it needs ibis (not installed) and breaks on the compiled sqlglot dagster-dbt pulls in (see README).
"""

import hashlib
import os
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from feast.data_source import DataSource
from feast.feature_view import DUMMY_ENTITY_ID, DUMMY_ENTITY_VAL, FeatureView
from feast.infra.offline_stores.file_source import FileSource
from feast.infra.offline_stores.offline_store import OfflineStore, RetrievalJob
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import FeastConfigBaseModel, RepoConfig

from mlplatform.point_in_time import (
    ROW,
    TIME,
    ArrowRetrievalJob,
    PointInTimeRequest,
    ViewColumns,
    literal,
    quoted,
    timestamp_literal,
)
from mlplatform.pushed_history import history_rows, history_schema

STORE_TYPE = "mlplatform.duckdb_offline_store.DuckDBOfflineStore"


class DuckDBOfflineStoreConfig(FeastConfigBaseModel):
    """`threads`: DuckDB threads per query (None: one per core); `memory_limit`: its buffer pool (None:
    DuckDB's default, 80% of RAM), spilling into `temp_directory` beyond it (None: `.tmp` here)."""

    type: Literal["mlplatform.duckdb_offline_store.DuckDBOfflineStore"] = (
        "mlplatform.duckdb_offline_store.DuckDBOfflineStore"
    )
    threads: int | None = None
    memory_limit: str | None = None
    temp_directory: str | None = None


def connect(config: RepoConfig) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB whose session time zone is UTC: naive source timestamps are read as UTC."""
    settings: dict[str, str | bool | int | float | list[str]] = {
        name: str(value)
        for name in ("threads", "memory_limit", "temp_directory")
        if (value := getattr(config.offline_store, name, None))
    }
    con = duckdb.connect(config=settings)
    con.execute("set TimeZone = 'UTC'")  # after connecting: it needs the ICU extension loaded
    return con


def source_relation(config: RepoConfig, source: DataSource) -> str:
    """A FROM item reading the source's parquet file (or folder of parquet files)."""
    if not isinstance(source, FileSource):
        raise TypeError(f"{STORE_TYPE} reads FileSource parquet files, not {type(source).__name__}")
    uri = FileSource.get_uri_for_file_path(repo_path=config.repo_path, uri=source.file_options.uri)
    if Path(uri).is_dir():
        uri = f"{uri.rstrip('/')}/**/*.parquet"
    return f"read_parquet({literal(uri)})"


def history_folder(config: RepoConfig, view: FeatureView) -> Path:
    """The folder of parquet files a pushed view's history lives in (its batch source's path)."""
    source = view.batch_source
    if not isinstance(source, FileSource):
        raise TypeError(f"{STORE_TYPE} writes to FileSource folders, not {type(source).__name__}")
    uri = FileSource.get_uri_for_file_path(repo_path=config.repo_path, uri=source.file_options.uri)
    folder = Path(uri)
    if folder.is_file():
        raise ValueError(f"{folder} is a file: pushed rows go to a folder of parquet files")
    return folder


def write_history(folder: Path, table: pa.Table) -> Path:
    """`table` as one parquet file in `folder`, named by its content: the same rows written twice (a batch
    pushed again after a redelivery, a backfill run again) stay one file (mlplatform/pushed_history.py).
    Written aside and renamed, so a reader never sees half a file."""
    folder.mkdir(parents=True, exist_ok=True)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    digest = hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()[:32]
    target = folder / f"part-{digest}.parquet"
    partial = folder / f".{target.name}.{os.getpid()}.tmp"
    pq.write_table(table, partial)
    os.replace(partial, target)
    return target


def create_history(config: RepoConfig, view: FeatureView) -> Path:
    """A pushed view's folder with an empty file of its schema when it has none yet: Feast reads the
    folder's columns before the first push, and retrieval needs a file to read."""
    folder = history_folder(config, view)
    if not any(folder.glob("**/*.parquet")):
        write_history(folder, history_schema(view).empty_table())
    return folder


class AsofJoin(ViewColumns):
    """One feature view's part of a DuckDB point-in-time statement over the view's candidate rows (a
    relation of its keys `k0..`, time `ts`, created time `created` when the source has one, and features
    `f0..`): the rows read from its parquet source here, or fetched from Postgres by the prod store."""

    def candidate_columns(self, ts: str, created: str | None) -> list[str]:
        """The select list of the candidate rows, given the source's row time and created time."""
        return [
            *(f"{quoted(column)} as k{i}" for i, (column, _) in enumerate(self.keys)),
            f"{ts} as ts",
            *([f"{created} as created"] if created else []),
            *(f"{quoted(column)} as f{i}" for i, (column, _) in enumerate(self.features)),
        ]

    def deduplicated(self, candidates: str) -> str:
        """The candidate rows, only the one created last among rows sharing keys and timestamp."""
        if not self.created:
            return candidates
        keys = ", ".join([*(f"k{i}" for i in range(len(self.keys))), "ts"])
        return (
            f"select * exclude (created) from ({candidates}) "
            f"qualify row_number() over (partition by {keys} order by created desc nulls last) = 1"
        )

    def join(self, rows: str) -> str:
        """The ASOF join of the events with the view's `rows` (deduplicated candidates)."""
        on = [f"{self.alias}.k{i} = e.{quoted(column)}" for i, (_, column) in enumerate(self.keys)]
        on.append(f"e.{TIME} >= {self.alias}.ts")
        return f"asof left join ({rows}) as {self.alias} on {' and '.join(on)}"

    def selections(self) -> list[str]:
        """Each feature, null when the matched row is older than the ttl."""
        selected = []
        for i, (_, name) in enumerate(self.features):
            value = f"{self.alias}.f{i}"
            if self.ttl is not None:
                micros = int(self.ttl / timedelta(microseconds=1))
                value = f"case when {self.alias}.ts >= e.{TIME} - to_microseconds({micros}) then {value} end"
            selected.append(f"{value} as {quoted(name)}")
        return selected


def asof_features(
    con: duckdb.DuckDBPyConnection, events: pa.Table, joins: Sequence[AsofJoin], rows: list[str]
) -> pa.Table:
    """Each event's features (after ROW, in the events' order): one statement ASOF-joining the `events`
    spine with each view's `rows`, on `con` (UTC, see `connect`)."""
    selections = [f"e.{ROW}", *(s for j in joins for s in j.selections())]
    joined = " ".join(j.join(view_rows) for j, view_rows in zip(joins, rows, strict=True))
    con.register("events", events)
    return con.sql(
        f"select {', '.join(selections)} from events as e {joined} order by e.{ROW}"
    ).to_arrow_table()


class ViewJoin(AsofJoin):
    """What one feature view contributes to the point-in-time statement."""

    def subquery(self, config: RepoConfig, events_from: datetime, events_to: datetime) -> str:
        """The view's rows that can give some event a value (not newer than the newest event, not older
        than the oldest event's ttl allows), keys and features only; among rows sharing keys and
        timestamp, the one created last."""
        ts = f"{quoted(self.timestamp)}::timestamptz"
        created = quoted(self.created) if self.created else None
        sql = (
            f"select {', '.join(self.candidate_columns(ts, created))} "
            f"from {source_relation(config, self.source)} where {ts} <= {timestamp_literal(events_to)}"
        )
        if self.ttl is not None:
            sql += f" and {ts} >= {timestamp_literal(events_from - self.ttl)}"
        return self.deduplicated(sql)


def pull_all(
    config: RepoConfig,
    data_source: DataSource,
    join_key_columns: list[str],
    feature_name_columns: list[str],
    timestamp_field: str,
    created_timestamp_column: str | None = None,
    start_date: datetime | None = None,
    end_date: datetime | None = None,
    latest: bool = False,
) -> RetrievalJob:
    """Rows of a source with the timestamp in [start_date, end_date] (either bound optional), with
    `latest` only each entity's newest (the created timestamp breaks ties). Timestamps come as UTC
    TIMESTAMPTZ, as Feast's file store gives them; a view without entities gets Feast's dummy entity."""
    timestamps = [timestamp_field, *([created_timestamp_column] if created_timestamp_column else [])]
    columns = [
        *(quoted(c) for c in dict.fromkeys([*join_key_columns, *feature_name_columns])),
        *(f"{quoted(c)}::timestamptz as {quoted(c)}" for c in timestamps),
    ]
    if not join_key_columns:
        columns.append(f"{literal(DUMMY_ENTITY_VAL)} as {quoted(DUMMY_ENTITY_ID)}")
    bounds = [
        *(
            [f"{quoted(timestamp_field)}::timestamptz >= {timestamp_literal(start_date)}"]
            if start_date
            else []
        ),
        *([f"{quoted(timestamp_field)}::timestamptz <= {timestamp_literal(end_date)}"] if end_date else []),
    ]
    sql = f"select {', '.join(columns)} from {source_relation(config, data_source)}"
    if bounds:
        sql += f" where {' and '.join(bounds)}"
    if latest and join_key_columns:
        order = [timestamp_field, *([created_timestamp_column] if created_timestamp_column else [])]
        sql += (
            f" qualify row_number() over (partition by {', '.join(quoted(k) for k in join_key_columns)} "
            f"order by {', '.join(f'{quoted(c)} desc' for c in order)}) = 1"
        )

    def query() -> pa.Table:
        with connect(config) as con:
            return con.sql(sql).to_arrow_table()

    return ArrowRetrievalJob(query, full_feature_names=False)


class DuckDBOfflineStore(OfflineStore):
    pull_all_from_table_or_query = staticmethod(pull_all)
    create_history = staticmethod(create_history)  # what makes it a HistoryStore (pushed_history.py)

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str | None,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        **kwargs: Any,
    ) -> RetrievalJob:
        request = PointInTimeRequest(
            ViewJoin, feature_views, feature_refs, entity_df, registry, project, full_feature_names
        )

        def features() -> pa.Table:
            rows = [j.subquery(config, request.first, request.last) for j in request.joins]
            with connect(config) as con:
                return asof_features(con, request.events, request.joins, rows)

        return request.job(features)

    @staticmethod
    def offline_write_batch(
        config: RepoConfig,
        feature_view: FeatureView,
        table: pa.Table,
        progress: Callable[[int], Any] | None,
    ) -> None:
        """Pushed rows (Feast has already checked the columns against the folder's): one more file of the
        view's folder, one row per key, timestamps at microseconds UTC like the rest."""
        write_history(history_folder(config, feature_view), history_rows(feature_view, table))
        if progress:
            progress(table.num_rows)

    @staticmethod
    def pull_latest_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None,
        start_date: datetime,
        end_date: datetime,
    ) -> RetrievalJob:
        """Each entity's newest row with its timestamp in [start_date, end_date]."""
        return pull_all(
            config,
            data_source,
            join_key_columns,
            feature_name_columns,
            timestamp_field,
            created_timestamp_column,
            start_date,
            end_date,
            latest=True,
        )
