from mlplatform.training.assets import training_assets, training_checks
from mlplatform.training.fraud_model import model_assets, model_checks
from mlplatform.training.jobs import rollback_fraud_model

__all__ = ["model_assets", "model_checks", "rollback_fraud_model", "training_assets", "training_checks"]
