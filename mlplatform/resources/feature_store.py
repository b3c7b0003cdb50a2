"""Feast as a Dagster resource: the feature_repo definitions, applied and served for one deployment.

`FeastFeatureStore` is what assets are typed against; the profile picks the variant:
`LocalFeastFeatureStore` (parquet files dbt exports, SQLite online store, file registry, all under a
state folder) or `PostgresRedisFeastFeatureStore` (the dbt marts in Postgres, Redis online store, SQL
registry in Postgres). A variant only says where things are (`store_config`, `source_factory`); applying,
materializing and writing the `feast serve` configuration are shared.
"""

import importlib.util
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import yaml  # type: ignore[import-untyped]  # no stubs in the lock file
from dagster import ConfigurableResource, EnvVar

if TYPE_CHECKING:  # feast takes seconds to import: only the code that uses it pays for it
    from feast import FeatureStore
    from feast.data_source import DataSource
    from feast.repo_config import RepoConfig

from mlplatform.resources.env import resolved, yaml_reference
from mlplatform.resources.postgres import PostgresConnection
from mlplatform.resources.warehouse import DUCKDB_MEMORY_LIMIT
from mlplatform.settings import FEATURE_REPO_DIR

PROJECT = "mlplatform"
# the platform's offline stores, by name: no feast import here
DUCKDB_OFFLINE_STORE = "mlplatform.duckdb_offline_store.DuckDBOfflineStore"
POSTGRES_OFFLINE_STORE = "mlplatform.postgres_offline_store.PostgresOfflineStore"
# Feast's own default port for `feast serve`: the CLI's default and the Kubernetes Service's target
FEAST_SERVE_PORT = 6566
COMMON_CONFIG = {
    "project": PROJECT,
    "provider": "local",
    "entity_key_serialization_version": 3,
    "auth": {"type": "no_auth"},
    # each entity's newest row from the offline store (a SQL window there); by default Feast's materialization
    # pulls every row of the interval into one arrow table and keeps the newest in pandas: a first load of a
    # year's customer_features (69M rows) took over 22 GB and was killed by the kernel (benchmarks/scale.py)
    "materialization": {"pull_latest_features": True},
}


