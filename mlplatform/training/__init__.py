from mlplatform.training.assets import training_assets, training_checks

__all__ = ["training_assets", "training_checks"]
