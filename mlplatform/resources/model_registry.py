"""MLflow as the system of record for models: tracking, the registry, aliases and the audit trail."""

import json
import sqlite3
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from dagster import ConfigurableResource

if TYPE_CHECKING:  # mlflow takes a second or more to import: paid by the steps that use the registry
    from mlflow import MlflowClient

from mlplatform.resources.env import resolved

CHAMPION, PREVIOUS, CHALLENGER = "champion", "previous", "challenger"
# where MLflow's SQLite store keeps artifact locations (absolute URIs or paths)
ARTIFACT_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
    ("logged_models", "artifact_location"),
)
_REROOTED: set[tuple[str, str]] = set()  # (store, artifact root) pairs checked in this process


def reroot_artifact_locations(db_path: Path, experiment: str, artifact_root: Path) -> str | None:
    """Point a local MLflow store's artifact locations at `artifact_root` when the state folder moved.

    MLflow records absolute locations: a state folder copied or restored elsewhere would read (and a
    retraining would write) the original's artifacts. The experiment's location says where the artifacts
    were; every location under it is rewritten to the same place under `artifact_root`. Returns the old
    root when something was rewritten."""
    if not db_path.exists():
        return None
    new_uri, new_path = artifact_root.as_uri(), str(artifact_root)
    with sqlite3.connect(db_path) as con:
        tables = {row[0] for row in con.execute("select name from sqlite_master where type = 'table'")}
        if "experiments" not in tables:
            return None
        row = con.execute(
            "select artifact_location from experiments where name = ?", (experiment,)
        ).fetchone()
        old_uri = row[0] if row else None
        if not old_uri or old_uri == new_uri or not old_uri.startswith("file://"):
            return None
        old_path = str(Path(old_uri.removeprefix("file://")))
        for table, column in ARTIFACT_COLUMNS:
            if table not in tables or column not in {
                c[1] for c in con.execute(f"pragma table_info({table})")
            }:
                continue
            for old, new in ((old_uri, new_uri), (old_path, new_path)):
                con.execute(
                    f"update {table} set {column} = ? || substr({column}, ?) "
                    f"where {column} = ? or {column} like ? escape '\\'",
                    (new, len(old) + 1, old, old.replace("%", "\\%").replace("_", "\\_") + "/%"),
                )
    return old_uri


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
    # spec: each model's own policy; auto or manual: the deployment's, for every model. auto: a candidate that
    # passed every gate becomes champion; manual: it waits as challenger until someone approves it
    promotion_policy: Literal["spec", "auto", "manual"] = "spec"

    @property
    def uri(self) -> str:
        """The tracking (and registry) URI, also outside a run when it is an `EnvVar`."""
        return resolved(self.tracking_uri)

    def client(self) -> "MlflowClient":
        from mlflow import MlflowClient

        self.reroot_artifacts()
        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def reroot_artifacts(self) -> None:
        """Local profile: keep the artifact locations inside this state folder (see
        `reroot_artifact_locations`); checked once per process. A server (prod) owns its locations."""
        uri = self.uri
        if self.artifact_root is None or not uri.startswith("sqlite:///"):
            return
        key = (uri, str(self.artifact_root))
        if key in _REROOTED:
            return
        _REROOTED.add(key)
        reroot_artifact_locations(
            Path(uri.removeprefix("sqlite:///")), self.experiment, Path(self.artifact_root)
        )

    def experiment_id(self, name: str | None = None) -> str:
        """The MLflow experiment `name` (default: the training runs'), created on first use."""
        name = name or self.experiment
        client = self.client()
        found = client.get_experiment_by_name(name)
        if found:
            return found.experiment_id
        if self.artifact_root is None:
            return client.create_experiment(name)
        Path(self.artifact_root).mkdir(parents=True, exist_ok=True)
        return client.create_experiment(name, artifact_location=Path(self.artifact_root).as_uri())

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

    def run_artifact_text(self, run_id: str, path: str) -> str:
        """A text artifact of a run, read through this registry (never through MLflow's global tracking
        URI, which another registry in the same process may have set)."""
        import mlflow.artifacts

        with tempfile.TemporaryDirectory(prefix="mlplatform-artifact-") as scratch:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"runs:/{run_id}/{path}", dst_path=scratch, tracking_uri=self.uri
            )
            return Path(local).read_text()

    def write_run_artifact_text(self, run_id: str, path: str, text: str) -> None:
        """Write (or replace) a text artifact of a run at the run's own artifact location. Not through
        `MlflowClient.log_text`: MLflow caches each run's artifact repository by run id for the whole
        process, so a state copied or restored elsewhere would be written at the original's location."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        artifact_uri = self.client().get_run(run_id).info.artifact_uri
        repository = get_artifact_repository(artifact_uri, tracking_uri=self.uri, registry_uri=self.uri)
        with tempfile.TemporaryDirectory(prefix="mlplatform-artifact-") as scratch:
            local = Path(scratch) / path
            local.write_text(text)
            repository.log_artifact(str(local))

    def version_tags(self, model: str, version: str) -> dict[str, str]:
        return dict(self.client().get_model_version(model, version).tags)

    def tag_version(self, model: str, version: str, tags: dict[str, str]) -> None:
        client = self.client()
        for key, value in tags.items():
            client.set_model_version_tag(model, version, key, value)

    def model_tags(self, model: str) -> dict[str, str]:
        """The registered model's own tags (its lifecycle as a whole); none for a model never trained."""
        from mlflow.exceptions import MlflowException

        try:
            return dict(self.client().get_registered_model(model).tags)
        except MlflowException:
            return {}

    def tag_model(self, model: str, tags: dict[str, str]) -> None:
        client = self.client()
        for key, value in tags.items():
            client.set_registered_model_tag(model, key, value)

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
