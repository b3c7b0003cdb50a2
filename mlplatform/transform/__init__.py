from mlplatform.transform.assets import dbt_models

__all__ = ["dbt_models"]
