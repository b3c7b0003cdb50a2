"""Promotion, approval, rejection and rollback on the MLflow registry aliases, each written to the audit
trail with its evidence. Promotion checks the gate evidence itself: whoever calls it (the champion
asset, the CLI, a job), a version that did not pass every gate in a completed evaluation never serves."""

from collections.abc import Callable

from mlplatform.resources.model_registry import CHALLENGER, CHAMPION, PREVIOUS, ModelRegistry
from mlplatform.training.candidate import LINEAGE_TAGS, version_spec
from mlplatform.training.gates import (
    APPROVAL_TAG,
    GATE_TAG_PREFIX,
    GATES,
    LIFECYCLE_TAG,
    Lifecycle,
    evidence_summary,
    promotion_blockers,
)
from mlplatform.training.model_card import write_model_card
from mlplatform.training.spec import Retention


class NothingToRollBackError(RuntimeError):
    """There is no previous champion to return to."""


class RetirementRefusedError(RuntimeError):
    """Retiring the model would leave a route in use without a model."""


class PromotionRefusedError(RuntimeError):
    """The version lacks the evidence to serve: a gate failed, could not judge, or never ran."""


def decided(registry: ModelRegistry, action: str, model: str, versions: tuple, **record) -> dict:
    """Write a decision to the audit trail, then the model card of each version it concerns (their stage
    and approval history changed)."""
    entry = registry.audit(action, model, **record)
    for version in dict.fromkeys(v for v in versions if v is not None):
        write_model_card(registry, version_spec(registry, model, str(version)), str(version))
    return entry


def check_promotable(registry: ModelRegistry, model: str, version: str) -> dict[str, str]:
    """The version's tags when it may be promoted; otherwise PromotionRefusedError naming every blocker."""
    tags = registry.version_tags(model, version)
    champion = registry.version_for(model, CHAMPION)
    blockers = promotion_blockers(tags, has_champion=champion not in (None, version))
    if blockers:
        raise PromotionRefusedError(f"{model} version {version} cannot be promoted: " + "; ".join(blockers))
    return tags


def evidence(registry: ModelRegistry, model: str, version: str, tags: dict[str, str]) -> dict:
    """What the audit keeps of a promotion: every gate's verdict and figures, the runs, data and code."""
    client = registry.client()
    run_id = str(client.get_model_version(model, version).run_id)
    run = client.get_run(run_id)
    return {
        "gates": evidence_summary(tags),
        "mlflow_run_id": run_id,
        "training_dagster_run_id": run.data.tags.get("dagster.run_id"),
        "metrics": {k: round(v, 4) for k, v in run.data.metrics.items()},
        **{tag: run.data.tags.get(tag) for tag in LINEAGE_TAGS},
    }


def promote(
    registry: ModelRegistry, model: str, version: str, *, actor: str, reason: str, **extra
) -> dict | None:
    """Make `version` the champion and keep the old one as `previous`; a no-op if it already is champion.
    Refuses (PromotionRefusedError) unless the version passed every gate."""
    tags = check_promotable(registry, model, version)
    champion = registry.version_for(model, CHAMPION)
    if champion == version:
        return None
    if champion is not None:
        registry.move_alias(model, PREVIOUS, champion)
        registry.tag_version(model, champion, {LIFECYCLE_TAG: Lifecycle.PREVIOUS})
    registry.move_alias(model, CHAMPION, version)
    registry.tag_version(model, version, {LIFECYCLE_TAG: Lifecycle.CHAMPION})
    if registry.version_for(model, CHALLENGER) == version:
        registry.move_alias(model, CHALLENGER, None)
    return decided(
        registry,
        "promote",
        model,
        (version, champion),
        version=version,
        replaced=champion,
        actor=actor,
        reason=reason,
        **evidence(registry, model, version, tags),
        **extra,
    )


