"""The candidate a training run registered, found again by its version id wherever a step runs.

The gates and the promotion never receive the model through a local file: `fraud_model` records the
registered version in its materialization, and each later step (in the same process, another process
or another pod) reads that version from the Dagster event log and everything else from MLflow."""

import json
from dataclasses import dataclass

from dagster import AssetKey, DagsterEventType, DagsterInstance

from mlplatform.resources import ModelRegistry
from mlplatform.training.spec import SPEC_ARTIFACT, SPECS_DIR, ModelSpec, load_spec, recorded_spec

EVALUATION_ARTIFACT = "evaluation.json"
# the training run's tags that say what a version was built from (promotion records, model cards)
LINEAGE_TAGS = ("data.partitions", "data.rows", "feature_service", "dbt.manifest_sha256", "git.commit")
VERSION_METADATA = "model_version"


class NoCandidateError(RuntimeError):
    """No training run has registered a candidate yet."""


@dataclass(frozen=True)
class ModelCandidate:
    """A registered version and how it did on its holdout."""

    name: str
    version: str
    run_id: str
    metrics: dict[str, float]
    slices: dict[str, dict[str, float]]
    threshold: float
    holdout_from: str  # first holdout event time: the gates re-create the same holdout from it

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def candidate_version(instance: DagsterInstance, run_id: str, asset_key: AssetKey) -> str:
    """The version `asset_key` registered in this run, or, when this run did not train (a gate or the
    promotion run on its own), the version of its latest materialization."""
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        event = entry.dagster_event
        if event is not None and event.asset_key == asset_key:
            return str(event.step_materialization_data.materialization.metadata[VERSION_METADATA].value)
    latest = instance.get_latest_materialization_event(asset_key)
    if latest is None or latest.asset_materialization is None:
        raise NoCandidateError(f"{asset_key.to_user_string()} has never registered a candidate: train first")
    return str(latest.asset_materialization.metadata[VERSION_METADATA].value)


def load_candidate(registry: ModelRegistry, name: str, version: str) -> ModelCandidate:
    """Metrics, threshold and slices of a version, from its MLflow training run."""
    client = registry.client()
    run_id = str(client.get_model_version(name, version).run_id)
    run = client.get_run(run_id)
    evaluation = json.loads(registry.run_artifact_text(run_id, EVALUATION_ARTIFACT))
    return ModelCandidate(
        name=name,
        version=version,
        run_id=run_id,
        metrics=dict(run.data.metrics),
        slices=evaluation["slices"],
        threshold=float(run.data.metrics["threshold"]),
        holdout_from=evaluation["holdout_from"],
    )


def version_spec(registry: ModelRegistry, model: str, version: str) -> ModelSpec:
    """The spec `version` was trained with, as its training run recorded it; the committed spec for a
    version trained before runs recorded theirs."""
    path = SPECS_DIR / f"{model}.yaml"
    committed = load_spec(path) if path.exists() else None
    client = registry.client()
    run_id = str(client.get_model_version(model, version).run_id)
    if SPEC_ARTIFACT not in {artifact.path for artifact in client.list_artifacts(run_id)}:
        if committed is None:
            raise FileNotFoundError(f"{model} version {version} recorded no spec and {path} does not exist")
        return committed
    recorded = json.loads(registry.run_artifact_text(run_id, SPEC_ARTIFACT))
    return recorded_spec(recorded, committed, f"{SPEC_ARTIFACT} of {model} version {version}")
