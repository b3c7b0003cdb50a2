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
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from feast.data_source import DataSource
from feast.feature_view import DUMMY_ENTITY_ID, DUMMY_ENTITY_VAL, FeatureView
from feast.infra.offline_stores.file_source import FileSource
from feast.infra.offline_stores.offline_store import OfflineStore, RetrievalJob, RetrievalMetadata
from feast.infra.registry.base_registry import BaseRegistry
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from feast.utils import _get_requested_feature_views_to_features_dict

from mlplatform.pushed_history import history_rows, history_schema

STORE_TYPE = "mlplatform.duckdb_offline_store.DuckDBOfflineStore"
EVENT_TIMESTAMP = "event_timestamp"  # Feast's name for the entity rows' time column
ROW = "__feast_row"  # position of each entity row: results come back in the order given
TIME = "__feast_ts"  # each entity row's time as TIMESTAMPTZ


class DuckDBOfflineStoreConfig(FeastConfigBaseModel):
    """`threads`: DuckDB threads per query (None: one per core)."""

    type: Literal["mlplatform.duckdb_offline_store.DuckDBOfflineStore"] = (
        "mlplatform.duckdb_offline_store.DuckDBOfflineStore"
    )
    threads: int | None = None


def quoted(name: str) -> str:
    """A SQL identifier, whatever characters it holds."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A SQL string literal (a ' inside is doubled)."""
    return "'" + text.replace("'", "''") + "'"


def timestamp_literal(at: datetime) -> str:
    """A TIMESTAMPTZ literal; a naive `at` is UTC."""
    stamp = pd.Timestamp(at)
    utc = stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC")
    return literal(utc.isoformat()) + "::timestamptz"


