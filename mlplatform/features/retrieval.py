"""Point-in-time retrieval of a feature service for labelled or scored events."""

from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa

if TYPE_CHECKING:  # feast takes seconds to import: paid by the steps that retrieve features
    from feast import FeatureStore

EVENT_TIME = "event_timestamp"
# Feast's file store (no longer the local profile's) joins each event with every row of its entity before
# filtering by time, so memory grows with events x days of history (16.5 GB for 1M events over 42 days).
CHUNK_EVENTS = 100_000
# Feast's Postgres store: its point-in-time SQL estimates one row for its CTEs, and past a few thousand
# events Postgres switches to a nested loop that grows quadratically (measured: 4,000 events 1.1 s,
# 8,000 events 13.7 s): small chunks keep every query on the fast plan.
POSTGRES_CHUNK_EVENTS = 3_000


def chunk_events(store: "FeatureStore") -> int:
    """How many distinct (keys, time) events to ask the store's offline store for at once."""
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import (
        PostgreSQLOfflineStoreConfig,
    )

    if isinstance(store.config.offline_store, PostgreSQLOfflineStoreConfig):
        return POSTGRES_CHUNK_EVENTS
    return CHUNK_EVENTS


def keeps_every_event(store: "FeatureStore") -> bool:
    """Whether the store's offline store returns each entity row once, in order, whatever its features,
    for any number of events (the DuckDB offline store does; Feast's file store does not, and Postgres
    needs small chunks)."""
    from mlplatform.duckdb_offline_store import DuckDBOfflineStoreConfig

    return isinstance(store.config.offline_store, DuckDBOfflineStoreConfig)


def historical_features(store: "FeatureStore", events: pd.DataFrame, service: str) -> pd.DataFrame:
    """`events` plus every feature of `service` as of each event's `event_timestamp` (full feature names).

    On the DuckDB offline store (local profile) this is one `get_historical_features` call for the whole
    service: one ASOF join per view for all events, which keeps every event once, in order; then each
    on-demand view's own transformation runs on its inputs. Other offline stores go through `per_view`:
    asking Feast's file store for all events at once loses events (it drops an event when any one view
    has no earlier row, a merchant's first day, and keeps one event per (join keys, time), so two
    transactions of one customer in the same second would share request-time features), and Postgres
    needs small chunks to stay on a fast plan. `per_view` asks for each view's distinct (join keys, time)
    pairs in chunks (`chunk_events`), merges them back on exactly those keys, then runs each on-demand
    view per event.
    """
    events = events.assign(**{EVENT_TIME: pd.to_datetime(events[EVENT_TIME], utc=True)})
    if keeps_every_event(store):
        features = store.get_feature_service(service)
        result = store.get_historical_features(
            entity_df=events, features=features, full_feature_names=True
        ).to_df()
        # the events' own columns as given (Feast makes every datetime column tz-aware on the way in)
        added = result[[c for c in result.columns if c not in events.columns]]
        return pd.concat([events.reset_index(drop=True), added], axis=1, copy=False)
    return per_view(store, events, service)


def per_view(store: "FeatureStore", events: pd.DataFrame, service: str) -> pd.DataFrame:
    """`historical_features` on an offline store that may drop or merge events (see there)."""
    result = events
    chunk = chunk_events(store)
    on_demand = []
    for projection in store.get_feature_service(service).feature_view_projections:
        if projection.name in {v.name for v in store.list_on_demand_feature_views()}:
            on_demand.append(store.get_on_demand_feature_view(projection.name))
            continue
        view = store.get_feature_view(projection.name)
        keys = [*view.join_keys, EVENT_TIME]
        refs = [f"{projection.name_to_use()}:{feature.name}" for feature in projection.features]
        distinct = result[keys].drop_duplicates()
        joined = pd.concat(
            store.get_historical_features(
                entity_df=distinct.iloc[start : start + chunk], features=refs, full_feature_names=True
            ).to_df()
            for start in range(0, max(len(distinct), 1), chunk)
        )
        joined[EVENT_TIME] = pd.to_datetime(joined[EVENT_TIME], utc=True).astype(result[EVENT_TIME].dtype)
        columns = [c for c in joined.columns if c.startswith(f"{projection.name_to_use()}__")]
        result = result.merge(joined[[*keys, *columns]], on=keys, how="left")
    for view in on_demand:
        computed = view.transform_arrow(
            pa.Table.from_pandas(result, preserve_index=False), full_feature_names=True
        )
        for column in (f"{view.name}__{feature.name}" for feature in view.features):
            result[column] = computed[column].to_pandas()
    return result


def features_as_of_events(store: "FeatureStore", rows: pd.DataFrame, service: str) -> pd.DataFrame:
    """`rows` (warehouse rows, `event_ts` naive UTC) with `service`'s features as of each `event_ts`.

    What training sets and batch predictions both use, so their features are computed the same way."""
    events = rows.assign(event_ts=rows["event_ts"].dt.tz_localize("UTC"))
    events[EVENT_TIME] = events["event_ts"]  # event_ts is also the on-demand view's request input
    features = historical_features(store, events, service)
    del features[EVENT_TIME]
    features["event_ts"] = features["event_ts"].dt.tz_convert("UTC").dt.tz_localize(None)
    return features
