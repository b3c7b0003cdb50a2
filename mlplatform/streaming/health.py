"""`streaming_health`: a day of stream scoring from the consumers' health log (one line per batch)."""

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AutomationCondition,
    MaterializeResult,
    asset,
)

from mlplatform.ingestion.assets import DAILY_PARTITIONS
from mlplatform.monitoring.assets import alert_on, graded_check
from mlplatform.resources import AlertSink, PredictionLog
from mlplatform.streaming.settings import StreamSettings

if TYPE_CHECKING:
    import pandas as pd

STREAMING_HEALTH = AssetKey("streaming_health")

# the day that just ended (the partitions end today, still filling), once at 02:30 UTC
STREAM_BOUNDS = StreamSettings()  # the defaults, quoted in the checks' descriptions; runs use the resource
NIGHTLY_TICK: AutomationCondition = AutomationCondition.cron_tick_passed("30 2 * * *", "UTC")
YESTERDAY_NIGHTLY = (
    AutomationCondition.in_latest_time_window(timedelta(days=2))
    & ~AutomationCondition.in_latest_time_window(timedelta(days=1))
    & NIGHTLY_TICK.since_last_handled()
).with_label("yesterday_nightly")


def stream_figures(batches: "pd.DataFrame") -> dict[str, float]:
    """Volume, outcomes, enqueue-to-result latency and lag of a day of batches."""
    import pandas as pd

    if batches.empty:
        return {"messages": 0}
    scored, dead = int(batches["scored"].sum()), int(batches["dead_letters"].sum())
    messages = scored + dead + int(batches["duplicates"].sum())
    latencies = pd.Series([ms for batch in batches["latencies_ms"] for ms in batch], dtype=float)
    return {
        "messages": messages,
        "scored": scored,
        "duplicates": int(batches["duplicates"].sum()),
        "dead_letters": dead,
        "dead_letter_rate": dead / messages if messages else 0.0,
        "reclaimed": int(batches["reclaimed"].sum()),
        "batches": len(batches),
        "consumers": int(batches["consumer"].nunique()),
        "latency_p50_ms": float(latencies.quantile(0.5)) if len(latencies) else float("nan"),
        "latency_p99_ms": float(latencies.quantile(0.99)) if len(latencies) else float("nan"),
        "max_lag": int(batches["lag"].max()),
    }


def graded_checks(
    key: AssetKey,
    figures: dict[str, float],
    bounds: dict[str, tuple[str, float, float]],
    day: str,
    quiet: str | None,
    alerts: AlertSink,
) -> list[AssetCheckResult]:
    """One graded check per `check -> (figure, warn, error)` of a day's figures, judged failures sent to
    the alert sink; all not judged when `quiet` gives the reason (a day without traffic)."""
    return [
        alert_on(
            graded_check(
                key,
                check,
                figure,
                float(figures.get(figure, float("nan"))),
                warn,
                error,
                day=day,
                unjudged_reason=quiet,
            ),
            alerts,
            day,
            figure,
        )
        for check, (figure, warn, error) in bounds.items()
    ]


@asset(
    key=STREAMING_HEALTH,
    group_name="monitoring",
    kinds={"redis"},
    owners=["team:ml"],
    partitions_def=DAILY_PARTITIONS,
    automation_condition=YESTERDAY_NIGHTLY,
    check_specs=[
        AssetCheckSpec(
            "stream_latency_p99",
            asset=STREAMING_HEALTH,
            partitions_def=DAILY_PARTITIONS,
            description="p99 enqueue-to-result of the day's messages: WARN above "
            f"{STREAM_BOUNDS.latency_p99_warn_ms:g} ms, ERROR above "
            f"{STREAM_BOUNDS.latency_p99_error_ms:g} ms; not judged on a day without stream traffic.",
        ),
        AssetCheckSpec(
            "dead_letter_rate",
            asset=STREAMING_HEALTH,
            partitions_def=DAILY_PARTITIONS,
            description="Share of the day's messages dead-lettered: WARN above "
            f"{STREAM_BOUNDS.dead_letter_rate_warn:.1%}, ERROR above "
            f"{STREAM_BOUNDS.dead_letter_rate_error:.1%}; not judged on a day without stream traffic.",
        ),
    ],
    description=(
        "The day's stream scoring (`mlplatform stream`) from the consumers' health log: messages scored, "
        "duplicates, dead letters, reclaimed messages, enqueue-to-result latency p50/p99 and the largest lag."
    ),
)
def streaming_health(
    context: AssetExecutionContext, streaming: StreamSettings, alerts: AlertSink
) -> MaterializeResult:
    day = context.partition_key
    figures = stream_figures(PredictionLog(directory=streaming.health_log_dir).read(day))
    bounds = {
        "stream_latency_p99": (
            "latency_p99_ms",
            streaming.latency_p99_warn_ms,
            streaming.latency_p99_error_ms,
        ),
        "dead_letter_rate": (
            "dead_letter_rate",
            streaming.dead_letter_rate_warn,
            streaming.dead_letter_rate_error,
        ),
    }
    quiet = None if figures["messages"] else f"no stream traffic on {day}"
    checks = graded_checks(STREAMING_HEALTH, figures, bounds, day, quiet, alerts)
    return MaterializeResult(
        metadata={k: round(float(v), 4) for k, v in figures.items()}
        | {"log": str(Path(streaming.health_log_dir))},
        check_results=checks,
    )


streaming_assets = [streaming_health]
