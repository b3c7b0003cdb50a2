from mlplatform.features.assets import feature_assets, feature_checks, online_feature_assets

__all__ = ["feature_assets", "feature_checks", "online_feature_assets"]
