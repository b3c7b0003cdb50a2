"""dbt models (staging -> feature marts, incremental by day) as assets; dbt tests become asset checks."""

import os
from collections.abc import Mapping
from typing import Any

from dagster import AssetExecutionContext, AssetKey
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from mlplatform.automation import FOLLOW_UPSTREAM
from mlplatform.k8s import TRANSFORM
from mlplatform.resources import Warehouse
from mlplatform.transform.project import dbt_project


class PlatformDbtTranslator(DagsterDbtTranslator):
    """Sources map onto the raw ingestion assets; every model lands in the `transform` group."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return AssetKey(f"raw_{dbt_resource_props['name']}")
        return AssetKey(dbt_resource_props["name"])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str:
        return "transform"

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        return ["team:data-platform"]

    def get_automation_condition(self, dbt_resource_props: Mapping[str, Any]):
        return FOLLOW_UPSTREAM


translator = PlatformDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_code_references=True))


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=translator,
    op_tags=TRANSFORM,
)
def dbt_models(context: AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse):
    """`dbt build`: each model materializes, then its tests run as its asset checks."""
    saved = dict(os.environ)
    os.environ.update(warehouse.dbt_env())  # dbt's profile reads its connection from the environment
    try:
        invocation = dbt.cli(["build"], context=context)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    yield from invocation.stream()
