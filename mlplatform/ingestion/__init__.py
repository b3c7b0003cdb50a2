from mlplatform.ingestion.assets import DAILY_PARTITIONS, ingestion_assets

__all__ = ["DAILY_PARTITIONS", "ingestion_assets"]
