"""Drift and delayed-label performance as plain functions: no Dagster, no warehouse."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


PSI_BINS = 10
EPSILON = 1e-4  # an empty bin on one side must not make PSI infinite
AT_THRESHOLD = ("precision_at_threshold", "recall_at_threshold")
LABELLED_FIGURES = ("roc_auc", *AT_THRESHOLD)  # the figures that wait for labels


def psi(reference: pd.Series, current: pd.Series) -> float:
    """Population stability index of `current` against `reference`: deciles of the reference for numbers,
    categories for strings. Rule of thumb: < 0.1 stable, 0.1-0.25 shifting, > 0.25 drifted."""
    import numpy as np
    import pandas as pd

    reference, current = reference.dropna(), current.dropna()
    if reference.empty or current.empty:
        return float("nan")
    if pd.api.types.is_numeric_dtype(reference):
        edges = np.unique(np.quantile(reference.astype(float), np.linspace(0, 1, PSI_BINS + 1)[1:-1]))

        def counts(values: pd.Series) -> np.ndarray:
            bins = np.searchsorted(edges, values.astype(float), side="right")
            return np.bincount(bins, minlength=len(edges) + 1)

    else:
        categories = sorted(set(reference) | set(current))

        def counts(values: pd.Series) -> np.ndarray:
            return values.value_counts().reindex(categories, fill_value=0).to_numpy()

    expected, actual = counts(reference), counts(current)
    expected = np.clip(expected / expected.sum(), EPSILON, None)
    actual = np.clip(actual / actual.sum(), EPSILON, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def drift_table(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Per column: PSI, and for numeric columns the two-sample Kolmogorov-Smirnov statistic and p-value."""
    import pandas as pd
    from scipy.stats import ks_2samp  # a second to import: only when drift is measured

    rows = []
    for column in columns:
        row = {"feature": column, "psi": psi(reference[column], current[column])}
        if pd.api.types.is_numeric_dtype(reference[column]):
            test = ks_2samp(reference[column].dropna().astype(float), current[column].dropna().astype(float))
            row |= {"ks_statistic": float(test.statistic), "ks_pvalue": float(test.pvalue)}
        rows.append(row)
    return pd.DataFrame(rows).sort_values("psi", ascending=False, ignore_index=True)


def labelled_performance(labels: np.ndarray, scores: np.ndarray, decisions: np.ndarray) -> dict[str, float]:
    """How the served decisions did once the truth is known; AUC needs both classes."""
    import numpy as np
    from sklearn import metrics  # seconds to import: only when performance is computed

    labels = np.asarray(labels).astype(int)
    if len(labels) == 0:
        nothing = float("nan")
        return {"labelled": 0, "frauds": 0, "roc_auc": nothing, **dict.fromkeys(AT_THRESHOLD, nothing)}
    both_classes = 0 < labels.sum() < len(labels)
    return {
        "labelled": len(labels),
        "frauds": int(labels.sum()),
        "roc_auc": float(metrics.roc_auc_score(labels, scores)) if both_classes else float("nan"),
        "precision_at_threshold": float(metrics.precision_score(labels, decisions, zero_division=0)),
        "recall_at_threshold": float(metrics.recall_score(labels, decisions, zero_division=0)),
    }


def serving_figures(log: pd.DataFrame) -> dict[str, float]:
    """What the prediction log says about a day of online traffic: volume, latency, flag rate, and how
    often a shadowed challenger would have decided like the served model."""
    served = log[~log["shadow"].astype(bool)] if len(log) else log
    if served.empty:
        return {"requests": 0}
    figures = {
        "requests": int(served["request_id"].nunique()),
        "predictions": len(served),
        "latency_p50_ms": float(served["latency_ms"].quantile(0.5)),
        "latency_p99_ms": float(served["latency_ms"].quantile(0.99)),
        "flag_rate": float((served["decision"] == "flag").mean()),
    }
    shadow = log[log["shadow"].astype(bool)]
    if not shadow.empty:
        keys = ["request_id", "customer_id", "merchant_id", "event_ts"]
        paired = served.merge(shadow, on=keys, suffixes=("", "_shadow"))
        figures["shadow_agreement"] = float((paired["decision"] == paired["decision_shadow"]).mean())
    return figures
