"""The offline history of a pushed feature view, as both of the platform's offline stores keep it.

Feast hands `offline_write_batch` whatever was pushed. A batch can come twice (the pusher's messages
redelivered after a crash, a backfill run again), so each store makes a write idempotent on the same key:
the view's join keys and its source's timestamp, one row per key, the last written. The DuckDB store names
a batch's file by its content, the Postgres store upserts on that key as its primary key; both first
reduce the batch with `history_rows`, so the two profiles store the same rows for the same pushes.

Imports Feast and pyarrow only: the offline store modules import it, and they are loaded by the `feast`
CLI and `feast serve` through the configuration (no Dagster).
"""

from typing import TYPE_CHECKING, Protocol

import pyarrow as pa
import pyarrow.compute as pc
from feast.feature_view import FeatureView
from feast.repo_config import RepoConfig
from feast.types import from_feast_to_pyarrow_type

if TYPE_CHECKING:
    from feast import FeatureStore
    from feast.data_source import DataSource

POSITION = "__history_row"  # a batch row's position while it is reduced to one row per key


class HistoryStore(Protocol):
    """An offline store that takes pushes: it can make a view's history readable before the first one
    (Feast reads the batch source's columns before it writes, and retrieval needs something to read)."""

    @staticmethod
    def create_history(config: RepoConfig, view: FeatureView) -> object: ...


def history_source(view: FeatureView) -> "DataSource":
    """Where a pushed view keeps its history: its batch source."""
    if view.batch_source is None:
        raise ValueError(f"feature view {view.name} has no batch source to keep its history in")
    return view.batch_source


def history_schema(view: FeatureView) -> pa.Schema:
    """The columns of a pushed view's history: join keys, the source's timestamp (microseconds, UTC, as
    DuckDB and Postgres keep them), then the features, typed as the view declares them."""
    source = history_source(view)
    keys = [pa.field(c.name, from_feast_to_pyarrow_type(c.dtype)) for c in view.entity_columns]
    features = [pa.field(f.name, from_feast_to_pyarrow_type(f.dtype)) for f in view.features]
    return pa.schema([*keys, pa.field(source.timestamp_field, pa.timestamp("us", tz="UTC")), *features])


def history_key(view: FeatureView) -> list[str]:
    """What identifies a row of the history: the join keys and the timestamp. Two rows of a key are two
    answers to the same point-in-time question; the history keeps one."""
    return [*(c.name for c in view.entity_columns), history_source(view).timestamp_field]


def history_rows(view: FeatureView, table: pa.Table) -> pa.Table:
    """A pushed batch as the history stores it: the schema's columns in its order and types, one row per
    key, the last one given (a later row of an instant is the value as of that instant; see
    `mlplatform.velocity.latest_per_instant`), in the order given."""
    schema = history_schema(view)
    rows = table.select(schema.names).cast(schema)
    numbered = rows.append_column(POSITION, pa.array(range(rows.num_rows), pa.int64()))
    last = numbered.group_by(history_key(view), use_threads=False).aggregate([(POSITION, "max")])
    kept = last[f"{POSITION}_max"]
    return rows.take(pc.take(kept, pc.array_sort_indices(kept)))


def history_store(store: "FeatureStore") -> HistoryStore | None:
    """The store's offline store if it takes pushes (the platform's two do; Feast's own Postgres store
    has no `offline_write_batch` in 0.67), else None."""
    from feast.infra.offline_stores.offline_utils import get_offline_store_from_config

    offline = get_offline_store_from_config(store.config.offline_store)
    return offline if callable(getattr(offline, "create_history", None)) else None  # type: ignore[return-value]


def prepare_history(store: "FeatureStore", view_name: str) -> None:
    """The view's offline history readable before the first push, or an error saying why pushes cannot
    be stored offline (better than a pusher failing on every batch, or pushing online only and leaving
    training without the history)."""
    offline = history_store(store)
    if offline is None:
        raise NotImplementedError(
            f"the offline store {type(store.config.offline_store).__name__} does not take pushed rows: "
            "pushed history needs the DuckDB or the Postgres offline store of mlplatform "
            "(see README, Velocity features)"
        )
    offline.create_history(store.config, store.get_feature_view(view_name))
