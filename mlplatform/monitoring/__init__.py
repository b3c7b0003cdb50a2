from mlplatform.monitoring.assets import monitoring_assets
from mlplatform.monitoring.sensors import run_failure_alert

__all__ = ["monitoring_assets", "run_failure_alert"]
