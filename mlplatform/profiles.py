"""The one place that decides which services back the platform.

`MLPLATFORM_PROFILE` picks the profile (default `local`); every asset receives typed resources and
never asks which profile it runs under.
"""

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from dagster import ConfigurableResource, EnvVar, ExecutorDefinition

from mlplatform.resources import (
    DuckDBWarehouse,
    JsonlAlertSink,
    LandingZone,
    LocalFeastFeatureStore,
    ModelRegistry,
    MonitoringSettings,
    PostgresConnection,
    PostgresRedisFeastFeatureStore,
    PostgresWarehouse,
    PredictionLog,
    ServingSettings,
    WebhookAlertSink,
)
from mlplatform.resources.gates import default_gate_bounds
from mlplatform.settings import DBT_PROJECT_DIR, state_dir
from mlplatform.streaming.settings import STREAM_REDIS_URL_ENV_VAR, StreamSettings
from mlplatform.training.spec import load_specs

if TYPE_CHECKING:  # dagster-dbt: paid only where dbt runs
    from mlplatform.resources.dbt_command import DbtCommand

PROFILE_ENV_VAR = "MLPLATFORM_PROFILE"
EXECUTOR_ENV_VAR = "MLPLATFORM_EXECUTOR"
PROMOTION_POLICY_ENV_VAR = "MLPLATFORM_PROMOTION_POLICY"
PROFILES = ("local", "prod")


def active_profile() -> str:
    profile = os.environ.get(PROFILE_ENV_VAR, "local")
    if profile not in PROFILES:
        raise ValueError(f"{PROFILE_ENV_VAR}={profile!r} is not a known profile; choose one of {PROFILES}")
    return profile


def promotion_policy() -> Literal["spec", "auto", "manual"]:
    """auto: gates suffice; manual: a reviewer approves each champion (`mlplatform approve`). Each model
    spec's `promotion` unless the deployment sets MLPLATFORM_PROMOTION_POLICY for every model."""
    policy = os.environ.get(PROMOTION_POLICY_ENV_VAR, "spec")
    if policy == "spec":
        return "spec"
    if policy == "auto":
        return "auto"
    if policy == "manual":
        return "manual"
    raise ValueError(f"{PROMOTION_POLICY_ENV_VAR}={policy!r}: choose spec, auto or manual")


def warehouse_kind() -> str:
    """The warehouse technology, shown as a `kind` on the assets that write to it."""
    return {"local": "duckdb", "prod": "postgres"}[active_profile()]


def local_resources(state: Path) -> dict[str, ConfigurableResource]:
    """Embedded: a DuckDB file, files on disk, nothing to start."""
    return {
        **file_resources(state),
        "warehouse": DuckDBWarehouse(
            path=str(state / "warehouse.duckdb"), feature_export_dir=str(state / "feast" / "data")
        ),
        "feature_store": LocalFeastFeatureStore(state_dir=str(state)),
        "model_registry": ModelRegistry(
            tracking_uri=f"sqlite:///{state / 'mlflow' / 'mlflow.db'}",
            artifact_root=str(state / "mlflow" / "artifacts"),
            audit_log=str(state / "audit" / "model_registry.jsonl"),
            promotion_policy=promotion_policy(),
        ),
        "alerts": JsonlAlertSink(path=str(state / "alerts" / "alerts.jsonl")),
        # streaming needs a Redis in every profile: the local one unless the variable says otherwise
        "streaming": StreamSettings(
            redis_url=os.environ.get(STREAM_REDIS_URL_ENV_VAR, "redis://127.0.0.1:6379/0"),
            health_log_dir=str(state / "streaming"),
        ),
    }


