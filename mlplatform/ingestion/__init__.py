from mlplatform.ingestion.assets import DAILY_PARTITIONS, external_sources, ingestion_assets
from mlplatform.ingestion.sensors import build_landing_zone_sensor

__all__ = [
    "DAILY_PARTITIONS",
    "build_landing_zone_sensor",
    "external_sources",
    "ingestion_assets",
]
