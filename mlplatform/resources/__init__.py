from mlplatform.resources.alerts import AlertSink, JsonlAlertSink, WebhookAlertSink
from mlplatform.resources.feature_store import (
    FeastFeatureStore,
    LocalFeastFeatureStore,
    PostgresRedisFeastFeatureStore,
)
from mlplatform.resources.gates import GateBounds
from mlplatform.resources.landing import LandingZone
from mlplatform.resources.model_registry import ModelRegistry
from mlplatform.resources.monitoring import MonitoringSettings
from mlplatform.resources.postgres import PostgresConnection
from mlplatform.resources.prediction_log import PredictionLog
from mlplatform.resources.serving import ServingSettings
from mlplatform.resources.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse

__all__ = [
    "AlertSink",
    "DuckDBWarehouse",
    "FeastFeatureStore",
    "GateBounds",
    "JsonlAlertSink",
    "LandingZone",
    "LocalFeastFeatureStore",
    "ModelRegistry",
    "MonitoringSettings",
    "PostgresConnection",
    "PostgresRedisFeastFeatureStore",
    "PostgresWarehouse",
    "PredictionLog",
    "ServingSettings",
    "Warehouse",
    "WebhookAlertSink",
]
