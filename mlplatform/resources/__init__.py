from mlplatform.resources.alerts import AlertSink, JsonlAlertSink, WebhookAlertSink
from mlplatform.resources.feature_store import FeastFeatureStore
from mlplatform.resources.landing import LandingZone
from mlplatform.resources.model_registry import ModelRegistry
from mlplatform.resources.monitoring import MonitoringSettings
from mlplatform.resources.prediction_log import PredictionLog
from mlplatform.resources.serving import ServingSettings
from mlplatform.resources.warehouse import DuckDBWarehouse, Warehouse

__all__ = [
    "AlertSink",
    "DuckDBWarehouse",
    "FeastFeatureStore",
    "JsonlAlertSink",
    "LandingZone",
    "ModelRegistry",
    "MonitoringSettings",
    "PredictionLog",
    "ServingSettings",
    "Warehouse",
    "WebhookAlertSink",
]
