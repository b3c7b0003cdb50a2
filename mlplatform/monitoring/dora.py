"""DORA metrics of the model delivery: how often a new champion ships, how long data takes to reach one,
how often a promotion is undone, and how fast. Plain functions over the registry's audit trail."""

from datetime import datetime, timedelta


def dora_metrics(audit: list[dict], landed: list[datetime], window: timedelta) -> dict[str, float]:
    """`audit`: the registry's records (`at`, `action` promote/rollback, `version`, `replaced`), oldest
    first; `landed`: when data partitions were loaded; figures cover the `window` up to the newest event."""
    events = sorted(audit, key=lambda e: e["at"])
    if not events:
        return {"deployments": 0}
    end = max(datetime.fromisoformat(e["at"]) for e in events)
    start = end - window
    promotions = [e for e in events if e["action"] == "promote" and datetime.fromisoformat(e["at"]) >= start]
    rollbacks = [e for e in events if e["action"] == "rollback" and datetime.fromisoformat(e["at"]) >= start]

    lead_times, previous = [], start
    for promotion in promotions:
        at = datetime.fromisoformat(promotion["at"])
        new_data = [t for t in landed if previous < t <= at]
        if new_data:  # from the first data that landed after the previous release to this release
            lead_times.append((at - min(new_data)).total_seconds() / 3600)
        previous = at

    undone = {e["replaced"]: datetime.fromisoformat(e["at"]) for e in rollbacks}
    failed = [p for p in promotions if p["version"] in undone]
    recoveries = [
        (undone[p["version"]] - datetime.fromisoformat(p["at"])).total_seconds() / 3600 for p in failed
    ]
    return {
        "deployments": len(promotions),
        "deployments_per_week": len(promotions) / (window / timedelta(weeks=1)),
        "lead_time_hours_median": sorted(lead_times)[len(lead_times) // 2] if lead_times else float("nan"),
        "change_failure_rate": len(failed) / len(promotions) if promotions else float("nan"),
        "time_to_restore_hours_mean": sum(recoveries) / len(recoveries) if recoveries else float("nan"),
    }
