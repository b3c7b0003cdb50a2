"""Scoring shared by batch predictions and the prediction API, so both paths give the same answer."""

from dataclasses import dataclass

import pandas as pd
from sklearn.pipeline import Pipeline

from mlplatform.resources.model_registry import ModelRegistry
from mlplatform.training.model import predict_scores

# what a transaction carries at request time, besides its entity keys
TRANSACTION_FIELDS = [
    "transaction_id",
    "customer_id",
    "merchant_id",
    "amount",
    "channel",
    "country",
    "event_ts",
]


class NoModelError(RuntimeError):
    """No model version stands behind the alias asked for."""


@dataclass(frozen=True)
class ScoringModel:
    """A registered model version ready to score: what it is, how to decide, which features it needs."""

    name: str
    version: str
    pipeline: Pipeline
    threshold: float  # the score at which its evaluation held false positives to the alert budget
    feature_service: str

    def score(self, rows: pd.DataFrame, threshold: float | None = None) -> pd.DataFrame:
        """`score` and `decision` (1 = flag as fraud) per row; `threshold` overrides the model's own."""
        cut = self.threshold if threshold is None else threshold
        scores = predict_scores(self.pipeline, rows)
        return pd.DataFrame({"score": scores, "decision": (scores >= cut).astype(int)}, index=rows.index)


def load_scoring_model(registry: ModelRegistry, name: str, alias: str) -> ScoringModel:
    """The version behind `alias`, with the threshold and feature service its training run recorded."""
    version = registry.version_for(name, alias)
    if version is None:
        raise NoModelError(f"no version of {name} has the alias '{alias}'")
    return load_model_version(registry, name, version)


def load_model_version(registry: ModelRegistry, name: str, version: str) -> ScoringModel:
    client = registry.client()
    run = client.get_run(client.get_model_version(name, version).run_id)
    return ScoringModel(
        name=name,
        version=version,
        pipeline=registry.load_sklearn_model(name, version),
        threshold=float(run.data.metrics["threshold"]),
        feature_service=run.data.tags["feature_service"],
    )
