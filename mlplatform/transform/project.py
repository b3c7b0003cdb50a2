"""The dbt project as Dagster sees it. Its manifest is prepared once (`make env`, or on `dagster dev`)."""

from dagster_dbt import DagsterDbtProjectPreparer, DbtProject, DbtProjectPreparer

from mlplatform.resources.dbt_command import dbt_command
from mlplatform.settings import DBT_PROJECT_DIR


class DbtCommandPreparer(DagsterDbtProjectPreparer):
    """dagster-dbt's preparation (`dbt parse`), run by `DbtCommand`: dbt's own environment, no call to
    PyPI for its version, no adapter opened in this process."""

    def _prepare_manifest(self, project: DbtProject) -> None:
        dbt_command(project).cli(self._prepare_project_cli_args, target_path=project.target_path).wait()


class PlatformDbtProject(DbtProject):
    """The project, prepared by `DbtCommandPreparer` (DbtProject's constructor takes no preparer)."""

    @property  # the record's field, read-only here: nothing sets it
    def preparer(self) -> DbtProjectPreparer:  # type: ignore[override]
        return DbtCommandPreparer()


dbt_project = PlatformDbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR, target="local")
dbt_project.prepare_if_dev()
