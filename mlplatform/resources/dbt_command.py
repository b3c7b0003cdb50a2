"""dagster-dbt's CLI resource for a dbt installed apart from the platform (its own environment)."""

from functools import cached_property
from importlib.metadata import distributions
from pathlib import Path

from dagster_dbt import DbtCliResource
from packaging.version import Version

from mlplatform.settings import DBT_EXECUTABLE


class DbtCommand(DbtCliResource):
    """`DbtCliResource` running the `dbt` of an environment of its own (`settings.DBT_EXECUTABLE`).

    Before each invocation dagster-dbt asks `dbt --version` for the CLI's version, and dbt-core answers
    it by asking PyPI for its latest release (and each adapter's): 2-9 s of every dbt run here, and a
    call out of the machine at run time. The version is read from the dbt environment's installed
    dbt-core instead. It also opens dbt's adapter in this process, which needs dbt-core importable here; only
    `fetch_row_counts` and `fetch_column_metadata` use it, and the platform calls neither: skipped,
    rather than failing with a warning and a traceback in every dbt run's log.
    """

    @cached_property
    def _cli_version(self) -> Version:
        return installed_dbt_core(Path(self.dbt_executable))

    def _initialize_dbt_core_adapter(self, args):
        return None


def dbt_command(project_dir, **settings) -> DbtCommand:
    """`DbtCommand` for `project_dir`, running `DBT_EXECUTABLE` (dagster-dbt's constructor passes its own
    default executable, `dbt` on PATH, unless one is given)."""
    return DbtCommand(project_dir=project_dir, dbt_executable=DBT_EXECUTABLE, **settings)


def installed_dbt_core(dbt_executable: Path) -> Version:
    """The version of dbt-core in the environment `dbt_executable` belongs to (`<env>/bin/dbt`)."""
    environment = dbt_executable.resolve().parent.parent
    site_packages = [str(p) for p in environment.glob("lib/python*/site-packages")]
    for distribution in distributions(path=site_packages):
        if distribution.metadata["Name"] == "dbt-core":
            return Version(distribution.version)
    raise FileNotFoundError(f"no dbt-core installed in {environment} (the environment of {dbt_executable})")
