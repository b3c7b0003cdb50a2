from mlplatform.ingestion.assets import DAILY_PARTITIONS, ingestion_assets
from mlplatform.ingestion.sensors import landing_zone_sensor

__all__ = ["DAILY_PARTITIONS", "ingestion_assets", "landing_zone_sensor"]
