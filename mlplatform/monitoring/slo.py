"""Quality SLOs and probation: each spec's `slo` says what its champion promises once it serves (a minimum
ROC AUC on every labelled day of its batch decisions). A day is judged once enough of its positives are
labelled; the burn is the share of judged days in the window that broke the promise, against the spec's
budget. A champion still on probation (promoted less than `probation_days` ago) whose own decisions broke
it is rolled back to the previous champion at once: audited, alerted. Self-healing, level 3 of the seeds.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    DefaultScheduleStatus,
    MaterializeResult,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    asset,
    schedule,
)

from mlplatform.automation import follow_updates_of
from mlplatform.checks import judged, not_judged
from mlplatform.ingestion.assets import DAILY_PARTITIONS
from mlplatform.monitoring.assets import store_day
from mlplatform.profiles import warehouse_kind
from mlplatform.resources import AlertSink, ModelRegistry, Warehouse
from mlplatform.resources.model_registry import CHAMPION, PREVIOUS
from mlplatform.training.registry import rollback
from mlplatform.training.spec import ModelSpec

SLO_CHECK = "quality_slo"


@dataclass(frozen=True)
class DayVerdict:
    """One day of a model's batch decisions against its quality SLO."""

    labelled: int
    positives: int
    roc_auc: float | None  # None: not judged
    served_by: str | None  # the version that took the day's decisions (the most frequent, if several)
    reason: str | None = None  # why it was not judged

    @property
    def judged(self) -> bool:
        return self.roc_auc is not None


def judge_day(scored: pd.DataFrame, label: str, min_positives: int) -> DayVerdict:
    """`scored`: the day's predictions (score, model_version) with their label (NaN: not known yet)."""
    from sklearn.metrics import roc_auc_score  # seconds to import: only when a day is judged

    served_by = str(scored["model_version"].mode().iloc[0]) if len(scored) else None
    labelled = scored.dropna(subset=[label])
    truth = labelled[label].astype(int)
    positives = int(truth.sum())
    if labelled.empty:
        return DayVerdict(0, 0, None, served_by, "no decision of the day is labelled yet")
    if positives < min_positives or positives == len(truth):
        reason = f"{positives} positives labelled, {min_positives} needed (and a negative)"
        return DayVerdict(len(labelled), positives, None, served_by, reason)
    return DayVerdict(len(labelled), positives, float(roc_auc_score(truth, labelled["score"])), served_by)


def burn(history: pd.DataFrame, min_roc_auc: float, budget: float) -> dict[str, float]:
    """Share of judged days below the SLO, and that share over the budget (1.0: the budget is spent)."""
    judged_days = history.dropna(subset=["roc_auc"])
    if judged_days.empty:
        return {"judged_days": 0, "breaching_days": 0, "burn": float("nan")}
    breaching = int((judged_days["roc_auc"] < min_roc_auc).sum())
    return {
        "judged_days": len(judged_days),
        "breaching_days": breaching,
        "burn": breaching / len(judged_days) / budget,
    }


def on_probation(registry: ModelRegistry, model: str, version: str, days: int, now: datetime) -> bool:
    """Whether `version` became champion less than `days` ago (its last promotion or approval)."""
    became = [
        e["at"]
        for e in registry.audit_trail(model)
        if e["action"] in ("promote", "approve", "rollback") and str(e.get("version")) == version
    ]
    return bool(became) and now - datetime.fromisoformat(became[-1]) < timedelta(days=days)


