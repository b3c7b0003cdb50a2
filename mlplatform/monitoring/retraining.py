"""Retraining on evidence: enough new labels since the champion was trained, or the champion degrading.

The decision (`decide`) is a pure function of the evidence gathered from the instance (`gather_evidence`):
- labels: the `raw_labels` materializations since the champion was promoted (storage ids and row counts);
- degradations: the latest judged evaluation of each degradation check since the champion, when it
  failed with ERROR (storage id of that evaluation). Planned (in-flight) evaluations and evaluations that
  were not judged (`mlplatform.checks`) are not evidence, neither for nor against;
- attempts: the retraining runs finished since the champion (each one a candidate that was not promoted).

A request is keyed by its evidence (the newest label event of the window, or the failed evaluations'
ids), never by the champion: a rejected candidate does not block the next piece of evidence, and the same
evidence is acted on once. After a rejected or failed attempt, the next one waits an exponential backoff
so a persistently failing candidate does not retrain in a loop. Every tick says why it did or did not ask.
"""

import time
from dataclasses import dataclass, field

from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from mlplatform.automation import TRIGGER_TAG
from mlplatform.checks import was_judged
from mlplatform.ingestion.assets import raw_labels, raw_transactions
from mlplatform.resources import ModelRegistry, MonitoringSettings
from mlplatform.training.factory import TrainingChain
from mlplatform.training.registry import is_retired

ACTIVE = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]
FINISHED = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]
EVIDENCE_TAG = "mlplatform/evidence"
BACKOFF_BASE_SECONDS = 30 * 60  # after one attempt that did not promote; doubles with each further one
BACKOFF_MAX_SECONDS = 24 * 3600
RESOLVED = {AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED}


@dataclass(frozen=True)
class LabelEvent:
    storage_id: int
    rows: int


@dataclass(frozen=True)
class Degradation:
    check: str  # "asset:check"
    storage_id: int  # the failed evaluation's id


@dataclass(frozen=True)
class Evidence:
    labels: list[LabelEvent] = field(default_factory=list)  # since the champion
    degradations: list[Degradation] = field(default_factory=list)  # failed (ERROR, judged) since the champion
    attempts: list[float] = field(default_factory=list)  # end times of retrainings since the champion
    acted_on: frozenset[str] = frozenset()  # evidence keys a retraining was already requested for
    in_progress: bool = False


@dataclass(frozen=True)
class Decision:
    evidence_key: str | None  # set when retraining is requested
    reason: str


def backoff_seconds(attempts: int) -> float:
    """How long to wait after `attempts` retrainings in a row that did not promote a champion."""
    if attempts <= 0:
        return 0.0
    return float(min(BACKOFF_BASE_SECONDS * 2 ** (attempts - 1), BACKOFF_MAX_SECONDS))


def retrain_reason(new_labels: int, min_new_labels: int, degradations: list[str]) -> str | None:
    """Why to retrain now, or None: degradation first (it is urgent), then enough new labels."""
    if degradations:
        return f"champion degraded: {', '.join(sorted(degradations))}"
    if new_labels >= min_new_labels:
        return f"{new_labels:,} labels arrived since the champion was trained (threshold {min_new_labels:,})"
    return None


def evidence_key(evidence: Evidence, min_new_labels: int) -> str | None:
    """The identity of the evidence for retraining: failed evaluations first, then the labels window."""
    if evidence.degradations:
        return "degraded:" + ",".join(
            f"{d.check}@{d.storage_id}" for d in sorted(evidence.degradations, key=str)
        )
    if evidence.labels and sum(e.rows for e in evidence.labels) >= min_new_labels:
        ids = [e.storage_id for e in evidence.labels]
        return f"labels:{min(ids)}-{max(ids)}"
    return None


def decide(evidence: Evidence, min_new_labels: int, now: float) -> Decision:
    """Whether to request a retraining, and why (or why not). Pure: the same evidence, the same answer."""
    if evidence.in_progress:
        return Decision(None, "a retraining is already in progress")
    key = evidence_key(evidence, min_new_labels)
    new_labels = sum(e.rows for e in evidence.labels)
    reason = retrain_reason(new_labels, min_new_labels, [d.check for d in evidence.degradations])
    if key is None or reason is None:
        return Decision(
            None,
            f"no new evidence since the champion: {new_labels:,} new labels (threshold {min_new_labels:,}), "
            "no degradation check failed with ERROR",
        )
    if key in evidence.acted_on:
        return Decision(None, f"already retrained on this evidence ({key}); waiting for new evidence")
    if evidence.attempts:
        wait = backoff_seconds(len(evidence.attempts))
        ready_at = max(evidence.attempts) + wait
        if now < ready_at:
            return Decision(
                None,
                f"backing off: {len(evidence.attempts)} retraining(s) since the champion did not promote a "
                f"candidate; next attempt in {ready_at - now:.0f} s (new evidence {key}: {reason})",
            )
    return Decision(key, reason)


