"""The experimentation zone: a variation of a model's spec trained on the same labelled data and scored on
the same holdout as the champion, tracked in MLflow under the model's own experiments, without registering
a version or moving an alias. A good one is proposed through the retraining job (`propose_run_config`),
where the same gates and promotion policy judge it."""

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mlplatform.resources import FeastFeatureStore, ModelRegistry, Warehouse
from mlplatform.resources.model_registry import CHAMPION
from mlplatform.training.candidate import version_spec
from mlplatform.training.factory import labelled_rows, training_rows
from mlplatform.training.model import Hyperparameters, evaluate, fit, labels_of, predict_scores, time_split
from mlplatform.training.spec import RUN_CONFIG_FIELDS, SPEC_ARTIFACT, ModelSpec, flatten

EXPERIMENTS = "{model}/experiments"  # the MLflow experiment of a model's experiments
COMPARED = ("roc_auc", "pr_auc", "recall_at_1pct_fpr", "expected_calibration_error", "slice_auc_gap")


@dataclass
class ExperimentResult:
    run_id: str
    experiment: str
    metrics: dict[str, float]
    champion_version: str | None
    champion_metrics: dict[str, float] | None  # the champion scored on the experiment's holdout
    champion_not_compared: str | None  # why not, when it could not be
    differences: dict[str, tuple[Any, Any]]  # field -> (experiment, champion's spec)

    def table(self) -> pd.DataFrame:
        columns = {"experiment": {k: self.metrics[k] for k in COMPARED}}
        if self.champion_metrics is not None:
            columns[f"champion v{self.champion_version}"] = {k: self.champion_metrics[k] for k in COMPARED}
        return pd.DataFrame(columns).round(4)


def champion_spec(registry: ModelRegistry, committed: ModelSpec) -> tuple[str | None, ModelSpec]:
    """The champion's version and the spec its training run recorded (the committed spec when there is
    no champion)."""
    version = registry.version_for(committed.name, CHAMPION)
    if version is None:
        return None, committed
    return version, version_spec(registry, committed.name, version)


def run_experiment(
    spec: ModelSpec,
    committed: ModelSpec,
    registry: ModelRegistry,
    warehouse: Warehouse,
    feature_store: FeastFeatureStore,
) -> ExperimentResult:
    """Train and evaluate `spec` (a variation of the `committed` one) and log the run."""
    import mlflow

    champion, trained_from = champion_spec(registry, committed)
    if spec.feature_service == trained_from.feature_service:
        # what the champion trained on
        rows = training_rows(warehouse, spec)
    else:
        rows = labelled_rows(feature_store.store(), warehouse, spec)
    train, holdout = time_split(spec, rows)
    model = fit(spec, train)
    labels, slices = labels_of(spec, holdout), holdout[spec.slices].reset_index(drop=True)
    evaluation = evaluate(labels, predict_scores(model, holdout), slices, spec.decision.target_fpr)

    champion_metrics, not_compared = None, None
    if champion is None:
        not_compared = "no champion yet"
    else:
        champion_model = registry.load_sklearn_model(spec.name, champion)
        missing = sorted(set(champion_model.feature_names_in_) - set(holdout.columns))
        if missing:
            not_compared = f"the holdout lacks the champion's inputs {missing[:5]}"
        else:
            champion_scores = predict_scores(champion_model, holdout)
            champion_metrics = evaluate(labels, champion_scores, slices, spec.decision.target_fpr).metrics

    differences = spec.differences(trained_from)
    experiment = EXPERIMENTS.format(model=spec.name)
    mlflow.set_tracking_uri(registry.uri)
    with mlflow.start_run(experiment_id=registry.experiment_id(experiment)) as run:
        mlflow.log_params({"feature_service": spec.feature_service, **Hyperparameters.of(spec).__dict__})
        mlflow.log_metrics(evaluation.metrics)
        if champion_metrics is not None:
            mlflow.log_metrics({f"champion_{k}": v for k, v in champion_metrics.items()})
        mlflow.set_tags(
            {
                "champion_version": champion or "none",
                "spec.differences": json.dumps({k: list(v) for k, v in differences.items()}, default=str),
            }
        )
        mlflow.log_dict(spec.model_dump(), SPEC_ARTIFACT)
    return ExperimentResult(
        run.info.run_id,
        experiment,
        evaluation.metrics,
        champion,
        champion_metrics,
        not_compared,
        differences,
    )


def propose_run_config(spec: ModelSpec, baseline: ModelSpec) -> dict:
    """Run config of the retraining job that trains `spec` as a candidate, through the same gates and
    promotion policy. Refused (ValueError) for a change the job does not take as configuration: a new
    feature service or slices are a new spec, committed and deployed like code."""
    differences = spec.differences(baseline)
    not_proposable = sorted(set(differences) - set(RUN_CONFIG_FIELDS))
    if not_proposable:
        raise ValueError(
            f"cannot propose a change of {', '.join(not_proposable)} through retraining: the serving path "
            f"reads {baseline.name}'s spec; commit the change to models/{baseline.name}.yaml instead"
        )
    settings = flatten(spec.model_dump())
    config = {option: settings[dotted] for dotted, option in RUN_CONFIG_FIELDS.items()}
    return {"ops": {spec.name: {"config": config}}}
