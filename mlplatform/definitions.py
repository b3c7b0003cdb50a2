"""The one Definitions object: every asset, check, resource, sensor and schedule of mlplatform, with each
model declared in models/ built into its chain by the model factory."""

from pathlib import Path

from dagster import (
    AssetsDefinition,
    AssetSelection,
    AssetSpec,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    Definitions,
    define_asset_job,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from mlplatform.features import feature_assets, feature_checks, online_feature_assets
from mlplatform.inference import build_batch_scoring, build_prediction_log
from mlplatform.ingestion import build_landing_zone_sensor, external_sources, ingestion_assets
from mlplatform.model_factory import ModelDefinitions, build_models
from mlplatform.monitoring import run_failure_alert
from mlplatform.process_exit import exit_without_teardown
from mlplatform.profiles import build_resources, run_executor
from mlplatform.resources.gates import default_gate_bounds
from mlplatform.streaming.health import streaming_assets
from mlplatform.streaming.velocity_health import velocity_assets
from mlplatform.transform import dbt_models

platform_assets: list[AssetsDefinition | AssetSpec] = [
    *external_sources,
    *ingestion_assets,
    dbt_models,
    *feature_assets,
    *streaming_assets,
    *velocity_assets,
]
platform_checks = [*feature_checks]

models = build_models()  # the models declared in models/, by name
all_assets = [
    *platform_assets,
    build_prediction_log([m.spec for m in models.values()]),
    *(a for m in models.values() for a in m.assets),
]
all_checks = [*platform_checks, *(c for m in models.values() for c in m.checks)]


def batch_assets(chains: list[ModelDefinitions]) -> list[AssetsDefinition]:
    return [m.batch for m in chains if m.batch is not None]


def daily_model_assets(chains: list[ModelDefinitions]) -> list[AssetsDefinition]:
    return [a for m in chains for a in m.daily]


def build_landing_sensor(chains: list[ModelDefinitions]):
    """A landed day in one run: its files, then the marts and the online store, then each model's scoring
    of the day and its monitoring."""
    return build_landing_zone_sensor(
        refresh=[*dbt_models.keys, *(a.key for a in online_feature_assets)],
        day_chain=[a.key for a in daily_model_assets(chains)],
    )


landing_zone_sensor = build_landing_sensor(list(models.values()))


def build_stage_jobs(chains: list[ModelDefinitions]) -> list[UnresolvedAssetJobDefinition]:
    """Named jobs for the stages between landing and scoring (`make demo` runs them; the UI can run them
    again): everything unpartitioned between the raw tables and the champions, and a day's monitoring."""
    per_day = [a for m in chains for a in m.assets if a.partitions_def is not None]  # scores, monitoring
    monitoring = [a for m in chains for a in m.assets if a.group_names_by_key[a.key] == "monitoring"]
    refresh = define_asset_job(
        "refresh_features_and_model",
        selection=AssetSelection.all()
        - AssetSelection.assets(*ingestion_assets, *per_day, *streaming_assets, *velocity_assets),
        description="Everything between the raw tables and the champions: the dbt marts, the Feast registry "
        "and online store, each model's training set, a candidate with its blocking gates, its promotion, "
        "DORA metrics.",
    )
    monitor_day = define_asset_job(
        "monitor_day",
        selection=AssetSelection.assets(*(a for a in monitoring if a.partitions_def is not None)),
        description="A day's monitoring, for each model: drift, delayed-label performance, serving health "
        "and skew, quality and serving SLOs, the report.",
    )
    return [refresh, monitor_day]


# declarative automation evaluated by the daemon, on from the start so the loop runs by itself
automation = AutomationConditionSensorDefinition(
    "automation",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Evaluates every asset's automation condition (follow upstream, new days, new scores).",
)


def build_definitions(resources: dict, models_dir: Path | None = None) -> Definitions:
    """Everything, bound to `resources` (tests bind it to their own state folder), with the models declared
    in models/ (or `models_dir`). A model's gate bounds are its spec's unless `resources` sets them."""
    chains = list((build_models(models_dir) if models_dir else models).values())
    batch_scoring, nightly_batch_scoring = build_batch_scoring(batch_assets(chains))
    return Definitions(
        assets=[
            *platform_assets,
            build_prediction_log([m.spec for m in chains]),
            *(a for m in chains for a in m.assets),
        ],
        asset_checks=[*platform_checks, *(c for m in chains for c in m.checks)],
        jobs=[
            *(j for m in chains for j in m.jobs),
            batch_scoring,
            *build_stage_jobs(chains),
        ],
        schedules=[nightly_batch_scoring, *(s for m in chains for s in m.schedules)],
        sensors=[
            landing_zone_sensor if models_dir is None else build_landing_sensor(chains),
            *(m.retrain_sensor for m in chains),
            run_failure_alert,
            automation,
        ],
        resources={**default_gate_bounds(m.spec for m in chains), **resources},
        executor=run_executor(),
    )


defs = build_definitions(build_resources())
# every process that loads the code location (commands, run workers, step processes, code servers) ends
# once its work and exit handlers are done, without the interpreter's teardown
exit_without_teardown()
