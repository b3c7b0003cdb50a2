"""Point-in-time retrieval of a feature service for labelled or scored events."""

import pandas as pd
from feast import FeatureStore


def historical_features(store: FeatureStore, events: pd.DataFrame, service: str, key: str) -> pd.DataFrame:
    """`events` plus every feature of `service` as of each event's `event_timestamp` (full feature names).

    One Feast retrieval per feature view, left-joined on `key`: Feast's file offline store drops an
    event entirely when any one view has no row before it (a merchant's first day), which would also
    lose the features the other views do have.
    """
    result = events
    for projection in store.get_feature_service(service).feature_view_projections:
        refs = [f"{projection.name_to_use()}:{feature.name}" for feature in projection.features]
        joined = store.get_historical_features(
            entity_df=events, features=refs, full_feature_names=True
        ).to_df()
        columns = [c for c in joined.columns if c.startswith(f"{projection.name_to_use()}__")]
        result = result.merge(joined[[key, *columns]], on=key, how="left")
    return result
