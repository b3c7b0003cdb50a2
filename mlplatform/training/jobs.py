"""Operational jobs on the model registry: rollback, and a person's approval or rejection."""

from typing import Literal

from dagster import AssetMaterialization, Config, OpExecutionContext, job, op

from mlplatform.resources import ModelRegistry
from mlplatform.training.fraud_model import MODEL_NAME, fraud_model_champion
from mlplatform.training.registry import approve, reject, rollback


class RollbackConfig(Config):
    reason: str = "manual rollback from Dagster"


class ReviewConfig(Config):
    version: str
    decision: Literal["approve", "reject"]
    reason: str
    reviewer: str


@op(description="Move `champion` back to the previous champion and record it in the audit trail.")
def rollback_champion(
    context: OpExecutionContext, config: RollbackConfig, model_registry: ModelRegistry
) -> None:
    record = rollback(
        model_registry, MODEL_NAME, actor=f"dagster run {context.run.run_id}", reason=config.reason
    )
    context.log.info(f"{MODEL_NAME}: champion {record['replaced']} -> {record['version']}")


@op(description="Approve (promote) or reject a fraud_model version that waits for review; audited.")
def review_candidate(context: OpExecutionContext, config: ReviewConfig, model_registry: ModelRegistry):
    if config.decision == "approve":
        record = approve(
            model_registry, MODEL_NAME, config.version, actor=config.reviewer, reason=config.reason
        )
        if record is not None:
            yield AssetMaterialization(
                fraud_model_champion.key,
                metadata={
                    "champion_version": config.version,
                    "outcome": "approved",
                    "approved_by": config.reviewer,
                },
            )
    else:
        reject(model_registry, MODEL_NAME, config.version, actor=config.reviewer, reason=config.reason)
    context.log.info(f"{MODEL_NAME} version {config.version}: {config.decision} by {config.reviewer}")


@job(description="Restore the previous fraud_model champion in one step.")
def rollback_fraud_model():
    rollback_champion()


@job(description="A reviewer approves or rejects a fraud_model challenger (manual promotion policy).")
def review_fraud_model():
    review_candidate()
