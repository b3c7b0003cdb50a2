"""The one Definitions object: every asset, check, resource, sensor and schedule of mlplatform."""

from dagster import Definitions

from mlplatform.ingestion import ingestion_assets
from mlplatform.profiles import build_resources
from mlplatform.transform import dbt_models

all_assets = [*ingestion_assets, dbt_models]

defs = Definitions(assets=all_assets, resources=build_resources())
