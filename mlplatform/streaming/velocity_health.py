"""`velocity_freshness`: a day of velocity pushes from the pusher's health log (one line per batch).

How fresh the velocity features were: the push lag (a transaction's enqueue on the input stream to its
row written to both stores and readable online, on the Redis server's clock) and the share of stale
read-back probes (right after a push, the online store did not return the values just pushed). Same
shape as `streaming_health`: graded checks, sent to the alert sink when they fail, not judged on a day
without pushes.
"""

from pathlib import Path
from typing import TYPE_CHECKING

from dagster import AssetCheckSpec, AssetExecutionContext, AssetKey, MaterializeResult, asset

from mlplatform.ingestion.assets import DAILY_PARTITIONS
from mlplatform.resources import AlertSink, PredictionLog
from mlplatform.streaming.health import STREAM_BOUNDS, YESTERDAY_NIGHTLY, graded_checks
from mlplatform.streaming.settings import StreamSettings

if TYPE_CHECKING:
    import pandas as pd

VELOCITY_FRESHNESS = AssetKey("velocity_freshness")


def push_figures(batches: "pd.DataFrame") -> dict[str, float]:
    """Volume, push lag and stale probe reads of a day of pusher batches."""
    import pandas as pd

    if batches.empty:
        return {"pushed": 0}
    lags = pd.Series([ms for batch in batches["lag_ms"] for ms in batch], dtype=float)
    probes, stale = int(batches["probes"].sum()), int(batches["stale_reads"].sum())
    return {
        "messages": int(batches["messages"].sum()),
        "pushed": int(batches["pushed"].sum()),
        "duplicates": int(batches["duplicates"].sum()),
        "invalid": int(batches["invalid"].sum()),
        "batches": len(batches),
        "push_lag_p50_ms": float(lags.quantile(0.5)) if len(lags) else float("nan"),
        "push_lag_p99_ms": float(lags.quantile(0.99)) if len(lags) else float("nan"),
        "probes": probes,
        "stale_reads": stale,
        "stale_read_share": stale / probes if probes else float("nan"),
        "max_customers_in_state": int(batches["customers_in_state"].max()),
    }


@asset(
    key=VELOCITY_FRESHNESS,
    group_name="monitoring",
    kinds={"redis", "feast"},
    owners=["team:ml"],
    partitions_def=DAILY_PARTITIONS,
    automation_condition=YESTERDAY_NIGHTLY,
    check_specs=[
        AssetCheckSpec(
            "push_lag_p99",
            asset=VELOCITY_FRESHNESS,
            partitions_def=DAILY_PARTITIONS,
            description="p99 of the day's enqueue-to-readable push lag: WARN above "
            f"{STREAM_BOUNDS.push_lag_p99_warn_ms:g} ms, ERROR above "
            f"{STREAM_BOUNDS.push_lag_p99_error_ms:g} ms; not judged on a day without pushes.",
        ),
        AssetCheckSpec(
            "stale_read_share",
            asset=VELOCITY_FRESHNESS,
            partitions_def=DAILY_PARTITIONS,
            description="Share of read-back probes that did not return the values just pushed: WARN above "
            f"{STREAM_BOUNDS.stale_read_share_warn:.1%}, ERROR above "
            f"{STREAM_BOUNDS.stale_read_share_error:.1%}; not judged on a day without probes.",
        ),
    ],
    description=(
        "The day's velocity pushes (`mlplatform velocity-push`) from the pusher's health log: transactions "
        "pushed, duplicates, invalid messages, push lag p50/p99 and stale read-back probes."
    ),
)
def velocity_freshness(
    context: AssetExecutionContext, streaming: StreamSettings, alerts: AlertSink
) -> MaterializeResult:
    day = context.partition_key
    figures = push_figures(PredictionLog(directory=streaming.velocity_log_dir).read(day))
    bounds = {
        "push_lag_p99": ("push_lag_p99_ms", streaming.push_lag_p99_warn_ms, streaming.push_lag_p99_error_ms),
        "stale_read_share": (
            "stale_read_share",
            streaming.stale_read_share_warn,
            streaming.stale_read_share_error,
        ),
    }
    quiet = None if figures["pushed"] else f"no velocity pushes on {day}"
    checks = graded_checks(VELOCITY_FRESHNESS, figures, bounds, day, quiet, alerts)
    return MaterializeResult(
        metadata={k: round(float(v), 4) for k, v in figures.items()}
        | {"log": str(Path(streaming.velocity_log_dir))},
        check_results=checks,
    )


velocity_assets = [velocity_freshness]
