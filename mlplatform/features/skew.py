"""Pure comparisons behind the feature-store checks (no Dagster, no Feast)."""

import math

import pandas as pd


def latest_rows(offline: pd.DataFrame, key: str, timestamp: str = "feature_ts") -> pd.DataFrame:
    """The newest row per entity: what the online store should hold after materialization."""
    return offline.sort_values(timestamp).drop_duplicates(key, keep="last").set_index(key).sort_index()


def skew(offline: pd.DataFrame, online: pd.DataFrame, key: str, fields: list[str]) -> list[dict]:
    """Every (entity, feature) whose online value differs from the offline one; NULL equals NULL."""
    online = online.set_index(key)
    mismatches = []
    for entity, expected in offline.iterrows():
        for field in fields:
            want, got = expected[field], online.at[entity, field] if entity in online.index else None
            if not _same(want, got):
                mismatches.append({key: entity, "feature": field, "offline": want, "online": got})
    return mismatches


def _same(a, b) -> bool:
    a_missing, b_missing = _missing(a), _missing(b)
    if a_missing or b_missing:
        return a_missing and b_missing
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)


def _missing(value) -> bool:
    return value is None or (not isinstance(value, str) and pd.isna(value))
