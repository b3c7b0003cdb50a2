"""Feast as a Dagster resource: the feature_repo definitions, applied and served for one state folder."""

import importlib.util
import sys
from datetime import datetime
from pathlib import Path
from types import ModuleType

from dagster import ConfigurableResource
from feast import FeatureStore
from feast.repo_config import RepoConfig

from mlplatform.settings import FEATURE_REPO_DIR

PROJECT = "mlplatform"


def load_feature_repo(repo_dir: Path) -> ModuleType:
    """Import feature_repo/features.py afresh: it is not a package, and each state builds its own objects.

    Registered in sys.modules because Feast reads the on-demand UDF's source through its module."""
    spec = importlib.util.spec_from_file_location("mlplatform_feature_repo", repo_dir / "features.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class FeastFeatureStore(ConfigurableResource):
    """Local profile: parquet offline store written by dbt, SQLite online store, file registry."""

    state_dir: str
    repo_dir: str = str(FEATURE_REPO_DIR)

    @property
    def feast_dir(self) -> Path:
        return Path(self.state_dir) / "feast"

    def repo_config(self) -> RepoConfig:
        self.feast_dir.mkdir(parents=True, exist_ok=True)
        return RepoConfig(
            project=PROJECT,
            provider="local",
            registry={"registry_type": "file", "path": str(self.feast_dir / "registry.db")},
            online_store={"type": "sqlite", "path": str(self.feast_dir / "online_store.db")},
            offline_store={"type": "file"},
            entity_key_serialization_version=3,
            repo_path=Path(self.repo_dir),
        )

    def write_serving_repo(self, folder: Path) -> Path:
        """A feature_store.yaml in `folder` for `feast serve -c folder`, on this state's registry and
        online store (the same configuration `repo_config` builds in code)."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "feature_store.yaml").write_text(
            f"project: {PROJECT}\nprovider: local\n"
            f"registry:\n  registry_type: file\n  path: {self.feast_dir / 'registry.db'}\n"
            f"online_store:\n  type: sqlite\n  path: {self.feast_dir / 'online_store.db'}\n"
            "offline_store:\n  type: file\nentity_key_serialization_version: 3\nauth:\n  type: no_auth\n"
        )
        return folder

    def store(self) -> FeatureStore:
        return FeatureStore(config=self.repo_config())

    def definitions(self) -> dict[str, object]:
        repo = load_feature_repo(Path(self.repo_dir))
        return repo.build_definitions(repo.parquet_source(str(self.feast_dir / "data")))

    def apply(self) -> dict[str, object]:
        """`feast apply`: register every definition (idempotent: unchanged objects stay as they are)."""
        definitions = self.definitions()
        self.store().apply(list(definitions.values()))
        return definitions

    def materialize(
        self, feature_view: str, end: datetime, reload_from: datetime | None = None
    ) -> tuple[datetime, datetime]:
        """Load rows newer than the view's last materialization (or all, the first time) up to `end`, and
        from `reload_from` if that is earlier: rows rebuilt for an earlier time (a late or replaced file)
        are older than the last materialization, and Feast only loads by event time."""
        store = self.store()
        view = store.get_feature_view(feature_view)
        start = view.most_recent_end_time or datetime(2000, 1, 1, tzinfo=end.tzinfo)
        if reload_from is not None:
            start = min(start, reload_from)
        store.materialize(start_date=start, end_date=end, feature_views=[feature_view])
        return start, end
