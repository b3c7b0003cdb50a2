from mlplatform.monitoring.sensors import run_failure_alert

__all__ = ["run_failure_alert"]
