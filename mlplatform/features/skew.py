"""Pure comparisons of online and offline feature values (no Dagster, no Feast): the feature-store check
compares the online store with the newest offline rows, monitoring compares what the API was served
with an offline recomputation."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


TOLERANCE = 1e-9
MISMATCH_DTYPES = {
    "feature": "string",
    "compared": "int64",
    "mismatches": "int64",
    "mismatch_rate": "float64",
    "max_abs_difference": "float64",
}


def latest_rows(offline: pd.DataFrame, key: str, timestamp: str = "feature_ts") -> pd.DataFrame:
    """The newest row per entity: what the online store should hold after materialization."""
    return offline.sort_values(timestamp).drop_duplicates(key, keep="last").set_index(key).sort_index()


def differs(expected: pd.Series, got: pd.Series) -> pd.Series:
    """Elementwise, on aligned series: True where the values differ. NULL equals NULL; numbers are equal
    within a relative and absolute 1e-9 (float round trips through a store); anything else compares as is."""
    import numpy as np
    import pandas as pd

    expected_missing, got_missing = expected.isna().to_numpy(), got.isna().to_numpy()
    both = ~expected_missing & ~got_missing
    expected_numbers = pd.to_numeric(expected, errors="coerce")
    got_numbers = pd.to_numeric(got, errors="coerce")
    numeric = both & expected_numbers.notna().to_numpy() & got_numbers.notna().to_numpy()
    equal = np.zeros(len(expected), dtype=bool)
    equal[numeric] = np.isclose(
        expected_numbers.to_numpy(dtype=float)[numeric],
        got_numbers.to_numpy(dtype=float)[numeric],
        rtol=TOLERANCE,
        atol=TOLERANCE,
    )
    other = both & ~numeric
    equal[other] = expected.to_numpy()[other] == got.to_numpy()[other]
    return pd.Series((expected_missing != got_missing) | (both & ~equal), index=expected.index)


def skew(offline: pd.DataFrame, online: pd.DataFrame, key: str, fields: list[str]) -> list[dict]:
    """Every (entity, feature) whose online value differs from the offline one (`offline` is indexed by
    `key`), entity by entity; an entity missing online has None for every value."""
    import pandas as pd

    online = online.set_index(key)
    aligned = online.reindex(offline.index)
    present = offline.index.isin(online.index)
    bad = pd.DataFrame({field: differs(offline[field], aligned[field]) for field in fields})
    return [
        {
            key: entity,
            "feature": field,
            "offline": offline.at[entity, field],
            "online": aligned.at[entity, field] if present[position] else None,
        }
        for position, entity in enumerate(offline.index)
        for field in fields
        if bad[field].iloc[position]
    ]


def mismatch_rates(served: pd.DataFrame, recomputed: pd.DataFrame, fields: list[str]) -> pd.DataFrame:
    """Per feature, over aligned rows: how often the served value differs from the recomputed one, and by
    how much at most (numbers only)."""
    import pandas as pd

    rows = []
    for field in fields:
        bad = differs(recomputed[field], served[field])
        gap = (
            pd.to_numeric(served[field], errors="coerce") - pd.to_numeric(recomputed[field], errors="coerce")
        ).abs()
        rows.append(
            {
                "feature": field,
                "compared": len(bad),
                "mismatches": int(bad.sum()),
                "mismatch_rate": float(bad.mean()) if len(bad) else 0.0,
                "max_abs_difference": float(gap[bad].max()) if bad.any() and gap[bad].notna().any() else 0.0,
            }
        )
    return (
        pd.DataFrame(rows, columns=list(MISMATCH_DTYPES))
        .astype(MISMATCH_DTYPES)
        .sort_values(["mismatch_rate", "feature"], ascending=[False, True], ignore_index=True)
    )
