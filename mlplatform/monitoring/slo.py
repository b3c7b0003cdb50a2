"""SLOs and probation: each spec's `slo` says what its champion promises once it serves. Quality: a minimum
ROC AUC on every labelled day of its batch decisions, judged once enough of its positives are labelled.
Serving (`slo.serving`): its route's p99 latency and server-error rate on every day of online traffic (the
prediction log), judged once the day had enough requests. The burn is the share of judged days in the window
that broke a promise, against the spec's budget. A champion still on probation (promoted less than
`probation_days` ago) that broke either with its own decisions or its own traffic is rolled back to the
previous champion at once: audited, alerted. Self-healing, level 3 of the seeds.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    asset,
)

from mlplatform.checks import judged, not_judged
from mlplatform.inference.assets import PREDICTION_LOG
from mlplatform.ingestion.assets import DAILY_PARTITIONS
from mlplatform.monitoring.assets import follow_new_scores, labelled_decisions, store_day
from mlplatform.profiles import warehouse_kind
from mlplatform.resources import AlertSink, ModelRegistry, PredictionLog, Warehouse
from mlplatform.resources.model_registry import CHAMPION, PREVIOUS
from mlplatform.resources.prediction_log import of_model
from mlplatform.training.registry import rollback
from mlplatform.training.spec import ModelSpec, ServingSlo

if TYPE_CHECKING:
    import pandas as pd

SLO_CHECK = "quality_slo"
LATENCY_CHECK = "latency_slo"
ERROR_RATE_CHECK = "error_rate_slo"


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


def judge_day(scored: "pd.DataFrame", label: str, min_positives: int) -> DayVerdict:
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


@dataclass(frozen=True)
class ServingDay:
    """One day of a model's online traffic against its serving SLO."""

    requests: int  # answered or failed with a server error; shadow scorings are not requests
    errors: int
    latency_p99_ms: float | None  # None: no request was answered (or the day is not judged)
    served_by: str | None  # the version that answered most of the day's requests
    reason: str | None = None  # why it was not judged

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else float("nan")

    @property
    def judged(self) -> bool:
        return self.reason is None

    def breaches(self, slo: ServingSlo) -> list[str]:
        """What the day broke, in words (empty: kept or not judged)."""
        if not self.judged:
            return []
        broken = []
        if self.latency_p99_ms is not None and self.latency_p99_ms > slo.max_p99_latency_ms:
            broken.append(f"p99 latency {self.latency_p99_ms:.1f} ms > {slo.max_p99_latency_ms:g} ms")
        if self.error_rate > slo.max_error_rate:
            broken.append(f"error rate {self.error_rate:.2%} > {slo.max_error_rate:.2%}")
        return broken


def serving_day(log: "pd.DataFrame", model: str, min_requests: int) -> ServingDay:
    """`log`: a day of the prediction log (every model's predictions and failed requests). A batch request's
    predictions share its request id and latency: one request each."""
    answered, failed = of_model(log, model)
    if len(answered):
        answered = answered[~answered["shadow"].astype(bool)].drop_duplicates("request_id")
    requests = len(answered) + len(failed)
    served_by = str(answered["model_version"].mode().iloc[0]) if len(answered) else None
    if requests < min_requests:
        reason = f"{requests} requests logged, {min_requests} needed"
        return ServingDay(requests, len(failed), None, served_by, reason)
    p99 = float(answered["latency_ms"].quantile(0.99)) if len(answered) else None
    return ServingDay(requests, len(failed), p99, served_by)


def burn(breached: "pd.Series", budget: float) -> dict[str, float]:
    """Share of judged days (`breached` per day: True, False, or NA when not judged) that broke the SLO,
    and that share over the budget (1.0: the budget is spent)."""
    judged_days = breached.dropna()
    if judged_days.empty:
        return {"judged_days": 0, "breaching_days": 0, "burn": float("nan")}
    breaching = int(judged_days.astype(bool).sum())
    return {
        "judged_days": len(judged_days),
        "breaching_days": breaching,
        "burn": breaching / len(judged_days) / budget,
    }


