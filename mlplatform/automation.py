"""Declarative automation shared by the assets that follow upstream data."""

from dagster import AutomationCondition

# `AutomationCondition.eager()` also waits for every upstream partition to exist, which an unpartitioned
# model over daily partitions never sees (old days are simply not landed). So: run when an upstream
# asset updated, once upstream blocking checks pass, never while upstream or itself is running.
FOLLOW_UPSTREAM = (
    (AutomationCondition.newly_missing() | AutomationCondition.any_deps_updated()).since_last_handled()
    & AutomationCondition.all_deps_blocking_checks_passed()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("follow_upstream")
