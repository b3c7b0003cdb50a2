"""Operational jobs on the model registry."""

from dagster import Config, OpExecutionContext, job, op

from mlplatform.resources import ModelRegistry
from mlplatform.training.fraud_model import MODEL_NAME
from mlplatform.training.registry import rollback


class RollbackConfig(Config):
    reason: str = "manual rollback from Dagster"


@op(description="Move `champion` back to the previous champion and record it in the audit trail.")
def rollback_champion(
    context: OpExecutionContext, config: RollbackConfig, model_registry: ModelRegistry
) -> None:
    record = rollback(model_registry, MODEL_NAME, actor=f"dagster run {context.run_id}", reason=config.reason)
    context.log.info(f"{MODEL_NAME}: champion {record['replaced']} -> {record['version']}")


@job(description="Restore the previous fraud_model champion in one step.")
def rollback_fraud_model():
    rollback_champion()
