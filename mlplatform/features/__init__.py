from mlplatform.features.assets import feature_assets, feature_checks

__all__ = ["feature_assets", "feature_checks"]
