"""The spec's retention rule on a copy of the built registry (version 1 is champion): versions no alias
points to are archived, then deleted beyond the newest archived ones; served versions never are, and
every step is audited while runs and model cards stay."""

import mlflow
import pytest

from mlplatform.profiles import build_resources
from mlplatform.resources.model_registry import CHAMPION, PREVIOUS
from mlplatform.training.candidate import EVALUATION_ARTIFACT
from mlplatform.training.gates import LIFECYCLE_TAG, Lifecycle
from mlplatform.training.model_card import MODEL_CARD_ARTIFACT, read_model_card
from mlplatform.training.registry import apply_retention
from mlplatform.training.spec import Retention
from tests.conftest import copy_state

pytestmark = pytest.mark.e2e
MODEL = "fraud_model"


def register_copy_of(registry, version: str, lifecycle: str) -> str:
    """A new version of the champion's model, with its own run (metrics and evaluation copied): what a
    training registers, without training."""
    client = registry.client()
    original = client.get_model_version(MODEL, version)
    metrics = client.get_run(original.run_id).data.metrics
    evaluation = registry.run_artifact_text(original.run_id, EVALUATION_ARTIFACT)
    mlflow.set_tracking_uri(registry.uri)
    with mlflow.start_run(experiment_id=registry.experiment_id()) as run:
        mlflow.log_metrics(metrics)
        mlflow.log_text(evaluation, EVALUATION_ARTIFACT)
    new = client.create_model_version(MODEL, original.source, run_id=run.info.run_id)
    registry.tag_version(MODEL, str(new.version), {LIFECYCLE_TAG: lifecycle})
    return str(new.version)


def test_retention_archives_then_deletes_what_no_alias_serves(built_state, tmp_path):
    registry = build_resources(profile="local", state=copy_state(built_state[0], tmp_path / "state"))[
        "model_registry"
    ]
    lifecycles = [Lifecycle.REJECTED, Lifecycle.PREVIOUS, Lifecycle.ORPHANED, Lifecycle.CANDIDATE]
    made = [
        register_copy_of(registry, "1", lifecycle) for lifecycle in [*lifecycles, "candidate", "candidate"]
    ]
    assert made == ["2", "3", "4", "5", "6", "7"]
    registry.move_alias(MODEL, PREVIOUS, "3")  # served: never archived, whatever its age
    deleted_run = registry.client().get_model_version(MODEL, "2").run_id

    outcome = apply_retention(
        registry, MODEL, Retention(archive_after=2, delete_archived_after=1), actor="test"
    )
    assert outcome == {"archived": ["2", "4", "5"], "deleted": ["2", "4"]}
    remaining = {
        str(v.version): v.tags.get(LIFECYCLE_TAG)
        for v in registry.client().search_model_versions(f"name = '{MODEL}'")
    }
    assert remaining == {
        "1": "champion",
        "3": "previous",
        "5": "archived",
        "6": "candidate",
        "7": "candidate",
    }
    assert registry.version_for(MODEL, CHAMPION) == "1" and registry.version_for(MODEL, PREVIOUS) == "3"
    actions = [(e["action"], e["version"]) for e in registry.audit_trail(MODEL) if e["actor"] == "test"]
    assert actions == [("archive", "2"), ("archive", "4"), ("archive", "5"), ("delete", "2"), ("delete", "4")]
    assert "**Stage:** archived" in read_model_card(registry, MODEL, "5")
    # a deleted version's training run and model card stay in MLflow tracking
    card = registry.run_artifact_text(deleted_run, MODEL_CARD_ARTIFACT)
    assert "# Model card: fraud_model version 2" in card and "| archive | test |" in card

    again = apply_retention(
        registry, MODEL, Retention(archive_after=2, delete_archived_after=1), actor="test"
    )
    assert again == {"archived": [], "deleted": []}  # applied twice, nothing more happens