def load_feature_repo(repo_dir: Path) -> ModuleType:
    """Import feature_repo/features.py afresh: it is not a package, and each state builds its own objects.

    Registered in sys.modules because Feast reads the on-demand UDF's source through its module."""
    spec = importlib.util.spec_from_file_location("mlplatform_feature_repo", repo_dir / "features.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class FeastFeatureStore(ConfigurableResource):
    """The feature store assets use: `store()`, `definitions()`, `apply()`, `materialize()`."""

    repo_dir: str = str(FEATURE_REPO_DIR)

    def store_config(self, value: Callable = resolved) -> dict:
        """registry, online_store and offline_store of feature_store.yaml; `value` renders each setting
        that may come from the environment (resolved here, `${NAME}` in a file)."""
        raise NotImplementedError

    def source_factory(self, repo: ModuleType) -> Callable[[str], "DataSource"]:
        """How a feature view reads a dbt mart (`repo` is feature_repo/features.py)."""
        raise NotImplementedError

    def repo_config(self) -> "RepoConfig":
        from feast.repo_config import RepoConfig

        return RepoConfig(**COMMON_CONFIG, **self.store_config(), repo_path=Path(self.repo_dir))

    def write_serving_repo(self, folder: Path) -> Path:
        """A feature_store.yaml in `folder` for `feast serve -c folder`, on this deployment's registry and
        stores (the configuration `repo_config` builds in code; settings from the environment stay
        `${NAME}` references, which Feast expands when it reads the file)."""
        folder.mkdir(parents=True, exist_ok=True)
        config = {**COMMON_CONFIG, **self.store_config(value=yaml_reference)}
        (folder / "feature_store.yaml").write_text(yaml.dump(config, Dumper=ReferenceDumper, sort_keys=False))
        return folder

    def store(self) -> "FeatureStore":
        from feast import FeatureStore

        return FeatureStore(config=self.repo_config())

    def definitions(self) -> dict[str, object]:
        repo = load_feature_repo(Path(self.repo_dir))
        return repo.build_definitions(self.source_factory(repo))

    def apply(self) -> dict[str, object]:
        """`feast apply`: register every definition (idempotent: unchanged objects stay as they are), and
        make the pushed views' offline history readable before their first push."""
        from feast import FeatureView, PushSource

        from mlplatform.pushed_history import history_store

        definitions = self.definitions()
        store = self.store()
        store.apply(list(definitions.values()))
        # as `feast apply` does, record the online tables in the registry (`feast plan` compares them)
        infra = store.provider.plan_infra(store.config, store.registry.proto())
        store.registry.update_infra(infra, store.project, commit=True)
        # Feast has no offline counterpart of the online tables: a training set asking for a pushed view
        # would fail on a missing table until the pusher or the backfill ran
        if (offline := history_store(store)) is not None:
            for view in definitions.values():
                if isinstance(view, FeatureView) and isinstance(view.stream_source, PushSource):
                    offline.create_history(store.config, view)
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


class LocalFeastFeatureStore(FeastFeatureStore):
    """Local profile: parquet files dbt writes, read by the DuckDB offline store; SQLite online store; file
    registry."""

    state_dir: str
    duckdb_memory_limit: str = DUCKDB_MEMORY_LIMIT  # the offline store's point-in-time joins

    @property
    def feast_dir(self) -> Path:
        return Path(self.state_dir) / "feast"

    def store_config(self, value: Callable = resolved) -> dict:
        self.feast_dir.mkdir(parents=True, exist_ok=True)
        return {
            "registry": {"registry_type": "file", "path": str(self.feast_dir / "registry.db")},
            "online_store": {"type": "sqlite", "path": str(self.feast_dir / "online_store.db")},
            # point-in-time joins as DuckDB ASOF joins over the parquet files (duckdb_offline_store.py)
            "offline_store": {
                "type": DUCKDB_OFFLINE_STORE,
                "memory_limit": self.duckdb_memory_limit,
                "temp_directory": str(self.feast_dir / "spill"),
            },
        }

    def source_factory(self, repo: ModuleType) -> Callable[[str], "DataSource"]:
        return repo.parquet_source(str(self.feast_dir / "data"))

    def store(self) -> "FeatureStore":
        """The store; the first time per process, its file sources are re-registered here if the registry
        points them at another folder (a state copied or restored elsewhere would read the original)."""
        store = super().store()
        key = str(self.feast_dir)
        if key not in _REROOTED:
            _REROOTED.add(key)
            if sources_outside(store, self.feast_dir / "data"):
                self.apply()
                store = super().store()
        return store


_REROOTED: set[str] = set()  # feast folders whose registry was checked in this process


def sources_outside(store: "FeatureStore", data_dir: Path) -> list[str]:
    """Paths of registered file sources that are not in `data_dir`."""
    try:
        sources = store.list_data_sources()
    except Exception:  # no registry yet: nothing registered elsewhere
        return []
    paths = [getattr(source, "path", None) for source in sources]
    root = data_dir.resolve()
    return [p for p in paths if p and not Path(p).resolve().is_relative_to(root)]


class PostgresRedisFeastFeatureStore(FeastFeatureStore):
    """Prod profile: the dbt marts in Postgres as offline store (pushed views in their own tables), Redis
    online store, SQL registry.

    `redis_connection` is Feast's Redis connection string, `host:port[,db=N][,password=...][,ssl=true]`.
    `registry_cache_ttl_seconds`: how long a process trusts its copy of the registry (runs are short).
    `retrieval_connections`: how many connections a large point-in-time retrieval is split over, its events
    by time (Postgres runs each statement on one core; more than the server's cores gains nothing).
    """

    postgres: PostgresConnection
    redis_connection: str
    registry_cache_ttl_seconds: int = 60
    retrieval_connections: int = 2

    def store_config(self, value: Callable = resolved) -> dict:
        pg = self.postgres
        connection = {
            "host": value(pg.host),
            "port": value(pg.port),
            "database": value(pg.database),
            "db_schema": "public",
            "user": value(pg.user),
            "password": value(pg.password),
            "sslmode": value(pg.sslmode),
        }
        return {
            "registry": {
                "registry_type": "sql",
                "path": registry_url(connection),
                "cache_ttl_seconds": self.registry_cache_ttl_seconds,
                "sqlalchemy_config_kwargs": {"echo": False, "pool_pre_ping": True},
            },
            "online_store": {"type": "redis", "connection_string": value(self.redis_connection)},
            # Feast's Postgres offline store that also stores pushes (postgres_offline_store.py)
            "offline_store": {
                "type": POSTGRES_OFFLINE_STORE,
                **connection,
                "retrieval_connections": self.retrieval_connections,
            },
        }

    def source_factory(self, repo: ModuleType) -> Callable[[str], "DataSource"]:
        return repo.postgres_source("marts")

    @classmethod
    def from_env(cls, postgres: PostgresConnection) -> "PostgresRedisFeastFeatureStore":
        return cls(postgres=postgres, redis_connection=EnvVar("MLPLATFORM_REDIS_URL"))


class ReferenceDumper(yaml.SafeDumper):
    """Double-quotes strings holding `${NAME}`: an empty value then reads back as "", not as null."""


ReferenceDumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style='"' if "${" in text else None
    ),
)


def feast_serve_command(repo: Path, host: str, port: int, workers: int = 1) -> list[str]:
    """`feast serve` on the feature_store.yaml in `repo` (see `write_serving_repo`), as argv.

    `--max-requests 0`: Feast's default recycles a worker every 1,000 requests, and the request that
    meets the restart waits for a whole new worker (~900 ms measured); a replica is restarted by its
    orchestrator, not by request count. No access log: one line per lookup is noise at serving rates."""
    feast = Path(sys.executable).parent / "feast"  # the Feast installed beside this interpreter
    serve = ["serve", "-h", host, "-p", str(port), "--workers", str(workers)]
    return [str(feast), "-c", str(repo), *serve, "--max-requests", "0", "--no-access-log"]


def registry_url(connection: dict) -> str:
    """The SQL registry's SQLAlchemy URL (psycopg 3), from the same settings as the offline store.

    Built as text so `${NAME}` references survive into a file; values are URL-quoted."""
    from urllib.parse import quote

    def part(setting) -> str:
        text = str(setting)
        return text if text.startswith("${") else quote(text, safe="")

    password = connection["password"]
    login = part(connection["user"]) + (f":{part(password)}" if str(password) else "")
    return (
        f"postgresql+psycopg://{login}@{part(connection['host'])}:{part(connection['port'])}/"
        f"{part(connection['database'])}?sslmode={part(connection['sslmode'])}"
    )
