from mlplatform.resources.landing import LandingZone
from mlplatform.resources.warehouse import DuckDBWarehouse, Warehouse

__all__ = ["DuckDBWarehouse", "LandingZone", "Warehouse"]
