"""The one place that decides which services back the platform.

`MLPLATFORM_PROFILE` picks the profile (default `local`); every asset receives typed resources and
never asks which profile it runs under.
"""

import os
import sys
from pathlib import Path

from dagster import ConfigurableResource
from dagster_dbt import DbtCliResource

from mlplatform.resources import (
    DuckDBWarehouse,
    FeastFeatureStore,
    JsonlAlertSink,
    LandingZone,
    ModelRegistry,
    MonitoringSettings,
    PredictionLog,
    ServingSettings,
)
from mlplatform.settings import DBT_PROJECT_DIR, state_dir

PROFILE_ENV_VAR = "MLPLATFORM_PROFILE"
PROFILES = ("local",)
# the dbt installed beside this interpreter, so runs do not depend on PATH
DBT_EXECUTABLE = str(Path(sys.executable).parent / "dbt")


def active_profile() -> str:
    profile = os.environ.get(PROFILE_ENV_VAR, "local")
    if profile not in PROFILES:
        raise ValueError(f"{PROFILE_ENV_VAR}={profile!r} is not a known profile; choose one of {PROFILES}")
    return profile


def warehouse_kind() -> str:
    """The warehouse technology, shown as a `kind` on the assets that write to it."""
    return {"local": "duckdb"}[active_profile()]


def local_resources(state: Path) -> dict[str, ConfigurableResource]:
    """Embedded: a DuckDB file, files on disk, nothing to start."""
    return {
        "landing_zone": LandingZone(
            landing_dir=str(state / "landing"), quarantine_dir=str(state / "quarantine")
        ),
        "warehouse": DuckDBWarehouse(
            path=str(state / "warehouse.duckdb"), feature_export_dir=str(state / "feast" / "data")
        ),
        "feature_store": FeastFeatureStore(state_dir=str(state)),
        "model_registry": ModelRegistry(
            tracking_uri=f"sqlite:///{state / 'mlflow' / 'mlflow.db'}",
            artifact_root=str(state / "mlflow" / "artifacts"),
            audit_log=str(state / "audit" / "model_registry.jsonl"),
        ),
        "alerts": JsonlAlertSink(path=str(state / "alerts" / "alerts.jsonl")),
        "monitoring": MonitoringSettings(report_dir=str(state / "reports")),
        "prediction_log": PredictionLog(directory=str(state / "predictions")),
        "serving": ServingSettings(routing_file=str(state / "serving" / "routing.json")),
        "dbt": DbtCliResource(
            project_dir=str(DBT_PROJECT_DIR),
            profiles_dir=str(DBT_PROJECT_DIR),
            target="local",
            dbt_executable=DBT_EXECUTABLE,
        ),
    }


def build_resources(profile: str | None = None, state: Path | None = None) -> dict[str, ConfigurableResource]:
    profile = profile or active_profile()
    builders = {"local": local_resources}
    return builders[profile](state or state_dir())
