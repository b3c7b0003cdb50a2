"""MLflow as the system of record for models: tracking, the registry, aliases and the audit trail."""

import json
from datetime import UTC, datetime
from pathlib import Path

import mlflow.sklearn
from dagster import ConfigurableResource
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

CHAMPION, PREVIOUS, CHALLENGER = "champion", "previous", "challenger"


class ModelRegistry(ConfigurableResource):
    """Local profile: MLflow on a SQLite file with artifacts on disk; the audit trail is JSON lines."""

    tracking_uri: str
    artifact_root: str
    audit_log: str
    experiment: str = "fraud_model"

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def experiment_id(self) -> str:
        client = self.client()
        found = client.get_experiment_by_name(self.experiment)
        if found:
            return found.experiment_id
        Path(self.artifact_root).mkdir(parents=True, exist_ok=True)
        return client.create_experiment(self.experiment, artifact_location=Path(self.artifact_root).as_uri())

    def version_for(self, model: str, alias: str) -> str | None:
        """The version behind an alias, as a string (MLflow returns ints here and strings elsewhere)."""
        try:
            return str(self.client().get_model_version_by_alias(model, alias).version)
        except MlflowException:
            return None

    def load_sklearn_model(self, model: str, version: str):
        """A registered version's scikit-learn model, read from its artifact location: no global MLflow
        state, so nothing falls back to a default tracking store in the working directory."""
        return mlflow.sklearn.load_model(self.client().get_model_version_download_uri(model, version))

    def move_alias(self, model: str, alias: str, version: str | None) -> None:
        client = self.client()
        if version is None:
            if self.version_for(model, alias) is not None:
                client.delete_registered_model_alias(model, alias)
        else:
            client.set_registered_model_alias(model, alias, version)

    def audit(self, action: str, model: str, **record) -> dict:
        """Append one who/what/when/why record to the audit trail and return it."""
        entry = {"at": datetime.now(UTC).isoformat(), "action": action, "model": model, **record}
        path = Path(self.audit_log)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as out:
            out.write(json.dumps(entry, default=str) + "\n")
        return entry

    def audit_trail(self, model: str | None = None) -> list[dict]:
        path = Path(self.audit_log)
        if not path.exists():
            return []
        entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [e for e in entries if model is None or e["model"] == model]
