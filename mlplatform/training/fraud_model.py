"""fraud_model: train and register a candidate, gate it with blocking checks, promote it to champion."""

import hashlib
import subprocess
import time
from dataclasses import dataclass

import mlflow
import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    Output,
    asset,
    asset_check,
)
from mlflow.models import infer_signature
from sklearn.inspection import permutation_importance

from mlplatform.k8s import TRAINING
from mlplatform.resources import ModelRegistry, Warehouse
from mlplatform.resources.model_registry import CHALLENGER, CHAMPION
from mlplatform.settings import DBT_PROJECT_DIR, PROJECT_ROOT
from mlplatform.training.assets import FEATURE_SERVICE, training_set
from mlplatform.training.model import (
    LABEL,
    SLICES,
    Hyperparameters,
    evaluate,
    feature_columns,
    fit,
    predict_scores,
    time_split,
)
from mlplatform.training.registry import promote

MODEL_NAME = "fraud_model"
# Gates a candidate must pass before it may serve (blocking checks).
FLOORS = {"roc_auc": 0.85, "pr_auc": 0.30, "recall_at_1pct_fpr": 0.30}
CHAMPION_TOLERANCE = 0.005  # ROC AUC a candidate may lose against the champion on the same holdout
MAX_SLICE_AUC_GAP = 0.15
MAX_CALIBRATION_ERROR = 0.05
MAX_ONE_ROW_LATENCY_MS = 50.0
PIP_REQUIREMENTS = ["scikit-learn==1.9.1", "pandas==2.3.3", "numpy==2.4.6"]


class FraudModelConfig(Config):
    learning_rate: float = 0.1
    max_iter: int = 200
    max_leaf_nodes: int = 31
    l2_regularization: float = 0.0
    seed: int = 42
    holdout_fraction: float = 0.2
    threads: int = 1  # OpenMP threads for fitting; more only helps on an otherwise idle machine


@dataclass(frozen=True)
class ModelCandidate:
    """What fraud_model hands downstream: a registered version and how it did on its holdout."""

    name: str
    version: str
    run_id: str
    metrics: dict[str, float]
    slices: dict[str, dict[str, float]]
    threshold: float
    holdout_from: str  # first holdout event time: the checks re-create the same holdout from it

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def _lineage_tags(rows: pd.DataFrame) -> dict[str, str]:
    manifest = DBT_PROJECT_DIR / "target" / "manifest.json"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "data.partitions": f"{rows['event_ts'].min():%Y-%m-%d}..{rows['event_ts'].max():%Y-%m-%d}",
        "data.rows": str(len(rows)),
        "feature_service": FEATURE_SERVICE,
        "dbt.manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]
        if manifest.exists()
        else "none",
        "git.commit": commit,
    }


def _markdown_table(frame: pd.DataFrame) -> MetadataValue:
    return MetadataValue.md(frame.to_markdown())