def connect(config: RepoConfig) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB whose session time zone is UTC: naive source timestamps are read as UTC."""
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    threads = getattr(config.offline_store, "threads", None)
    if threads:
        con.execute(f"set threads = {int(threads)}")
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


class DuckDBRetrievalJob(RetrievalJob):
    """Runs `query` (an arrow table producer) when the result is asked for, then the on-demand views.

    Feast's `RetrievalJob.to_arrow` would hand each on-demand view the whole result (every entity column
    and feature), which a python-mode view turns into Python objects: at 50k rows 0.9 s of a 1.3 s
    retrieval. Here each view gets only the columns it declares as inputs (its request data and its source
    views' features), the same inputs it gets online, and runs its own transformation on them."""

    def __init__(
        self,
        query: Callable[[], pa.Table],
        full_feature_names: bool,
        on_demand_feature_views: list[OnDemandFeatureView] | None = None,
        metadata: RetrievalMetadata | None = None,
    ) -> None:
        self._query = query
        self._full_feature_names = full_feature_names
        self._on_demand = on_demand_feature_views or []
        self._metadata = metadata

    @property
    def full_feature_names(self) -> bool:
        return self._full_feature_names

    @property
    def on_demand_feature_views(self) -> list[OnDemandFeatureView]:
        return []  # run by _to_arrow_internal: none left for RetrievalJob.to_arrow to run again

    @property
    def metadata(self) -> RetrievalMetadata | None:
        return self._metadata

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        table = self._query()
        for view in self._on_demand:
            computed = view.transform_arrow(view_inputs(view, table), self.full_feature_names)
            for column in self.requested_outputs(view):
                table = table.append_column(column, computed[column])
        return table

    def _to_df_internal(self, timeout: int | None = None) -> pd.DataFrame:
        return self._to_arrow_internal(timeout).to_pandas()

    def requested_outputs(self, view: OnDemandFeatureView) -> list[str]:
        """The view's columns that were asked for (all of them when the job does not say)."""
        name = view.projection.name_to_use()
        refs = [ref.split(":", 1) for ref in (self._metadata.features if self._metadata else [])]
        features = [feature for view_name, feature in refs if view_name in (name, view.name)]
        features = features or [f.name for f in view.features]
        return [f"{name}__{feature}" if self.full_feature_names else feature for feature in features]


def view_inputs(view: OnDemandFeatureView, table: pa.Table) -> pa.Table:
    """The columns of `table` an on-demand view reads: its request data, its sources' features (by full
    or short name). Timestamps at DuckDB's microseconds: a python-mode view then gets `datetime`s, not
    pandas `Timestamp`s (about 1 us per value less to build)."""
    names = set(view.get_request_data_schema())
    for projection in view.source_feature_view_projections.values():
        for feature in projection.features:
            names |= {
                feature.name,
                f"{projection.name}__{feature.name}",
                f"{projection.name_to_use()}__{feature.name}",
            }
    inputs = table.select([column for column in table.column_names if column in names])
    for i, field in enumerate(inputs.schema):
        if pa.types.is_timestamp(field.type) and field.type.unit == "ns":
            micros = pc.cast(inputs[i], pa.timestamp("us", tz=field.type.tz), safe=False)
            inputs = inputs.set_column(i, field.name, micros)
    return inputs


class ViewJoin:
    """What one feature view contributes to the point-in-time statement."""

    def __init__(self, view: FeatureView, features: list[str], full_feature_names: bool, alias: str):
        source = view.batch_source
        if source is None:
            raise ValueError(f"feature view {view.name} has no batch source to read")
        reverse = {column: name for name, column in (source.field_mapping or {}).items()}
        self.source, self.alias = source, alias
        # (source column, entity row column) per join key
        self.keys = [
            (reverse.get(c.name, c.name), view.projection.join_key_map.get(c.name, c.name))
            for c in view.entity_columns
        ]
        self.features = [
            (
                reverse.get(feature, feature),
                f"{view.projection.name_to_use()}__{feature}" if full_feature_names else feature,
            )
            for feature in features
        ]
        self.timestamp = source.timestamp_field
        self.created = source.created_timestamp_column or None
        self.ttl = view.ttl if view.ttl and view.ttl > timedelta(0) else None

    def subquery(self, config: RepoConfig, events_from: datetime, events_to: datetime) -> str:
        """The view's rows that can give some event a value (not newer than the newest event, not older
        than the oldest event's ttl allows), keys and features only; among rows sharing keys and
        timestamp, the one created last."""
        columns = [
            *(f"{quoted(column)} as k{i}" for i, (column, _) in enumerate(self.keys)),
            f"{quoted(self.timestamp)}::timestamptz as ts",
            *(f"{quoted(column)} as f{i}" for i, (column, _) in enumerate(self.features)),
        ]
        sql = (
            f"select {', '.join(columns)} from {source_relation(config, self.source)} "
            f"where {quoted(self.timestamp)}::timestamptz <= {timestamp_literal(events_to)}"
        )
        if self.ttl is not None:
            sql += (
                f" and {quoted(self.timestamp)}::timestamptz >= {timestamp_literal(events_from - self.ttl)}"
            )
        if self.created:
            keys = ", ".join(quoted(column) for column, _ in self.keys) or "1"
            sql += (
                f" qualify row_number() over (partition by {keys}, {quoted(self.timestamp)} "
                f"order by {quoted(self.created)} desc nulls last) = 1"
            )
        return sql

    def join(self, config: RepoConfig, events_from: datetime, events_to: datetime) -> str:
        on = [f"{self.alias}.k{i} = e.{quoted(column)}" for i, (_, column) in enumerate(self.keys)]
        on.append(f"e.{TIME} >= {self.alias}.ts")
        rows = self.subquery(config, events_from, events_to)
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


def entity_table(entity_df: pd.DataFrame | pa.Table) -> pa.Table:
    if isinstance(entity_df, pd.DataFrame):
        return pa.Table.from_pandas(entity_df, preserve_index=False)
    if isinstance(entity_df, pa.Table):
        return entity_df
    raise TypeError(
        f"{STORE_TYPE} takes the entity rows as a pandas DataFrame or an arrow table, "
        f"not {type(entity_df).__name__}"
    )


def spine(entities: pa.Table, keys: list[str]) -> pa.Table:
    """The entity rows' join keys, time (naive values are UTC) and position: all the join needs."""
    missing = [c for c in [*keys, EVENT_TIMESTAMP] if c not in entities.column_names]
    if missing:
        raise ValueError(f"the entity rows lack the column(s) {missing}")
    time = entities[EVENT_TIMESTAMP]
    if not pa.types.is_timestamp(time.type):
        time = pa.chunked_array([pa.array(pd.to_datetime(time.to_pandas(), utc=True))])
    # DuckDB's TIMESTAMPTZ: microseconds (arrow keeps UTC values, so naive ones are read as UTC)
    time = pc.cast(time, pa.timestamp("us", tz="UTC"), safe=False)
    return pa.table(
        {
            **{k: entities[k] for k in keys},
            TIME: time,
            ROW: pa.array(range(entities.num_rows), pa.int64()),
        }
    )


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

    return DuckDBRetrievalJob(query, full_feature_names=False)


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
        if entity_df is None or isinstance(entity_df, str):
            raise NotImplementedError(f"{STORE_TYPE} needs the entity rows as a DataFrame")
        on_demand = OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry)
        requested, _ = _get_requested_feature_views_to_features_dict(feature_refs, feature_views, on_demand)
        joins = [
            ViewJoin(view, features, full_feature_names, alias=f"v{i}")
            for i, (view, features) in enumerate(requested.items())
        ]
        entities = entity_table(entity_df)
        keys = list(dict.fromkeys(column for j in joins for _, column in j.keys))
        events = spine(entities, keys)
        bounds = pc.min_max(events[TIME])
        first, last = (bounds[side].as_py() for side in ("min", "max"))

        def query() -> pa.Table:
            now = datetime.now(UTC)
            selections = [f"e.{ROW}", *(s for j in joins for s in j.selections())]
            sql = (
                f"select {', '.join(selections)} from events as e "
                f"{' '.join(j.join(config, first or now, last or now) for j in joins)} order by e.{ROW}"
            )
            with connect(config) as con:
                con.register("events", events)
                features: pa.Table = con.sql(sql).to_arrow_table()
            result = entities
            for name in features.column_names[1:]:
                result = result.append_column(name, features[name])
            return result

        return DuckDBRetrievalJob(
            query,
            full_feature_names,
            on_demand_feature_views=on_demand,
            metadata=RetrievalMetadata(
                features=feature_refs,
                keys=[c for c in entities.column_names if c != EVENT_TIMESTAMP],
                min_event_timestamp=first,
                max_event_timestamp=last,
            ),
        )

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
