"""A feature service's features for transactions at request time, at the cost of the reads themselves.

`FeatureStore.get_online_features` spends most of its time in per-call bookkeeping (resolving the
service, building protobuf responses; with the on-demand view, ~5 ms a call here). This does the same two
things directly, for a whole batch of transactions at once, as columns (no per-row dicts, no DataFrame):

- the stored features of every feature view in ONE read of the online store, keys deduplicated: on SQLite
  one statement over the views' tables, on Redis one pipeline of HMGETs (`OnlineReader` below), keys and
  table names made by Feast's own helpers (`serialize_entity_key`, `compute_table_id`) and values decoded
  from Feast's `ValueProto`; any other online store goes through Feast's `online_read`, view by view;
- then the on-demand view, computed by the view's own function (python mode: the one function that
  training, batch retrieval and `feast serve` run too, taken from the registry; called once per batch
  with whole columns, without Feast's per-call type checks).

Parity with `get_online_features` is tested value by value (tests/serving/test_online_features.py).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mlplatform.serving.errors import PredictionError

# Value kinds whose protobuf field is already the Python value Feast's type map would return.
SCALAR_KINDS = frozenset(
    {"int64_val", "int32_val", "double_val", "float_val", "string_val", "bool_val", "bytes_val"}
)

SQLITE_MMAP_BYTES = 1 << 30  # address space only; pages are shared with the OS page cache
MAX_REMEMBERED_KEYS = 1_000_000  # serialized entity keys kept per join key (~100 bytes each)
MAX_REMEMBERED_VALUES = 1_000_000  # decoded feature values kept by their serialized bytes

Columns = dict[str, list]  # a batch of model inputs: one list per input name, one item per transaction


@dataclass(frozen=True)
class StoredView:
    view: Any  # feast.FeatureView (feast is imported lazily)
    prefix: str  # the projection's name in full feature names
    join_key: str
    features: list[str]


@dataclass(frozen=True)
class RequestView:
    udf: Callable[[dict], dict]  # the python-mode on-demand view's own function, from the registry
    prefix: str
    inputs: dict[str, str]  # the udf's input name -> the column it reads (request field or full name)
    features: list[str]


def python_value(value) -> object:
    """A Feast `ValueProto` as the Python value `feast.type_map.feast_value_type_to_python_type` gives
    (scalars read straight off the message; anything else through Feast's type map)."""
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        return None
    if kind in SCALAR_KINDS:
        return getattr(value, kind)
    from feast.type_map import feast_value_type_to_python_type

    return feast_value_type_to_python_type(value)


class OnlineReader:
    """Reads several feature views' rows for their entity keys in one round trip when the online store
    allows it. `read` answers, per view, one list of feature values (in the view's feature order) per
    key, or None for a key the store has no row for."""

    def __init__(self, store, views: list[StoredView]) -> None:
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        self.config = store.config
        self.provider = store._get_provider()
        self.online_store: Any = getattr(self.provider, "online_store", None)
        self.views = views
        self._entity_key, self._value = EntityKey, Value
        version = self.config.entity_key_serialization_version
        self._serialize = lambda key: serialize_entity_key(key, entity_key_serialization_version=version)
        self._serialized: dict[str, dict[str, bytes]] = {}
        self._decoded: dict[bytes, object] = {}
        self._mapped = None
        self._rows: list[dict[str, list]] = [{} for _ in views]  # per view: key -> decoded row
        self._rows_state: tuple | None = None
        self.read = self._choose()

    def entity_keys(self, view: StoredView, keys: Sequence[str]) -> list:
        return [
            self._entity_key(join_keys=[view.join_key], entity_values=[self._value(string_val=key)])
            for key in keys
        ]

    def _choose(self) -> Callable[[Sequence[Sequence[str]]], list[list[list | None]]]:
        from feast.infra.online_stores.redis import RedisOnlineStore  # feast[redis] is a dependency
        from feast.infra.online_stores.sqlite import SqliteOnlineStore

        if isinstance(self.online_store, SqliteOnlineStore):
            return self._read_sqlite_remembered
        if isinstance(self.online_store, RedisOnlineStore) and hasattr(
            self.online_store, "_read_hash_fields"
        ):
            return self._read_redis
        return self._read_each_view

    def _read_sqlite_remembered(self, keys_per_view: Sequence[Sequence[str]]) -> list[list[list | None]]:
        """`_read_sqlite` for the keys not read since the database last changed; the others' rows as read
        then. A change is any commit by another connection (SQLite's `PRAGMA data_version`, checked before
        every read) or a write through Feast's own connection (its `total_changes`): the rows remembered
        are then dropped, so every answer is what a read of the store gives now. Keys without a row are
        not remembered."""
        connection = self._sqlite()
        (version,) = connection.execute("PRAGMA data_version").fetchone()
        state = (id(connection), version, connection.total_changes)
        remembered = self._rows  # this read's: another thread may replace (never change) the list
        if state != self._rows_state or sum(map(len, remembered)) > MAX_REMEMBERED_KEYS:
            remembered = self._rows = [{} for _ in self.views]
            self._rows_state = state
        missing = [
            [k for k in keys if k not in rows] for keys, rows in zip(keys_per_view, remembered, strict=True)
        ]
        fresh: list[dict[str, list | None]] = [{} for _ in self.views]
        if any(missing):
            for rows, got, keys, read in zip(
                remembered, fresh, missing, self._read_sqlite(missing), strict=True
            ):
                got.update(zip(keys, read, strict=True))
                rows.update((k, row) for k, row in zip(keys, read, strict=True) if row is not None)
        return [
            [got[k] if k in got else rows[k] for k in keys]
            for keys, rows, got in zip(keys_per_view, remembered, fresh, strict=True)
        ]

    def _read_sqlite(self, keys_per_view: Sequence[Sequence[str]]) -> list[list[list | None]]:
        """One SELECT over every view's table (Feast's table names and serialized keys). Every feature of
        an entity is read (filtering on the name too makes SQLite probe its primary key once per entity
        and name: slower); only the service's features are decoded."""
        from feast.infra.online_stores.helpers import compute_table_id

        versioned = self.config.registry.enable_online_feature_view_versioning
        parts, parameters, serialized = [], [], []
        for index, (view, keys) in enumerate(zip(self.views, keys_per_view, strict=True)):
            binary = self.serialized_keys(view, keys)
            serialized.append(binary)
            table = compute_table_id(self.config.project, view.view, versioned).replace('"', '""')
            parts.append(
                # bandit B608: Feast's own table names, the keys as parameters
                f'SELECT {index}, entity_key, feature_name, value FROM "{table}" '  # nosec B608
                f"WHERE entity_key IN ({','.join('?' * len(binary))})"
            )
            parameters += binary
        found: list[dict[bytes, dict[str, bytes]]] = [{} for _ in self.views]
        rows = self._sqlite().execute(" UNION ALL ".join(parts), parameters).fetchall()
        for index, entity_key, name, blob in rows:
            view_rows = found[index]
            if (entity := view_rows.get(entity_key)) is None:
                entity = view_rows[entity_key] = {}
            entity[name] = blob
        from_string, scalars, decoded = self._value.FromString, SCALAR_KINDS, self._decoded
        if len(decoded) > MAX_REMEMBERED_VALUES:
            decoded.clear()
        known = decoded.get

        def decode(blob: bytes) -> object:
            """python_value, inlined for the scalar kinds, and remembered (below: `known`, looked up
            without a call): counts, countries, categories repeat across entities (over half the values
            here), and a value's bytes decode to one value."""
            value = from_string(blob)
            kind = value.WhichOneof("val")
            result = decoded[blob] = getattr(value, kind) if kind in scalars else python_value(value)
            return result

        return [
            [
                None
                if (row := by_key.get(key)) is None
                else [
                    None
                    if (blob := row.get(n)) is None
                    else (value if (value := known(blob, decoded)) is not decoded else decode(blob))
                    for n in view.features
                ]
                for key in keys
            ]
            for view, by_key, keys in zip(self.views, found, serialized, strict=True)
        ]

    def _sqlite(self):
        """Feast's own connection to its SQLite file, memory-mapped for reading (about half the time of
        reading pages through SQLite's page cache; set once, a read-side setting of this connection)."""
        connection = self.online_store._get_conn(self.config)
        if connection is not self._mapped:
            connection.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
            self._mapped = connection
        return connection

    def serialized_keys(self, view: StoredView, keys: Sequence[str]) -> list[bytes]:
        """Feast's serialized entity keys, remembered (the same customers come back all day)."""
        cache = self._serialized.setdefault(view.join_key, {})
        if len(cache) > MAX_REMEMBERED_KEYS:
            cache.clear()
        missing = [key for key in keys if key not in cache]
        fresh = dict(zip(missing, map(self._serialize, self.entity_keys(view, missing)), strict=True))
        cache.update(fresh)
        # another thread may clear the cache meanwhile: what it no longer holds is serialized again
        return [
            fresh.get(key) or cache.get(key) or self._serialize(self.entity_keys(view, [key])[0])
            for key in keys
        ]

    def _read_redis(self, keys_per_view: Sequence[Sequence[str]]) -> list[list[list | None]]:
        """One pipeline of HMGETs for every view (the commands and decoding of Feast's Redis store)."""
        from feast.infra.online_stores.redis import _versioned_fv_name

        store, commands, layout = self.online_store, [], []
        for view, keys in zip(self.views, keys_per_view, strict=True):
            name = _versioned_fv_name(view.view, self.config)
            requested, fields = store._generate_hset_keys_for_features(
                view.view, list(view.features), fv_name_override=name
            )
            redis_keys = store._generate_redis_keys_for_entities(self.config, self.entity_keys(view, keys))
            commands += [(key, fields) for key in redis_keys]
            layout.append((view, name, requested, len(redis_keys)))
        replies = store._read_hash_fields(self.config, commands)
        answers, start = [], 0
        for view, name, requested, count in layout:
            chunk = replies[start : start + count]
            start += count
            decoded = store._convert_redis_values_to_protobuf(chunk, name, requested)
            answers.append(
                [
                    None  # no hash for this key: Feast answers empty values, we answer "unknown"
                    if all(v is None for v in reply)
                    else [python_value(values[n]) if n in values else None for n in view.features]
                    for reply, (_, values) in zip(chunk, decoded, strict=True)
                ]
            )
        return answers

    def _read_each_view(self, keys_per_view: Sequence[Sequence[str]]) -> list[list[list | None]]:
        """Any other online store: Feast's `online_read`, one call per view."""
        answers = []
        for view, keys in zip(self.views, keys_per_view, strict=True):
            read = self.provider.online_read(
                self.config, view.view, self.entity_keys(view, keys), view.features
            )
            answers.append(
                [
                    None
                    if values is None
                    else [python_value(values[n]) if n in values else None for n in view.features]
                    for _, values in read
                ]
            )
        return answers


class OnlineFeatures:
    """Reads `service_name`'s features for transactions; built once per feature service."""

    def __init__(self, store, service_name: str) -> None:
        self.service_name = service_name
        service = store.get_feature_service(service_name)
        on_demand = {view.name for view in store.list_on_demand_feature_views()}
        self.stored: list[StoredView] = []
        self.requested: list[RequestView] = []
        for projection in service.feature_view_projections:
            names = [feature.name for feature in projection.features]
            if projection.name in on_demand:
                view = store.get_on_demand_feature_view(projection.name)
                if view.mode != "python":
                    raise ValueError(f"on-demand view {view.name} must be in python mode to be served")
                inputs = {f.name: f.name for src in view.source_request_sources.values() for f in src.schema}
                inputs |= {
                    f.name: f"{source.name}__{f.name}"
                    for source in view.source_feature_view_projections.values()
                    for f in source.features
                }
                udf = view.feature_transformation.udf
                self.requested.append(RequestView(udf, projection.name_to_use(), inputs, names))
            else:
                view = store.get_feature_view(projection.name)
                (join_key,) = view.join_keys
                self.stored.append(StoredView(view, projection.name_to_use(), join_key, names))
        self.reader = OnlineReader(store, self.stored)

    def lookup(self, transactions: list, times: list[datetime]) -> Columns:
        """The model inputs of every transaction as columns (full feature names, plus `amount`, `channel`,
        `country`, `event_ts`). Raises `PredictionError` 422 naming every unknown customer or merchant,
        503 when the online store cannot be read."""
        columns: Columns = {
            "amount": [t.amount for t in transactions],
            "channel": [t.channel for t in transactions],
            "country": [t.country for t in transactions],
            "event_ts": list(times),
        }
        keys = [[getattr(t, stored.join_key) for t in transactions] for stored in self.stored]
        unique = [list(dict.fromkeys(k)) for k in keys]
        read = self._read(unique)
        unknown: list[dict] = []
        for stored, row_keys, distinct, found in zip(self.stored, keys, unique, read, strict=True):
            by_key = dict(zip(distinct, found, strict=True))
            rows = [by_key[key] for key in row_keys]
            if None in rows:
                unknown += [
                    unknown_entity(stored.join_key, key, i, len(row_keys))
                    for i, (key, row) in enumerate(zip(row_keys, rows, strict=True))
                    if row is None
                ]
                continue
            for j, name in enumerate(stored.features):
                columns[f"{stored.prefix}__{name}"] = [row[j] for row in rows]
        if unknown:
            raise PredictionError(422, "unknown_entity", unknown)
        for requested in self.requested:
            computed = requested.udf({name: columns[key] for name, key in requested.inputs.items()})
            for name in requested.features:
                columns[f"{requested.prefix}__{name}"] = list(computed[name])
        return columns

    def _read(self, unique: list[list[str]]) -> list[list[list | None]]:
        try:
            return self.reader.read(unique)
        except Exception as error:  # the reason goes to the server log, never to the client
            raise PredictionError(
                503,
                "online_store",
                [{"type": "online_store_unavailable", "msg": "the online feature store did not answer"}],
            ) from error

    @property
    def stored_names(self) -> list[str]:
        """The full names of the service's stored features (what `lookup_keys` answers)."""
        return [f"{stored.prefix}__{name}" for stored in self.stored for name in stored.features]

    def lookup_keys(self, keys: dict[str, list[str]]) -> tuple[Columns, list[bool]]:
        """The stored features of entities given by their keys (join key -> one value per row), as columns
        of full feature names, and whether each row's entities all have a row in the online store. An
        unknown entity is not an error here: its features are None (missing, as the trees take them).
        The service's on-demand views are not computed (they need request-time inputs); raises
        `PredictionError` 503 when the online store cannot be read."""
        stored_keys = [keys[stored.join_key] for stored in self.stored]
        unique = [list(dict.fromkeys(k)) for k in stored_keys]
        read = self._read(unique)
        count = len(next(iter(keys.values()), []))
        known = [True] * count
        columns: Columns = {}
        for stored, row_keys, distinct, found in zip(self.stored, stored_keys, unique, read, strict=True):
            by_key = dict(zip(distinct, found, strict=True))
            found_rows = [by_key[key] for key in row_keys]
            empty: list = [None] * len(stored.features)
            if None in found_rows:
                known = [k and row is not None for k, row in zip(known, found_rows, strict=True)]
            rows = [empty if row is None else row for row in found_rows]
            for j, name in enumerate(stored.features):
                columns[f"{stored.prefix}__{name}"] = [row[j] for row in rows]
        return columns, known


def unknown_entity(join_key: str, key: str, index: int, count: int) -> dict:
    return {
        "type": f"unknown_{join_key.removesuffix('_id')}",
        "loc": ["body", *([] if count == 1 else ["transactions", index]), join_key],
        "msg": f"{join_key} {key!r} has no features in the online store (unknown or never seen)",
        "input": key,
    }
