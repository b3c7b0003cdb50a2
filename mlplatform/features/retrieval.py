"""Point-in-time retrieval of a feature service for labelled or scored events."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # feast takes seconds to import: paid by the steps that retrieve features
    import pandas as pd
    from feast import FeatureService, FeatureStore

EVENT_TIME = "event_timestamp"


def historical_features(store: FeatureStore, events: pd.DataFrame, service: str) -> pd.DataFrame:
    """`events` plus every feature of `service` as of each event's `event_timestamp` (full feature names).

    One `get_historical_features` call for the whole service: the platform's offline stores (DuckDB
    locally, Postgres in prod) keep every event once, in order, whatever its features, for any number of
    events; then each on-demand view's own transformation runs on its inputs. Feast's file store would
    drop an event when one view has no earlier row and merge two events of one customer in the same
    second, so it is refused."""
    import pandas as pd

    from mlplatform.resources.feature_store import DUCKDB_OFFLINE_STORE, POSTGRES_OFFLINE_STORE
    from mlplatform.resources.warehouse import compact_frame

    if store.config.offline_store.type not in (DUCKDB_OFFLINE_STORE, POSTGRES_OFFLINE_STORE):
        raise ValueError(
            f"offline store {store.config.offline_store.type!r}: training sets and batch scoring need one "
            f"that keeps every event ({DUCKDB_OFFLINE_STORE} or {POSTGRES_OFFLINE_STORE})"
        )
    features = store.get_feature_service(service)
    # Feast is handed only what it reads of each event, not a copy of every column of a training set
    asked = {c: events[c] for c in entity_columns(store, features) if c in events}
    asked[EVENT_TIME] = pd.to_datetime(events[EVENT_TIME], utc=True)
    result = store.get_historical_features(
        entity_df=pd.DataFrame(asked).reset_index(drop=True), features=features, full_feature_names=True
    ).to_arrow()
    # the events' own columns as given (Feast makes every datetime column tz-aware on the way in)
    added = result.select([c for c in result.column_names if c not in events.columns])
    del result  # the added columns' buffers are freed as they are converted
    return pd.concat([events.reset_index(drop=True), compact_frame(added)], axis=1, copy=False)


def entity_columns(store: FeatureStore, service: FeatureService) -> set[str]:
    """The columns of an event Feast reads to answer `service`: each view's join keys (as projected, also
    of the views an on-demand view reads) and each on-demand view's request data."""
    from feast.on_demand_feature_view import OnDemandFeatureView

    views = {view.name: view for view in store.list_all_feature_views(allow_cache=True)}
    projections = list(service.feature_view_projections)
    columns = set()
    while projections:
        projection = projections.pop()
        view = views[projection.name]
        if isinstance(view, OnDemandFeatureView):
            columns |= set(view.get_request_data_schema())
            projections += view.source_feature_view_projections.values()
        else:
            keys = projection.join_key_map or {}
            columns |= {keys.get(c.name, c.name) for c in view.entity_columns}
    return columns


def features_as_of_events(store: FeatureStore, rows: pd.DataFrame, service: str) -> pd.DataFrame:
    """`rows` (warehouse rows, `event_ts` naive UTC) with `service`'s features as of each `event_ts`.

    What training sets and batch predictions both use, so their features are computed the same way."""
    events = rows.copy(deep=False)  # new columns, the others shared: a training set is gigabytes
    events["event_ts"] = rows["event_ts"].dt.tz_localize("UTC")
    events[EVENT_TIME] = events["event_ts"]  # event_ts is also the on-demand view's request input
    features = historical_features(store, events, service)
    del features[EVENT_TIME]
    features["event_ts"] = features["event_ts"].dt.tz_convert("UTC").dt.tz_localize(None)
    return features
