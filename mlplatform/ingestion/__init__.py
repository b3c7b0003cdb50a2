from mlplatform.ingestion.assets import DAILY_PARTITIONS, ingestion_assets
from mlplatform.ingestion.sensors import build_landing_zone_sensor

__all__ = ["DAILY_PARTITIONS", "build_landing_zone_sensor", "ingestion_assets"]
