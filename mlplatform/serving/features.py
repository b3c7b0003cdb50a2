"""A feature service's features for transactions at request time, at the cost of the reads themselves.

`FeatureStore.get_online_features` spends most of its time in per-call bookkeeping (resolving the
service, building protobuf responses; with the on-demand view, ~5 ms a call here). This does the same two
things directly: one `online_read` per feature view through Feast's own provider and online store (SQLite
or Redis, whatever the profile configured), values decoded by Feast's type map, then the on-demand view
computed by the view's own function (python mode: the one function that training, batch retrieval and
`feast serve` run too, taken from the registry; called directly, without Feast's per-call type checks).
Parity with `get_online_features` is tested value by value.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from mlplatform.serving.errors import PredictionError


@dataclass(frozen=True)
class StoredView:
    view: object  # feast.FeatureView
    prefix: str  # the projection's name in full feature names
    join_key: str
    features: list[str]


@dataclass(frozen=True)
class RequestView:
    udf: Callable[[dict], dict]  # the python-mode on-demand view's own function, from the registry
    prefix: str
    inputs: dict[str, str]  # the udf's input name -> the row's key (request field or full feature name)
    features: list[str]


class OnlineFeatures:
    """Reads `service_name`'s features for transactions; built once per feature service."""

    def __init__(self, store, service_name: str) -> None:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value
        from feast.type_map import feast_value_type_to_python_type

        self._entity_key, self._value, self._to_python = EntityKey, Value, feast_value_type_to_python_type
        self.service_name = service_name
        self.config = store.config
        self.provider = store._get_provider()
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

    def lookup(self, transactions: list, times: list[datetime]) -> list[dict]:
        """One dict of model inputs per transaction (full feature names, plus `amount`, `channel`,
        `country`, `event_ts`). Raises `PredictionError` 422 naming every unknown customer or merchant,
        503 when the online store cannot be read."""
        rows = [
            {"amount": t.amount, "channel": t.channel, "country": t.country, "event_ts": at}
            for t, at in zip(transactions, times, strict=True)
        ]
        unknown: list[dict] = []
        for stored in self.stored:
            keys = [getattr(t, stored.join_key) for t in transactions]
            found = self._read(stored, list(dict.fromkeys(keys)))
            for i, (row, key) in enumerate(zip(rows, keys, strict=True)):
                values = found[key]
                if values is None:
                    unknown.append(unknown_entity(stored.join_key, key, i, len(rows)))
                else:
                    row.update(values)
        if unknown:
            raise PredictionError(422, "unknown_entity", unknown)
        for requested in self.requested:
            columns = {name: [row.get(key) for row in rows] for name, key in requested.inputs.items()}
            computed = requested.udf(columns)
            for name in requested.features:
                full = f"{requested.prefix}__{name}"
                for row, value in zip(rows, computed[name], strict=True):
                    row[full] = value
        return rows

    def _read(self, stored: StoredView, keys: list[str]) -> dict[str, dict | None]:
        entity_keys = [
            self._entity_key(join_keys=[stored.join_key], entity_values=[self._value(string_val=key)])
            for key in keys
        ]
        try:
            read = self.provider.online_read(self.config, stored.view, entity_keys, stored.features)
        except Exception as error:  # the reason goes to the server log, never to the client
            raise PredictionError(
                503,
                "online_store",
                [{"type": "online_store_unavailable", "msg": "the online feature store did not answer"}],
            ) from error
        to_python, prefix = self._to_python, stored.prefix
        return {
            key: None
            if values is None
            else {
                f"{prefix}__{name}": to_python(values[name]) if name in values else None
                for name in stored.features
            }
            for key, (_, values) in zip(keys, read, strict=True)
        }


def unknown_entity(join_key: str, key: str, index: int, count: int) -> dict:
    return {
        "type": f"unknown_{join_key.removesuffix('_id')}",
        "loc": ["body", *([] if count == 1 else ["transactions", index]), join_key],
        "msg": f"{join_key} {key!r} has no features in the online store (unknown or never seen)",
        "input": key,
    }