@asset(
    group_name="training",
    kinds={"scikitlearn", "mlflow"},
    owners=["team:ml"],
    deps=[training_set],
    op_tags=TRAINING,
    description=(
        "Gradient-boosted fraud classifier trained on the past of training_set and validated on its most "
        "recent 20%; every run is tracked in MLflow and registered as a new `fraud_model` version (alias "
        "`challenger` until promoted)."
    ),
)
def fraud_model(
    context: AssetExecutionContext,
    config: FraudModelConfig,
    warehouse: Warehouse,
    model_registry: ModelRegistry,
) -> Output[ModelCandidate]:
    rows = warehouse.read_sql("select * from training.training_set")
    train, holdout = time_split(rows, config.holdout_fraction)
    params = Hyperparameters(
        config.learning_rate, config.max_iter, config.max_leaf_nodes, config.l2_regularization, config.seed
    )
    started = time.perf_counter()
    model = fit(train, params, config.threads)
    train_seconds = time.perf_counter() - started
    scores = predict_scores(model, holdout)
    evaluation = evaluate(holdout[LABEL].to_numpy(), scores, holdout[SLICES].reset_index(drop=True))

    features = holdout[feature_columns(holdout.columns)]
    mlflow.set_tracking_uri(model_registry.tracking_uri)
    mlflow.set_registry_uri(model_registry.tracking_uri)
    with mlflow.start_run(
        experiment_id=model_registry.experiment_id(), run_name=f"dagster-{context.run_id[:8]}"
    ) as run:
        mlflow.log_params({**config.model_dump(), "train_rows": len(train), "holdout_rows": len(holdout)})
        mlflow.log_metrics(
            {**evaluation.metrics, "train_seconds": train_seconds, "threshold": evaluation.threshold}
        )
        mlflow.set_tags({**_lineage_tags(rows), "dagster.run_id": context.run_id})
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(features, scores),
            input_example=features.head(3),
            pip_requirements=PIP_REQUIREMENTS,
            serialization_format="cloudpickle",
            registered_model_name=MODEL_NAME,
        )
    version = str(info.registered_model_version)
    model_registry.move_alias(MODEL_NAME, CHALLENGER, version)

    sample = holdout.sample(min(2_000, len(holdout)), random_state=0)
    importance = permutation_importance(
        model,
        sample[feature_columns(sample.columns)],
        sample[LABEL].astype(int),
        scoring="roc_auc",
        n_repeats=2,
        random_state=0,
    )
    top = pd.Series(importance.importances_mean, index=feature_columns(sample.columns)).nlargest(10)
    candidate = ModelCandidate(
        MODEL_NAME,
        version,
        run.info.run_id,
        evaluation.metrics,
        evaluation.slices,
        evaluation.threshold,
        str(holdout["event_ts"].min()),
    )
    return Output(
        candidate,
        metadata={
            "model_version": version,
            "mlflow_run_id": run.info.run_id,
            "mlflow_model_uri": candidate.uri,
            "mlflow_ui": f"mlflow ui --backend-store-uri {model_registry.tracking_uri}",
            **{k: round(v, 4) for k, v in evaluation.metrics.items()},
            "metrics": _markdown_table(pd.Series(evaluation.metrics).to_frame("value")),
            "confusion_matrix": _markdown_table(
                pd.DataFrame(evaluation.confusion, index=["legit", "fraud"], columns=["passed", "flagged"])
            ),
            "top_features": _markdown_table(top.to_frame("roc_auc_drop_when_shuffled")),
            "slices": _markdown_table(pd.DataFrame(evaluation.slices).T),
            "train_seconds": round(train_seconds, 2),
        },
    )


def _gate(
    registry: ModelRegistry, candidate: ModelCandidate, gate: str, passed: bool, **figures
) -> AssetCheckResult:
    """Record the gate's verdict on the model version, so a failed candidate carries why."""
    registry.client().set_model_version_tag(
        candidate.name, candidate.version, f"gate.{gate}", "passed" if passed else "failed"
    )
    return AssetCheckResult(passed=passed, metadata={"model_version": candidate.version, **figures})


@asset_check(
    asset=fraud_model, blocking=True, description=f"ROC AUC, PR AUC and recall at 1% FPR above {FLOORS}."
)
def metric_floors(fraud_model: ModelCandidate, model_registry: ModelRegistry) -> AssetCheckResult:
    below = {k: fraud_model.metrics[k] for k, floor in FLOORS.items() if fraud_model.metrics[k] < floor}
    return _gate(
        model_registry, fraud_model, "metric_floors", not below, below_floor=MetadataValue.json(below)
    )


