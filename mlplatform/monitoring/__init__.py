from mlplatform.monitoring.assets import (
    daily_monitoring_assets,
    delivery_metrics,
    monitoring_assets,
    nightly_monitoring,
    nightly_monitoring_job,
)
from mlplatform.monitoring.retraining import build_retrain_sensor
from mlplatform.monitoring.sensors import run_failure_alert

__all__ = [
    "build_retrain_sensor",
    "daily_monitoring_assets",
    "delivery_metrics",
    "monitoring_assets",
    "nightly_monitoring",
    "nightly_monitoring_job",
    "run_failure_alert",
]
