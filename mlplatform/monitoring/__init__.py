from mlplatform.monitoring.assets import (
    daily_monitoring_assets,
    delivery_metrics,
    monitoring_assets,
    nightly_monitoring,
    nightly_monitoring_job,
)
from mlplatform.monitoring.retraining import retrain_fraud_model, retrain_sensor
from mlplatform.monitoring.sensors import run_failure_alert

__all__ = [
    "daily_monitoring_assets",
    "delivery_metrics",
    "monitoring_assets",
    "nightly_monitoring",
    "nightly_monitoring_job",
    "retrain_fraud_model",
    "retrain_sensor",
    "run_failure_alert",
]
