"""Alerts on failure: every failed run goes to the alert sink, whatever launched it.

`monitor_all_code_locations=True`: by default a run failure sensor only sees runs launched from its own
code location (the UI, sensors, schedules); runs started from the CLI (`dagster asset materialize -m ...`)
or marked failed by run monitoring after their process died carry no code-location origin and would be
ignored silently.
"""

from dagster import DefaultSensorStatus, RunFailureSensorContext, run_failure_sensor

from mlplatform.resources.alerts import AlertSink


@run_failure_sensor(
    default_status=DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=True,
    description="Sends every failed run (job, failed steps, error, assets) to the alert sink.",
)
def run_failure_alert(context: RunFailureSensorContext, alerts: AlertSink) -> None:
    run = context.dagster_run
    failed_steps = [event.step_key for event in context.get_step_failure_events()]
    alerts.send(
        "run_failure",
        f"run {run.run_id[:8]} of {run.job_name} failed"
        + (f" in {', '.join(failed_steps)}" if failed_steps else ""),
        run_id=run.run_id,
        job=run.job_name,
        failed_steps=failed_steps,
        error=context.failure_event.message,
        assets=sorted(key.to_user_string() for key in run.asset_selection or []),
        partition=run.tags.get("dagster/partition"),
    )
