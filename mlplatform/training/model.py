"""The fraud model and its evaluation, as plain scikit-learn: no Dagster, no MLflow."""

from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mlplatform.training.spec import FRAUD_MODEL, ModelSpec

if TYPE_CHECKING:  # scikit-learn takes seconds to import: paid by the steps that train or score
    from sklearn.pipeline import Pipeline

LABEL = FRAUD_MODEL.label.column
CATEGORICAL = ["channel", "merchant_stats__category", "merchant_stats__risk_tier"]
SLICES = FRAUD_MODEL.slices
TARGET_FPR = FRAUD_MODEL.decision.target_fpr  # alert budget: the share of legitimate transactions flagged
MIN_SLICE_POSITIVES = 10


def numeric_features(columns) -> list[str]:
    return ["amount"] + [
        c for c in columns if "__" in c and c not in CATEGORICAL and c != "customer_stats__home_country"
    ]


def feature_columns(columns) -> list[str]:
    return CATEGORICAL + numeric_features(columns)


@dataclass(frozen=True)
class Hyperparameters:
    learning_rate: float
    max_iter: int
    max_leaf_nodes: int
    l2_regularization: float
    seed: int

    @classmethod
    def of(cls, spec: ModelSpec) -> "Hyperparameters":
        estimator = spec.estimator
        return cls(
            estimator.learning_rate,
            estimator.max_iter,
            estimator.max_leaf_nodes,
            estimator.l2_regularization,
            spec.seed,
        )


def build_pipeline(columns, params: Hyperparameters) -> "Pipeline":
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    encode = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1)
    prepare = ColumnTransformer(
        [("categorical", encode, CATEGORICAL), ("numeric", "passthrough", numeric_features(columns))]
    )
    classifier = HistGradientBoostingClassifier(
        learning_rate=params.learning_rate,
        max_iter=params.max_iter,
        max_leaf_nodes=params.max_leaf_nodes,
        l2_regularization=params.l2_regularization,
        categorical_features=list(range(len(CATEGORICAL))),
        random_state=params.seed,
    )
    return Pipeline([("prepare", prepare), ("classifier", classifier)])


@cache
def thread_limiter():
    """One threadpoolctl controller per process: building it reads /proc/self/maps (~4.6 ms), reusing it
    to limit threads costs ~0.09 ms (measured), which matters when one row is scored."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def fit(rows: pd.DataFrame, params: Hyperparameters, threads: int = 1) -> "Pipeline":
    """OpenMP threads spin-wait: on a shared 2-core machine 2 threads fit 7x slower than 1 (measured)."""
    pipeline = build_pipeline(rows.columns, params)
    with thread_limiter().limit(limits=threads):
        pipeline.fit(rows[feature_columns(rows.columns)], rows[LABEL].astype(int))
    return pipeline


def predict_scores(model: "Pipeline", rows: pd.DataFrame) -> np.ndarray:
    """Scores in the columns' fitted order, whatever order `rows` has (online features come unordered).

    Single-threaded: scoring one row with OpenMP threads took 60 ms instead of 10 ms here."""
    with thread_limiter().limit(limits=1):
        return model.predict_proba(rows[list(model.feature_names_in_)])[:, 1]


def time_split(rows: pd.DataFrame, holdout_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train on the past, validate on the most recent events: how the model will be used."""
    ordered = rows.sort_values(["event_ts", "transaction_id"], ignore_index=True)
    cut = int(len(ordered) * (1 - holdout_fraction))
    return ordered.iloc[:cut], ordered.iloc[cut:]


@dataclass
class Evaluation:
    metrics: dict[str, float]
    threshold: float
    confusion: list[list[int]]
    slices: dict[str, dict[str, float]] = field(default_factory=dict)  # "segment=mass" -> metrics

    @property
    def slice_gap(self) -> float:
        """Largest ROC AUC difference between qualifying slices of the same attribute (segments against
        segments, regions against regions); NaN when no attribute has two qualifying slices."""
        gaps = []
        for column in dict.fromkeys(name.split("=", 1)[0] for name in self.slices):
            aucs = [
                s["roc_auc"]
                for name, s in self.slices.items()
                if name.startswith(f"{column}=") and not np.isnan(s["roc_auc"])
            ]
            if len(aucs) > 1:
                gaps.append(max(aucs) - min(aucs))
        return float(max(gaps)) if gaps else float("nan")


def evaluate(
    labels: np.ndarray,
    scores: np.ndarray,
    slice_values: pd.DataFrame | None = None,
    target_fpr: float = TARGET_FPR,
) -> Evaluation:
    """Holdout metrics, the threshold flagging the most fraud within `target_fpr` (the spec's decision
    rule), and ROC AUC per value of each column of `slice_values` (the spec's slices)."""
    from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score, roc_curve

    labels = np.asarray(labels).astype(int)
    fpr, tpr, thresholds = roc_curve(labels, scores)
    within = fpr <= target_fpr
    best = int(np.argmax(np.where(within, tpr, -1)))
    threshold = float(min(thresholds[best], 1.0))
    flagged = scores >= threshold
    metrics = {
        "roc_auc": float(roc_auc_score(labels, scores)),
        "pr_auc": float(average_precision_score(labels, scores)),
        "recall_at_1pct_fpr": float(tpr[best]),
        "expected_calibration_error": expected_calibration_error(labels, scores),
        "holdout_rows": float(len(labels)),
        "holdout_fraud_rate": float(labels.mean()),
    }
    evaluation = Evaluation(metrics, threshold, confusion_matrix(labels, flagged, labels=[0, 1]).tolist())
    if slice_values is not None:
        for column in slice_values.columns:
            for value, index in slice_values.groupby(column).indices.items():
                positives = int(labels[index].sum())
                auc = (
                    roc_auc_score(labels[index], scores[index])
                    if MIN_SLICE_POSITIVES <= positives < len(index)
                    else np.nan
                )
                evaluation.slices[f"{column}={value}"] = {
                    "roc_auc": float(auc),
                    "rows": len(index),
                    "positives": positives,
                }
    evaluation.metrics["slice_auc_gap"] = evaluation.slice_gap
    return evaluation


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> float:
    """Mean |predicted - observed| fraud rate over equal-width score bins, weighted by bin size."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(scores, edges) - 1, 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(scores[members].mean() - labels[members].mean())
    return float(error)
