"""The dbt project as Dagster sees it. Its manifest is prepared once (`make env`, or on `dagster dev`)."""

from dagster_dbt import DbtProject

from mlplatform.settings import DBT_PROJECT_DIR

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR, target="local")
dbt_project.prepare_if_dev()