def propose(registry: ModelRegistry, model: str, version: str, *, actor: str) -> dict | None:
    """Manual policy: a version that passed every gate waits as `challenger` for a person's approval."""
    tags = check_promotable(registry, model, version)
    if version in (registry.version_for(model, CHAMPION), registry.version_for(model, CHALLENGER)):
        return None
    registry.move_alias(model, CHALLENGER, version)
    registry.tag_version(model, version, {LIFECYCLE_TAG: Lifecycle.CHALLENGER, APPROVAL_TAG: "pending"})
    return decided(
        registry,
        "propose",
        model,
        (version,),
        version=version,
        actor=actor,
        reason="passed every gate; awaiting approval (promotion policy: manual)",
        **evidence(registry, model, version, tags),
    )


def approve(registry: ModelRegistry, model: str, version: str, *, actor: str, reason: str) -> dict | None:
    """A person approves a version that passed its gates: it becomes champion, with who and why."""
    record = promote(registry, model, version, actor=actor, reason=reason, approved_by=actor)
    registry.tag_version(model, version, {APPROVAL_TAG: f"approved by {actor}"})
    return record


def reject(registry: ModelRegistry, model: str, version: str, *, actor: str, reason: str) -> dict:
    """A person refuses a version: it loses `challenger` and can never be promoted."""
    if registry.version_for(model, CHAMPION) == version:
        raise PromotionRefusedError(f"{model} version {version} is the champion: roll back instead")
    if registry.version_for(model, CHALLENGER) == version:
        registry.move_alias(model, CHALLENGER, None)
    registry.tag_version(model, version, {APPROVAL_TAG: "rejected", LIFECYCLE_TAG: Lifecycle.REJECTED})
    return decided(registry, "reject", model, (version,), version=version, actor=actor, reason=reason)


def rollback(registry: ModelRegistry, model: str, *, actor: str, reason: str) -> dict:
    """Restore the previous champion in one step; `previous` moves one promotion further back."""
    champion, previous = registry.version_for(model, CHAMPION), registry.version_for(model, PREVIOUS)
    if previous is None:
        raise NothingToRollBackError(
            f"{model} has no previous champion to roll back to (champion: {champion})"
        )
    promotions = [
        e for e in registry.audit_trail(model) if e["action"] == "promote" and e["version"] == previous
    ]
    before_previous = promotions[-1].get("replaced") if promotions else None
    registry.move_alias(model, CHAMPION, previous)
    registry.move_alias(model, PREVIOUS, before_previous)
    registry.tag_version(model, previous, {LIFECYCLE_TAG: Lifecycle.CHAMPION})
    if champion is not None:
        registry.tag_version(model, champion, {LIFECYCLE_TAG: "rolled_back"})
    return decided(
        registry,
        "rollback",
        model,
        (previous, champion),
        version=previous,
        replaced=champion,
        actor=actor,
        reason=reason,
    )


def apply_retention(registry: ModelRegistry, model: str, retention: Retention, *, actor: str) -> dict:
    """The spec's retention rule. A version no alias points to is archived once `archive_after` newer
    versions are registered; archived versions beyond the newest `delete_archived_after` are deleted from
    the registry (their training runs, model cards and audit records stay). Each step is audited."""
    client = registry.client()
    served = set(registry.aliases(model).values())
    versions = sorted(
        (int(v.version), dict(v.tags))
        for v in client.search_model_versions(f"name = '{model}'", max_results=1_000)
    )
    newest = versions[-1][0] if versions else 0
    archived, newly_archived = [], []
    for number, tags in versions:
        version = str(number)
        if tags.get(LIFECYCLE_TAG) == Lifecycle.ARCHIVED:
            archived.append(version)
        elif version not in served and newest - number >= retention.archive_after:
            registry.tag_version(model, version, {LIFECYCLE_TAG: Lifecycle.ARCHIVED})
            reason = f"retention: no alias and {newest - number} newer versions"
            decided(registry, "archive", model, (version,), version=version, actor=actor, reason=reason)
            archived.append(version)
            newly_archived.append(version)
    deleted = archived[: max(len(archived) - retention.delete_archived_after, 0)]
    for version in deleted:
        client.delete_model_version(model, version)
        reason = f"retention: more than {retention.delete_archived_after} archived versions"
        registry.audit("delete", model, version=version, actor=actor, reason=reason)
    return {"archived": newly_archived, "deleted": deleted}


