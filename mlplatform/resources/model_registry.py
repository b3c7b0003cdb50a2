"""MLflow as the system of record for models: tracking, the registry, aliases and the audit trail."""

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from dagster import ConfigurableResource

if TYPE_CHECKING:  # mlflow takes a second or more to import: paid by the steps that use the registry
    from mlflow import MlflowClient

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
    # auto: a candidate that passed every gate becomes champion; manual: it waits as challenger until
    # someone approves it (`mlplatform approve`)
    promotion_policy: Literal["auto", "manual"] = "auto"

    @property
    def uri(self) -> str:
        """The tracking (and registry) URI, also outside a run when it is an `EnvVar`."""
        return resolved(self.tracking_uri)

    def client(self) -> "MlflowClient":
        from mlflow import MlflowClient

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
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client().get_model_version_by_alias(model, alias).version)
        except MlflowException:
            return None

    def load_sklearn_model(self, model: str, version: str):
        """A registered version's fitted scikit-learn pipeline, copied from its artifact location (through
        the tracking server when it proxies artifacts) into a scratch folder and loaded. Versions are
        logged as a pyfunc (`FraudScorer`) wrapping the pipeline; older ones as plain sklearn models. No
        global MLflow state, so nothing falls back to a default tracking store in the working directory."""
        import mlflow.artifacts
        import mlflow.pyfunc
        import mlflow.sklearn
        from mlflow.models import Model

        uri = self.client().get_model_version_download_uri(model, version)
        with tempfile.TemporaryDirectory(prefix="mlplatform-model-") as scratch:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=scratch, tracking_uri=self.uri, registry_uri=self.uri
            )
            if "sklearn" in Model.load(local).flavors:
                return mlflow.sklearn.load_model(local)
            return mlflow.pyfunc.load_model(local).unwrap_python_model().pipeline

    def version_tags(self, model: str, version: str) -> dict[str, str]:
        return dict(self.client().get_model_version(model, version).tags)

    def tag_version(self, model: str, version: str, tags: dict[str, str]) -> None:
        client = self.client()
        for key, value in tags.items():
            client.set_model_version_tag(model, version, key, value)

    def aliases(self, model: str) -> dict[str, str]:
        """alias -> version for every alias of the model."""
        return {alias: str(v) for alias, v in self.client().get_registered_model(model).aliases.items()}

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
