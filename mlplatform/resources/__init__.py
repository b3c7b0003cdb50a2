from mlplatform.resources.feature_store import FeastFeatureStore
from mlplatform.resources.landing import LandingZone
from mlplatform.resources.model_registry import ModelRegistry
from mlplatform.resources.warehouse import DuckDBWarehouse, Warehouse

__all__ = ["DuckDBWarehouse", "FeastFeatureStore", "LandingZone", "ModelRegistry", "Warehouse"]
