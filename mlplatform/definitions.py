"""The one Definitions object: every asset, check, resource, sensor and schedule of mlplatform."""

from dagster import (
    AssetsDefinition,
    AssetSelection,
    AssetSpec,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    Definitions,
    define_asset_job,
)

from mlplatform.features import feature_assets, feature_checks, online_feature_assets
from mlplatform.inference import (
    batch_predictions,
    batch_scoring_job,
    external_outputs,
    inference_assets,
    nightly_batch_scoring,
)
from mlplatform.ingestion import build_landing_zone_sensor, external_sources, ingestion_assets
from mlplatform.monitoring import (
    daily_monitoring_assets,
    delivery_metrics,
    monitoring_assets,
    nightly_monitoring,
    nightly_monitoring_job,
    retrain_fraud_model,
    retrain_sensor,
    run_failure_alert,
)
from mlplatform.profiles import build_resources, run_executor
from mlplatform.streaming.health import streaming_assets
from mlplatform.streaming.velocity_health import velocity_assets
from mlplatform.training import (
    model_assets,
    model_checks,
    review_fraud_model,
    rollback_fraud_model,
    training_assets,
    training_checks,
)
from mlplatform.transform import dbt_models

all_assets: list[AssetsDefinition | AssetSpec] = [
    *external_sources,
    *ingestion_assets,
    dbt_models,
    *feature_assets,
    *training_assets,
    *model_assets,
    *inference_assets,
    *monitoring_assets,
    delivery_metrics,
    *streaming_assets,
    *velocity_assets,
    *external_outputs,
]
all_checks = [*feature_checks, *training_checks, *model_checks]

# A landed day in one run: its files, then the marts and the online store, then its scoring and monitoring
landing_zone_sensor = build_landing_zone_sensor(
    refresh=[*dbt_models.keys, *(a.key for a in online_feature_assets)],
    day_chain=[batch_predictions.key, *(a.key for a in daily_monitoring_assets)],
)

# Named jobs for the stages between landing and scoring (`make demo` runs them; the UI can run them again)
refresh_features_and_model = define_asset_job(
    "refresh_features_and_model",
    selection=AssetSelection.all()
    - AssetSelection.assets(
        *ingestion_assets, *inference_assets, *monitoring_assets, *streaming_assets, *velocity_assets
    ),
    description="Everything between the raw tables and the champion: the dbt marts, the Feast registry and "
    "online store, the training set, a candidate model with its blocking gates, the promotion, DORA metrics.",
)
monitor_day = define_asset_job(
    "monitor_day",
    selection=AssetSelection.assets(*monitoring_assets),
    description="A day's monitoring: drift, delayed-label performance, serving health and skew, the report.",
)

# declarative automation evaluated by the daemon, on from the start so the loop runs by itself
automation = AutomationConditionSensorDefinition(
    "automation",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Evaluates every asset's automation condition (follow upstream, new days, new scores).",
)


def build_definitions(resources: dict) -> Definitions:
    """Everything, bound to `resources` (tests bind it to their own state folder)."""
    return Definitions(
        assets=all_assets,
        asset_checks=all_checks,
        jobs=[
            rollback_fraud_model,
            review_fraud_model,
            retrain_fraud_model,
            batch_scoring_job,
            nightly_monitoring_job,
            refresh_features_and_model,
            monitor_day,
        ],
        schedules=[nightly_batch_scoring, nightly_monitoring],
        sensors=[landing_zone_sensor, retrain_sensor, run_failure_alert, automation],
        resources=resources,
        executor=run_executor(),
    )


defs = build_definitions(build_resources())
