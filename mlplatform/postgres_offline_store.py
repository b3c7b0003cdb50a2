"""Feast's Postgres offline store, plus the one thing the prod profile needs that 0.67 lacks: pushes.

Named in the prod profile's feature store configuration by its import path:

    offline_store:
      type: mlplatform.postgres_offline_store.PostgresOfflineStore
      host: ...            # PostgreSQLOfflineStoreConfig's settings, unchanged

Everything Feast's `PostgreSQLOfflineStore` does (point-in-time joins, materialization pulls, saved
datasets) is inherited as it is. Added: `offline_write_batch`, so `store.push(...,
to=PushMode.ONLINE_AND_OFFLINE)` (the velocity pusher) and `PushMode.OFFLINE` (the backfill) store the rows
in the table the view's batch source reads (a `PostgreSQLSource(table="schema.name")`, see
`postgres_source` in feature_repo/features.py), and `create_history`, which creates that table before
the first push: Feast reads the source's columns before it writes a batch, and retrieval needs a table to
read. The table's primary key is the view's join keys and timestamp (`pushed_history.history_key`); a
batch is upserted on it, so a redelivered batch or a backfill run again leaves one row per key, the last
written, as the DuckDB store of the local profile does with its content-named files.

This module imports Feast, psycopg and pyarrow only (no Dagster): `feast` commands and `feast serve`
import it through the configuration.
"""

from collections.abc import Callable
from typing import Any, Literal

import pyarrow as pa
from feast.feature_view import FeatureView
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import (
    PostgreSQLOfflineStore,
    PostgreSQLOfflineStoreConfig,
)
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource
from feast.infra.utils.postgres.connection_utils import _get_conn
from feast.repo_config import RepoConfig
from feast.type_map import arrow_to_pg_type
from psycopg import Cursor, sql

from mlplatform.pushed_history import history_key, history_rows, history_schema


class PostgresOfflineStoreConfig(PostgreSQLOfflineStoreConfig):
    """Feast's Postgres offline store settings; only the type names this class."""

    # narrows Feast's Literal["postgres"] to this class's name: Feast finds the store by it
    type: Literal["mlplatform.postgres_offline_store.PostgresOfflineStore"] = (
        "mlplatform.postgres_offline_store.PostgresOfflineStore"  # type: ignore[assignment]
    )


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


class PostgresOfflineStore(PostgreSQLOfflineStore):
    """Feast's `PostgreSQLOfflineStore` that also takes pushed rows (see the module's docstring)."""

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
