"""Promotion and rollback on the MLflow registry aliases, each written to the audit trail."""

from mlplatform.resources.model_registry import CHALLENGER, CHAMPION, PREVIOUS, ModelRegistry


class NothingToRollBackError(RuntimeError):
    """There is no previous champion to return to."""


def promote(
    registry: ModelRegistry, model: str, version: str, *, actor: str, reason: str, **evidence
) -> dict | None:
    """Make `version` the champion and keep the old one as `previous`; a no-op if it already is champion."""
    champion = registry.version_for(model, CHAMPION)
    if champion == version:
        return None
    if champion is not None:
        registry.move_alias(model, PREVIOUS, champion)
    registry.move_alias(model, CHAMPION, version)
    if registry.version_for(model, CHALLENGER) == version:
        registry.move_alias(model, CHALLENGER, None)
    return registry.audit(
        "promote", model, version=version, replaced=champion, actor=actor, reason=reason, **evidence
    )


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
    return registry.audit("rollback", model, version=previous, replaced=champion, actor=actor, reason=reason)