@asset_check(
    asset=fraud_model,
    blocking=True,
    description=f"ROC AUC within {CHAMPION_TOLERANCE} of the current champion on the candidate's holdout.",
)
def not_worse_than_champion(
    fraud_model: ModelCandidate, model_registry: ModelRegistry, warehouse: Warehouse
) -> AssetCheckResult:
    champion = model_registry.version_for(fraud_model.name, CHAMPION)
    if champion is None or champion == fraud_model.version:
        return _gate(model_registry, fraud_model, "not_worse_than_champion", True, champion=str(champion))
    holdout = warehouse.read_sql(
        f"select * from training.training_set where event_ts >= '{fraud_model.holdout_from}'"
    )
    champion_model = model_registry.load_sklearn_model(fraud_model.name, champion)
    champion_auc = evaluate(holdout[LABEL].to_numpy(), predict_scores(champion_model, holdout)).metrics[
        "roc_auc"
    ]
    candidate_auc = fraud_model.metrics["roc_auc"]
    return _gate(
        model_registry,
        fraud_model,
        "not_worse_than_champion",
        candidate_auc >= champion_auc - CHAMPION_TOLERANCE,
        champion=champion,
        champion_roc_auc=round(champion_auc, 4),
        candidate_roc_auc=round(candidate_auc, 4),
    )


@asset_check(
    asset=fraud_model,
    blocking=True,
    description=f"ROC AUC gap between customer segments/regions <= {MAX_SLICE_AUC_GAP}.",
)
def slice_gaps(fraud_model: ModelCandidate, model_registry: ModelRegistry) -> AssetCheckResult:
    gap = fraud_model.metrics["slice_auc_gap"]
    return _gate(
        model_registry,
        fraud_model,
        "slice_gaps",
        gap <= MAX_SLICE_AUC_GAP,
        slice_auc_gap=round(gap, 4),
        slices=MetadataValue.md(pd.DataFrame(fraud_model.slices).T.to_markdown()),
    )


@asset_check(
    asset=fraud_model, blocking=True, description=f"Expected calibration error <= {MAX_CALIBRATION_ERROR}."
)
def calibration(fraud_model: ModelCandidate, model_registry: ModelRegistry) -> AssetCheckResult:
    error = fraud_model.metrics["expected_calibration_error"]
    return _gate(
        model_registry, fraud_model, "calibration", error <= MAX_CALIBRATION_ERROR, ece=round(error, 5)
    )


@asset_check(
    asset=fraud_model,
    blocking=True,
    description=f"Scoring one row takes <= {MAX_ONE_ROW_LATENCY_MS} ms (median).",
)
def one_row_latency(
    fraud_model: ModelCandidate, model_registry: ModelRegistry, warehouse: Warehouse
) -> AssetCheckResult:
    model = model_registry.load_sklearn_model(fraud_model.name, fraud_model.version)
    row = warehouse.sample_rows("training.training_set", 1)
    predict_scores(model, row)  # warm-up
    timings = []
    for _ in range(50):
        started = time.perf_counter()
        predict_scores(model, row)
        timings.append((time.perf_counter() - started) * 1000)
    median = sorted(timings)[len(timings) // 2]
    return _gate(
        model_registry,
        fraud_model,
        "one_row_latency",
        median <= MAX_ONE_ROW_LATENCY_MS,
        median_ms=round(median, 2),
    )


@asset(
    group_name="training",
    kinds={"mlflow"},
    owners=["team:ml"],
    description=(
        "The serving model: a fraud_model version that passed every gate becomes `champion` (the old one "
        "is kept as `previous`) and the promotion is written to the audit trail."
    ),
)
def fraud_model_champion(
    context: AssetExecutionContext, fraud_model: ModelCandidate, model_registry: ModelRegistry
) -> MaterializeResult:
    record = promote(
        model_registry,
        fraud_model.name,
        fraud_model.version,
        actor=f"dagster run {context.run_id}",
        reason="passed all validation gates",
        metrics={k: round(v, 4) for k, v in fraud_model.metrics.items()},
        gates=["metric_floors", "not_worse_than_champion", "slice_gaps", "calibration", "one_row_latency"],
    )
    return MaterializeResult(
        metadata={
            "champion_version": fraud_model.version,
            "previous_version": str(record["replaced"]) if record else "unchanged",
            "promoted": record is not None,
            "audit_record": MetadataValue.json(record or {"note": "already champion: nothing changed"}),
        }
    )


model_assets = [fraud_model, fraud_model_champion]
model_checks = [metric_floors, not_worse_than_champion, slice_gaps, calibration, one_row_latency]
