"""Declarative automation shared by the assets that follow upstream data."""

from datetime import timedelta

from dagster import (
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    AutomationCondition,
    RunRequest,
    ScheduleEvaluationContext,
)

TRIGGER_TAG = "mlplatform/trigger"  # what started a run: a sensor's name, "demo", ...

# `AutomationCondition.eager()` also waits for every upstream partition to exist, which an unpartitioned
# model over daily partitions never sees (old days are simply not landed). So: run when an upstream
# asset updated, once upstream blocking checks pass, never while upstream or itself is running.
FOLLOW_UPSTREAM = (
    (AutomationCondition.newly_missing() | AutomationCondition.any_deps_updated()).since_last_handled()
    & AutomationCondition.all_deps_blocking_checks_passed()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("follow_upstream")


def follow_updates_of(*upstream: AssetsDefinition | AssetKey, label: str) -> AutomationCondition:
    """Run a partition once the same partition of one of `upstream` updated (an unpartitioned one updating
    counts for every partition), its upstream blocking checks passed, and nothing involved is running."""
    return (
        AutomationCondition.any_deps_match(AutomationCondition.newly_updated())
        .allow(AssetSelection.assets(*upstream))
        .since_last_handled()
        & AutomationCondition.all_deps_blocking_checks_passed()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label(label)


def previous_day_run(context: ScheduleEvaluationContext) -> RunRequest:
    """A run of the day that just ended (today's partition is still filling), once per day."""
    day = f"{context.scheduled_execution_time - timedelta(days=1):%Y-%m-%d}"
    return RunRequest(run_key=day, partition_key=day)
