from mlplatform.monitoring.retraining import build_retrain_sensor
from mlplatform.monitoring.sensors import run_failure_alert

__all__ = ["build_retrain_sensor", "run_failure_alert"]