def on_probation(audit: list[dict], version: str, days: int, now: datetime) -> bool:
    """Whether `version` was promoted (or approved) less than `days` ago, per the model's audit trail. A
    version restored by a rollback is not on probation again: it served through its own, and a bad day for
    every version (the data's fault, not the model's) must not roll back one version after another."""
    became = [
        e["at"] for e in audit if e["action"] in ("promote", "approve") and str(e.get("version")) == version
    ]
    return bool(became) and now - datetime.fromisoformat(became[-1]) < timedelta(days=days)


@dataclass(frozen=True)
class SloDefinitions:
    """What the factory builds from a spec's `slo` (judged again nightly: `build_nightly`)."""

    quality: AssetsDefinition  # follows the batch decisions: part of a landed day's chain
    serving: AssetsDefinition | None  # judged from the prediction log, nightly (when `slo.serving`)


def build_slo(spec: ModelSpec) -> SloDefinitions:
    """The spec's SLO assets, with probation rollback."""
    if spec.slo is None:
        raise ValueError(f"{spec.name} declares no slo")
    return SloDefinitions(build_quality_slo(spec), build_serving_slo(spec) if spec.slo.serving else None)


def build_quality_slo(spec: ModelSpec) -> AssetsDefinition:
    """The spec's quality SLO per day of its batch decisions."""
    slo, name = spec.slo, f"{spec.name}_slo"
    if slo is None:
        raise ValueError(f"{spec.name} declares no slo")
    predictions = AssetKey(spec.batch_asset)

    @asset(
        name=name,
        group_name="monitoring",
        kinds={"scikitlearn", warehouse_kind()},
        owners=spec.owners,
        partitions_def=DAILY_PARTITIONS,
        deps=[predictions, spec.label.asset],
        automation_condition=follow_new_scores(spec),
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
        import pandas as pd

        day = context.partition_key
        scored = labelled_decisions(warehouse, spec, day)
        if scored is None:
            reason = f"inference.{spec.batch_asset} holds no decision yet"
            return MaterializeResult(
                metadata={"note": reason}, check_results=[not_judged(reason, check_name=SLO_CHECK)]
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
        )["roc_auc"]
        breach = None
        if verdict.roc_auc is not None and verdict.roc_auc < slo.min_roc_auc:
            breach = (
                f"quality SLO broken on probation: ROC AUC {verdict.roc_auc:.4f} < {slo.min_roc_auc} "
                f"on {day} ({verdict.labelled} labelled, {verdict.positives} positives)"
            )
        action = probation_action(spec, breach, verdict.served_by, model_registry, alerts, day)
        metadata: dict[str, Any] = {
            **burn((history < slo.min_roc_auc).where(history.notna()), slo.budget),
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

    return quality_slo


def build_serving_slo(spec: ModelSpec) -> AssetsDefinition:
    """The spec's serving SLO per day of its route's traffic, from the prediction log."""
    slo = spec.slo
    serving = slo.serving if slo else None
    if slo is None or serving is None:
        raise ValueError(f"{spec.name} declares no serving slo")
    name = f"{spec.name}_serving_slo"
    not_before = f"not judged on a day with fewer than {serving.min_requests} requests"

    @asset(
        name=name,
        group_name="monitoring",
        kinds={"fastapi", warehouse_kind()},
        owners=spec.owners,
        partitions_def=DAILY_PARTITIONS,
        deps=[PREDICTION_LOG],
        check_specs=[
            AssetCheckSpec(
                LATENCY_CHECK,
                asset=name,
                description=f"p99 of the day's {spec.name} request latencies <= "
                f"{serving.max_p99_latency_ms:g} ms; {not_before}.",
            ),
            AssetCheckSpec(
                ERROR_RATE_CHECK,
                asset=name,
                description=f"Share of the day's {spec.name} requests answered with a server error <= "
                f"{serving.max_error_rate:.2%}; {not_before}.",
            ),
        ],
        description=(
            f"{spec.name}'s serving SLO on each day of its online traffic (the prediction log): p99 latency "
            f"against {serving.max_p99_latency_ms:g} ms and server errors against "
            f"{serving.max_error_rate:.2%} of requests, the burn of the last {slo.window_days} days against "
            f"a budget of {slo.budget:.0%} of judged days, and the probation rollback of a champion whose "
            f"own traffic breaks it within {slo.probation_days} days of its promotion. Stored in "
            f"monitoring.{name}."
        ),
    )
    def serving_slo(
        context: AssetExecutionContext,
        prediction_log: PredictionLog,
        warehouse: Warehouse,
        model_registry: ModelRegistry,
        alerts: AlertSink,
    ) -> MaterializeResult:
        import pandas as pd

        day = context.partition_key
        verdict = serving_day(prediction_log.read(day), spec.name, serving.min_requests)
        broken = verdict.breaches(serving)
        row = {
            "requests": verdict.requests,
            "errors": verdict.errors,
            "error_rate": verdict.error_rate,
            # NaN, not None, when not judged: the column is typed by the first day stored
            "latency_p99_ms": float("nan") if verdict.latency_p99_ms is None else verdict.latency_p99_ms,
            "breached": float("nan") if not verdict.judged else float(bool(broken)),
        }
        store_day(warehouse, name, pd.DataFrame([row]), day)
        history = warehouse.read_sql(
            f"select breached from monitoring.{name} "
            f"where partition_date > date '{day}' - interval '{slo.window_days} days'"
        )["breached"]
        breach = f"serving SLO broken on probation: {'; '.join(broken)} on {day}" if broken else None
        action = probation_action(spec, breach, verdict.served_by, model_registry, alerts, day)
        metadata: dict[str, Any] = {
            **burn(history, slo.budget),
            "requests": verdict.requests,
            "errors": verdict.errors,
            "served_by": str(verdict.served_by),
            "probation": action,
        }
        if not verdict.judged:
            reason = verdict.reason or "no evidence"
            checks = [
                not_judged(reason, check_name=check, **metadata)
                for check in (LATENCY_CHECK, ERROR_RATE_CHECK)
            ]
        else:
            p99 = verdict.latency_p99_ms
            checks = [
                not_judged(
                    "no request was answered (every one failed): no latency to judge",
                    check_name=LATENCY_CHECK,
                    **metadata,
                )
                if p99 is None
                else judged(
                    p99 <= serving.max_p99_latency_ms,
                    check_name=LATENCY_CHECK,
                    latency_p99_ms=round(p99, 3),
                    slo=serving.max_p99_latency_ms,
                    **metadata,
                ),
                judged(
                    verdict.error_rate <= serving.max_error_rate,
                    check_name=ERROR_RATE_CHECK,
                    error_rate=round(verdict.error_rate, 6),
                    slo=serving.max_error_rate,
                    **metadata,
                ),
            ]
        return MaterializeResult(
            metadata={**metadata, "latency_p99_ms": verdict.latency_p99_ms, "error_rate": verdict.error_rate},
            check_results=checks,
        )

    return serving_slo


def probation_action(
    spec: ModelSpec,
    breach: str | None,
    served_by: str | None,
    registry: ModelRegistry,
    alerts: AlertSink,
    day: str,
) -> str:
    """Roll back a champion on probation that broke an SLO (`breach`: what it broke, in words) with its own
    decisions or traffic (`served_by`); otherwise say why not."""
    slo = spec.slo
    if slo is None or breach is None:
        return "none: no breach judged"
    champion = registry.version_for(spec.name, CHAMPION)
    if champion is None or served_by != champion:
        return f"none: the breach is version {served_by}'s, champion is {champion}"
    if not on_probation(registry.audit_trail(spec.name), champion, slo.probation_days, datetime.now(UTC)):
        return f"none: version {champion} is past its {slo.probation_days}-day probation"
    if registry.version_for(spec.name, PREVIOUS) is None:
        return f"none: version {champion} breaks its SLO on probation but there is no previous champion"
    record = rollback(registry, spec.name, actor="slo probation", reason=breach)
    alerts.send(
        "slo_rollback",
        f"{spec.name}: champion {record['replaced']} rolled back to {record['version']}: {breach}",
        model=spec.name,
        rolled_back=record["replaced"],
        champion=record["version"],
        partition=day,
    )
    return f"rolled back version {record['replaced']} to {record['version']}"
