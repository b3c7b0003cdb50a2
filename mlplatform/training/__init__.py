from mlplatform.training.assets import training_assets, training_checks
from mlplatform.training.fraud_model import model_assets, model_checks
from mlplatform.training.jobs import review_fraud_model, rollback_fraud_model

__all__ = [
    "model_assets",
    "model_checks",
    "review_fraud_model",
    "rollback_fraud_model",
    "training_assets",
    "training_checks",
]