def build_slo(spec: ModelSpec) -> tuple[AssetsDefinition, ScheduleDefinition]:
    """The spec's quality SLO per day of its batch decisions, with probation rollback; and the nightly
    schedule that judges the day whose labels have just come in."""
    slo, name = spec.slo, f"{spec.name}_slo"
    if slo is None:
        raise ValueError(f"{spec.name} declares no slo")
    predictions = AssetKey(spec.batch_asset)
    keys = " and ".join(f"l.{key} = p.{key}" for key in [*spec.label.keys, "event_ts"])

    @asset(
        name=name,
        group_name="monitoring",
        kinds={"scikitlearn", warehouse_kind()},
        owners=spec.owners,
        partitions_def=DAILY_PARTITIONS,
        deps=[predictions, spec.label.asset],
        automation_condition=follow_updates_of(predictions, label="follow_new_scores"),
        check_specs=[
            AssetCheckSpec(
                SLO_CHECK,
                asset=name,
                description=f"ROC AUC of the day's batch decisions >= {slo.min_roc_auc} once at least "
                f"{slo.min_labelled_positives} positives are labelled (else not judged). A champion on "
                f"probation ({slo.probation_days} days after promotion) that breaks it is rolled back.",
            )
        ],
        description=(
            f"{spec.name}'s quality SLO on each day of its batch decisions, once labelled: ROC AUC against "
            f"{slo.min_roc_auc}, the burn of the last {slo.window_days} days against a budget of "
            f"{slo.budget:.0%} of judged days, and the probation rollback of a champion that breaks it "
            f"within {slo.probation_days} days of its promotion. Stored in monitoring.{name}."
        ),
    )
    def quality_slo(
        context: AssetExecutionContext, warehouse: Warehouse, model_registry: ModelRegistry, alerts: AlertSink
    ) -> MaterializeResult:
        day = context.partition_key
        if not warehouse.table_exists("inference", spec.batch_asset):
            reason = f"inference.{spec.batch_asset} holds no decision yet"
            return MaterializeResult(
                metadata={"note": reason}, check_results=[not_judged(reason, check_name=SLO_CHECK)]
            )
        scored = warehouse.read_sql(
            f"select p.score, p.model_version, l.{spec.label.column} as label "
            f"from inference.{spec.batch_asset} as p left join {spec.label.table} as l on {keys} "
            f"where p._partition_date = '{day}'"
        )
        verdict = judge_day(scored, "label", slo.min_labelled_positives)
        store_day(
            warehouse,
            name,
            pd.DataFrame(
                [
                    {
                        "labelled": verdict.labelled,
                        "positives": verdict.positives,
                        # NaN, not None, when not judged: the column is typed by the first day stored
                        "roc_auc": float("nan") if verdict.roc_auc is None else verdict.roc_auc,
                    }
                ]
            ),
            day,
        )
        history = warehouse.read_sql(
            f"select roc_auc from monitoring.{name} "
            f"where partition_date > date '{day}' - interval '{slo.window_days} days'"
        )
        action = probation_action(spec, verdict, model_registry, alerts, day)
        metadata: dict[str, Any] = {
            **burn(history, slo.min_roc_auc, slo.budget),
            "labelled": verdict.labelled,
            "served_by": str(verdict.served_by),
            "probation": action,
        }
        if not verdict.judged:
            check = not_judged(verdict.reason or "no evidence", check_name=SLO_CHECK, **metadata)
        else:
            check = judged(
                (verdict.roc_auc or 0.0) >= slo.min_roc_auc,
                check_name=SLO_CHECK,
                roc_auc=round(verdict.roc_auc or 0.0, 4),
                slo=slo.min_roc_auc,
                **metadata,
            )
        return MaterializeResult(metadata={**metadata, "roc_auc": verdict.roc_auc}, check_results=[check])

    @schedule(
        name=f"{name}_nightly",
        target=[quality_slo],
        cron_schedule="45 2 * * *",
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
    )
    def nightly(context: ScheduleEvaluationContext) -> RunRequest:
        """At 02:45 UTC, the day whose labels have just come in (the spec's label delay back)."""
        day = context.scheduled_execution_time - timedelta(days=1 + slo.label_delay_days)
        return RunRequest(run_key=f"{day:%Y-%m-%d}", partition_key=f"{day:%Y-%m-%d}")

    return quality_slo, nightly


def probation_action(
    spec: ModelSpec, verdict: DayVerdict, registry: ModelRegistry, alerts: AlertSink, day: str
) -> str:
    """Roll back a champion on probation whose own decisions broke the SLO; otherwise say why not."""
    slo = spec.slo
    if slo is None or verdict.roc_auc is None or verdict.roc_auc >= slo.min_roc_auc:
        return "none: no breach judged"
    champion = registry.version_for(spec.name, CHAMPION)
    if champion is None or verdict.served_by != champion:
        return f"none: the breach is version {verdict.served_by}'s, champion is {champion}"
    if not on_probation(registry, spec.name, champion, slo.probation_days, datetime.now(UTC)):
        return f"none: version {champion} is past its {slo.probation_days}-day probation"
    if registry.version_for(spec.name, PREVIOUS) is None:
        return f"none: version {champion} breaks its SLO on probation but there is no previous champion"
    reason = (
        f"quality SLO broken on probation: ROC AUC {verdict.roc_auc:.4f} < {slo.min_roc_auc} on {day} "
        f"({verdict.labelled} labelled, {verdict.positives} positives)"
    )
    record = rollback(registry, spec.name, actor="slo probation", reason=reason)
    alerts.send(
        "slo_rollback",
        f"{spec.name}: champion {record['replaced']} rolled back to {record['version']}: {reason}",
        model=spec.name,
        rolled_back=record["replaced"],
        champion=record["version"],
        partition=day,
    )
    return f"rolled back version {record['replaced']} to {record['version']}"