def prod_resources(state: Path) -> dict[str, ConfigurableResource]:
    """Services: Postgres (warehouse, Feast offline store and registry), Redis (online features), an
    MLflow tracking server, a webhook for alerts. Hosts and secrets come only from the environment
    (MLPLATFORM_PG_HOST/PORT/USER/PASSWORD/DATABASE, MLPLATFORM_REDIS_URL, MLFLOW_TRACKING_URI,
    MLPLATFORM_ALERT_WEBHOOK_URL). What still lives in files (landing zone, quarantine, audit trail,
    prediction log, routing policy) is under the state folder, a mounted volume in Kubernetes."""
    postgres = PostgresConnection.from_env()
    return {
        **file_resources(state),
        "warehouse": PostgresWarehouse(postgres=postgres),
        "feature_store": PostgresRedisFeastFeatureStore.from_env(postgres),
        "model_registry": ModelRegistry(
            tracking_uri=EnvVar("MLFLOW_TRACKING_URI"),
            audit_log=str(state / "audit" / "model_registry.jsonl"),
            promotion_policy=promotion_policy(),
        ),
        "alerts": WebhookAlertSink(url=EnvVar("MLPLATFORM_ALERT_WEBHOOK_URL")),
        "streaming": StreamSettings(
            redis_url=EnvVar(STREAM_REDIS_URL_ENV_VAR), health_log_dir=str(state / "streaming")
        ),
    }


def file_resources(state: Path) -> dict[str, ConfigurableResource]:
    """What every profile keeps as files under the state folder, and settings that do not vary."""
    return {
        "landing_zone": LandingZone(
            landing_dir=str(state / "landing"), quarantine_dir=str(state / "quarantine")
        ),
        "monitoring": MonitoringSettings(report_dir=str(state / "reports")),
        **default_gate_bounds(list(load_specs().values())),
        "prediction_log": PredictionLog(directory=str(state / "predictions")),
        "serving": ServingSettings(routing_file=str(state / "serving" / "routing.json")),
    }


def dbt_resource(target: str) -> "DbtCommand":
    """The one dbt project, run against `target` of dbt_project/profiles.yml."""
    from mlplatform.resources.dbt_command import dbt_command

    return dbt_command(str(DBT_PROJECT_DIR), profiles_dir=str(DBT_PROJECT_DIR), target=target)


def run_executor() -> ExecutorDefinition:
    """Where a run's steps execute: in the run's process (default: one code-location load per run), in
    one process per step (`MLPLATFORM_EXECUTOR=multiprocess`), or one Kubernetes pod per step
    (`MLPLATFORM_EXECUTOR=k8s`, set in deploy/k8s/config.yaml), so each asset gets its own pod size."""
    from dagster import in_process_executor, multiprocess_executor

    executor = os.environ.get(EXECUTOR_ENV_VAR, "in_process")
    if executor == "k8s":
        from dagster_k8s import k8s_job_executor  # the kubernetes client costs seconds to import

        return k8s_job_executor
    if executor == "multiprocess":
        return forking(multiprocess_executor)
    if executor != "in_process":
        raise ValueError(f"{EXECUTOR_ENV_VAR}={executor!r}: choose in_process, multiprocess or k8s")
    return in_process_executor


def forking(multiprocess_executor: ExecutorDefinition) -> ExecutorDefinition:
    """Dagster's multiprocess executor with each step forked from a server process that imported the code
    location once (start method `forkserver`), instead of a new interpreter importing it again for every
    step (its default, `spawn`; the step-isolation test took 74-84 core-seconds with it, 63-73 forked).
    Each step still runs in a process of its own. A run sets `max_concurrent` as before."""
    import multiprocessing

    from dagster import Field

    if "forkserver" not in multiprocessing.get_all_start_methods():  # Windows
        return multiprocess_executor
    return multiprocess_executor.configured(
        lambda config: {**config, "start_method": {"forkserver": {}}},
        name="multiprocess",
        config_schema={"max_concurrent": Field(int, is_required=False)},
    )


def build_resources(
    profile: str | None = None, state: Path | None = None, *, with_dbt: bool = True
) -> dict[str, ConfigurableResource]:
    """The resources of `profile` (the active one by default) on `state`. `with_dbt=False` leaves out the
    dbt CLI, whose import costs seconds: for commands and servers that never run dbt."""
    profile = profile or active_profile()
    builders = {"local": local_resources, "prod": prod_resources}
    resources = builders[profile](state or state_dir())
    if with_dbt:
        resources["dbt"] = dbt_resource(target=profile)  # dbt_project/profiles.yml names its targets so
    return resources