def label_events_since(instance: DagsterInstance, after: float | None) -> list[LabelEvent]:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=raw_labels.key, after_timestamp=after), limit=10_000
    ).records
    events = []
    for r in records:
        metadata = r.event_log_entry.asset_materialization.metadata
        if "dagster/row_count" in metadata:
            events.append(LabelEvent(r.storage_id, int(metadata["dagster/row_count"].value)))
    return events


def degradations_since(
    instance: DagsterInstance,
    checks: tuple[AssetCheckKey, ...],
    after: float | None,
    answered_days: frozenset[str] = frozenset(),
) -> list[Degradation]:
    """Degradation checks whose latest judged, completed evaluation after `after` failed with ERROR.

    Planned evaluations (a run in flight) and not-judged ones are skipped: they are no evidence, and they
    neither raise nor clear a degradation. So are evaluations of `answered_days`, the days that had landed
    when the champion was promoted: declarative automation judges such a day again against the new
    champion (its scores, its training set), and the day that made the retraining would otherwise ask for
    another, after every promotion (seen under the daemon). Check records keep whole seconds: compared at
    that resolution.
    """
    found = []
    for key in checks:
        history = instance.event_log_storage.get_asset_check_execution_history(key, limit=50, status=RESOLVED)
        for record in history:  # newest first
            evaluation = record.evaluation
            if evaluation is None or not was_judged(dict(evaluation.metadata)):
                continue
            if record.partition in answered_days:
                continue
            if after is not None and record.create_timestamp < int(after):
                break
            if not evaluation.passed and evaluation.severity is AssetCheckSeverity.ERROR:
                found.append(Degradation(f"{key.asset_key.to_user_string()}:{key.name}", record.id))
            break
    return found


def gather_evidence(
    instance: DagsterInstance,
    champion_key: AssetKey,
    retrain_job: str,
    checks: tuple[AssetCheckKey, ...] = (),
) -> Evidence:
    records = instance.fetch_materializations(champion_key, limit=1).records
    champion = records[0] if records else None
    since = champion.timestamp if champion else None
    # the days that had landed when the champion was promoted: judged again, they are no evidence against it
    answered = (
        instance.get_materialized_partitions(raw_transactions.key, before_cursor=champion.storage_id)
        if champion
        else set()
    )
    in_progress = bool(instance.get_runs(RunsFilter(job_name=retrain_job, statuses=ACTIVE), limit=1))
    attempts, acted_on = [], set()
    for run_record in instance.get_run_records(RunsFilter(job_name=retrain_job, statuses=FINISHED), limit=50):
        if EVIDENCE_TAG in run_record.dagster_run.tags:
            acted_on.add(run_record.dagster_run.tags[EVIDENCE_TAG])
        started = run_record.start_time or run_record.create_timestamp.timestamp()
        if since is None or started > since:  # the run that promoted the champion started before it
            attempts.append(run_record.end_time or run_record.update_timestamp.timestamp())
    for run in instance.get_runs(RunsFilter(job_name=retrain_job, statuses=ACTIVE)):
        if EVIDENCE_TAG in run.tags:
            acted_on.add(run.tags[EVIDENCE_TAG])
    return Evidence(
        labels=label_events_since(instance, since),
        degradations=degradations_since(instance, checks, since, frozenset(answered)),
        attempts=attempts,
        acted_on=frozenset(acted_on),
        in_progress=in_progress,
    )


def retrain_sensor_name(model: str) -> str:
    return f"retrain_{model}_sensor"


def build_retrain_sensor(model: TrainingChain) -> SensorDefinition:
    """The model's retraining on evidence, as its spec's `retrain` says: enough new labels since its
    champion, or one of its `on_failed_checks` failed with ERROR since then."""
    name = retrain_sensor_name(model.spec.name)
    checks = model.spec.retrain.check_keys

    @sensor(
        name=name,
        job=model.retrain_job,
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            f"Requests retraining of {model.spec.name} when enough labels arrived since its champion was "
            "promoted"
            + (", or a score-drift or performance check failed with ERROR since then" if checks else "")
            + "; once per piece of evidence, never while a retraining is in progress, with a backoff after "
            "candidates that were not promoted."
        ),
    )
    def retrain(
        context: SensorEvaluationContext, monitoring: MonitoringSettings, model_registry: ModelRegistry
    ):
        evidence = gather_evidence(context.instance, model.champion.key, model.retrain_job.name, checks)
        threshold = monitoring.retrain_min_new_labels or model.spec.retrain.min_new_labels
        decision = decide(evidence, threshold, time.time())
        context.log.info(
            f"{name}: {'requesting' if decision.evidence_key else 'skipping'}: {decision.reason}"
        )
        if decision.evidence_key is None:
            return SkipReason(decision.reason)
        if is_retired(model_registry, model.spec.name):  # asked only when there is something to do
            return SkipReason(f"{model.spec.name} is retired: nothing retrains it")
        return RunRequest(
            run_key=f"retrain-{decision.evidence_key}",
            tags={
                TRIGGER_TAG: name,
                "mlplatform/reason": decision.reason,
                EVIDENCE_TAG: decision.evidence_key,
            },
        )

    return retrain
