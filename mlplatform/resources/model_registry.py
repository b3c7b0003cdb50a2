"""MLflow as the system of record for models: tracking, the registry, aliases and the audit trail."""

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import mlflow.artifacts
import mlflow.sklearn
from dagster import ConfigurableResource
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlplatform.resources.env import resolved

CHAMPION, PREVIOUS, CHALLENGER = "champion", "previous", "challenger"


class ModelRegistry(ConfigurableResource):
    """MLflow tracking and registry; the audit trail is JSON lines.

    Local profile: `tracking_uri` a SQLite file and `artifact_root` a folder the client writes to.
    Prod profile: `tracking_uri` an `mlflow server` (http) that stores artifacts itself and proxies them
    (`--serve-artifacts`): `artifact_root` stays unset, so experiments use the server's location.
    """

    tracking_uri: str
    artifact_root: str | None = None
    audit_log: str
    experiment: str = "fraud_model"

    @property
    def uri(self) -> str:
        """The tracking (and registry) URI, also outside a run when it is an `EnvVar`."""
        return resolved(self.tracking_uri)

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def experiment_id(self) -> str:
        client = self.client()
        found = client.get_experiment_by_name(self.experiment)
        if found:
            return found.experiment_id
        if self.artifact_root is None:
            return client.create_experiment(self.experiment)
        Path(self.artifact_root).mkdir(parents=True, exist_ok=True)
        return client.create_experiment(self.experiment, artifact_location=Path(self.artifact_root).as_uri())

    def version_for(self, model: str, alias: str) -> str | None:
        """The version behind an alias, as a string (MLflow returns ints here and strings elsewhere)."""
        try:
            return str(self.client().get_model_version_by_alias(model, alias).version)
        except MlflowException:
            return None

    def load_sklearn_model(self, model: str, version: str):
        """A registered version's scikit-learn model, copied from its artifact location (through the
        tracking server when it proxies artifacts) into a scratch folder and loaded. No global MLflow
        state, so nothing falls back to a default tracking store in the working directory."""
        uri = self.client().get_model_version_download_uri(model, version)
        with tempfile.TemporaryDirectory(prefix="mlplatform-model-") as scratch:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=scratch, tracking_uri=self.uri, registry_uri=self.uri
            )
            return mlflow.sklearn.load_model(local)

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