def reconcile_orphans(
    registry: ModelRegistry, model: str, still_running: Callable[[str | None], bool], *, actor: str
) -> list[str]:
    """After a training died mid-way: end its MLflow runs still marked RUNNING as FAILED, and tag its
    versions whose gates never all judged as orphaned (no alias, never promotable). A training whose
    Dagster run is still in progress is left alone. Returns what was repaired."""
    client = registry.client()
    repaired = []
    stuck = client.search_runs(
        [registry.experiment_id(model)], filter_string="attributes.status = 'RUNNING'", max_results=100
    )
    for run in stuck:
        if not still_running(run.data.tags.get("dagster.run_id")):
            client.set_terminated(run.info.run_id, status="FAILED")
            repaired.append(f"mlflow run {run.info.run_id} ended as FAILED")
    served = {registry.version_for(model, a) for a in (CHAMPION, PREVIOUS)}
    for found in client.search_model_versions(f"name = '{model}'", max_results=1_000):
        version, tags = str(found.version), dict(found.tags)
        complete = all(GATE_TAG_PREFIX + gate in tags for gate in GATES)
        if complete or version in served or tags.get(LIFECYCLE_TAG) == Lifecycle.ORPHANED:
            continue
        # killed right after registering, a version may not carry its training's run id yet: its MLflow
        # run does (set before anything was logged)
        trained_by = tags.get("dagster.run_id") or client.get_run(str(found.run_id)).data.tags.get(
            "dagster.run_id"
        )
        if still_running(trained_by):
            continue
        if registry.version_for(model, CHALLENGER) == version:
            registry.move_alias(model, CHALLENGER, None)
        registry.tag_version(model, version, {LIFECYCLE_TAG: Lifecycle.ORPHANED})
        registry.audit(
            "orphan",
            model,
            version=version,
            actor=actor,
            reason="its training run died before every gate judged it; it can never be promoted",
        )
        repaired.append(f"version {version} tagged orphaned")
    return repaired


def is_retired(registry: ModelRegistry, model: str) -> bool:
    return registry.model_tags(model).get(LIFECYCLE_TAG) == Lifecycle.RETIRED


def retire(
    registry: ModelRegistry, model: str, *, in_use: str | None, actor: str, reason: str, force: bool = False
) -> dict:
    """Stop a model for good: every alias leaves it (nothing serves it, scheduled scoring and retraining
    skip it), the model and each version are tagged retired; runs, versions, cards and audit stay.
    Refused while its route is `in_use` (why, e.g. "412 predictions in the last 24 h"), unless forced."""
    if is_retired(registry, model):
        return {}
    if in_use and not force:
        raise RetirementRefusedError(
            f"{model} is the only model behind its route, which is in use ({in_use}): retiring it would "
            "leave its callers without answers; move them first, or retire with --force"
        )
    aliases = registry.aliases(model)
    for alias in aliases:
        registry.move_alias(model, alias, None)
    versions = [str(v.version) for v in registry.client().search_model_versions(f"name = '{model}'")]
    for version in versions:
        registry.tag_version(model, version, {LIFECYCLE_TAG: Lifecycle.RETIRED})
    registry.tag_model(model, {LIFECYCLE_TAG: Lifecycle.RETIRED})
    return decided(
        registry,
        "retire",
        model,
        tuple(versions),
        actor=actor,
        reason=reason,
        aliases_removed=aliases,
        route_in_use=in_use,
        forced=bool(in_use and force),
    )
