"""dagster-dbt's CLI resource for a dbt installed apart from the platform (its own environment)."""

import hashlib
import os
import shutil
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from importlib.metadata import distributions
from pathlib import Path
from typing import Any

from dagster_dbt import DbtCliInvocation, DbtCliResource
from packaging.version import Version

from mlplatform.resources import tied_command
from mlplatform.settings import DBT_EXECUTABLE


class DbtCommand(DbtCliResource):
    """`DbtCliResource` running the `dbt` of an environment of its own (`settings.DBT_EXECUTABLE`).

    Before each invocation dagster-dbt asks `dbt --version` for the CLI's version, and dbt-core answers
    it by asking PyPI for its latest release (and each adapter's): 2-9 s of every dbt run here, and a
    call out of the machine at run time. The version is read from the dbt environment's installed
    dbt-core instead. It also opens dbt's adapter in this process, which needs dbt-core importable here; only
    `fetch_row_counts` and `fetch_column_metadata` use it, and the platform calls neither: skipped,
    rather than failing with a warning and a traceback in every dbt run's log.

    Each invocation starts from the partial parse of the last one on the same connection
    (`reuse_partial_parse`): dagster-dbt hands every invocation the project's prepared parse, which dbt
    throws away whenever the profile's connection differs from the preparation's (a state folder's
    warehouse path always does), and parses the whole project again, ~2 s of CPU per dbt run.

    dagster-dbt gives every invocation a folder of its own and never removes one (~4.5 MB each here):
    only the newest are kept (`prune_invocations`).

    dbt dies with the process that started it (`tied_command`): a run worker killed mid-build would
    otherwise leave its dbt holding the DuckDB warehouse's lock, and the run's retry would fail on it.
    dagster-dbt runs `dbt_executable` followed by `global_config_flags`, so `dbt_command` makes the first
    a bare interpreter and the second the tie and `DBT_EXECUTABLE`.
    """

    @cached_property
    def _cli_version(self) -> Version:
        return installed_dbt_core(Path(DBT_EXECUTABLE))

    def _initialize_dbt_core_adapter(self, args):
        return None

    def cli(
        self, args: Sequence[str], *, context=None, target_path: Path | None = None, **kwargs: Any
    ) -> DbtCliInvocation:
        project_dir = Path(self.project_dir)
        if target_path is None:  # a folder of its own, beside the earlier invocations' folders
            target_path = project_dir / self._get_unique_target_path(context=context)
            prune_invocations(target_path.parent)
        target_path = project_dir / target_path
        reuse_partial_parse(project_dir / "target", target_path, self._profile_environment())
        with tied_command.started_here():  # dagster-dbt starts dbt with this process's environment
            return super().cli(args, context=context, target_path=target_path, **kwargs)

    def _profile_environment(self) -> str:
        """What dbt's profile and project are rendered from: the target and the platform's settings."""
        settings = sorted((k, v) for k, v in os.environ.items() if k.startswith("MLPLATFORM_"))
        rendered = repr((self.target, self.profiles_dir, settings)).encode()
        return hashlib.sha256(rendered).hexdigest()[:16]


PARTIAL_PARSE = "partial_parse.msgpack"
# dbt invocations whose artifacts stay in the project's target folder (run results, manifest, logs)
INVOCATIONS_KEPT = 20
# an invocation folder written to this recently may belong to a dbt still running: never removed
INVOCATION_GRACE = timedelta(hours=1)


def prune_invocations(target_dir: Path, now: datetime | None = None) -> list[Path]:
    """Remove the dagster-dbt invocation folders of `target_dir` (those holding a `manifest.json`) beyond
    the newest `INVOCATIONS_KEPT`, except any written to within `INVOCATION_GRACE`; the removed folders.

    A daily loop runs dbt a few times a day: a year of folders would take gigabytes. dbt's own files in
    the target folder, and folders without a manifest, are not touched; a folder that cannot be removed
    (gone already, removed by another run, not ours to remove) is left to the next invocation."""
    try:
        invocations = [d for d in target_dir.iterdir() if (d / "manifest.json").is_file()]
        stamps = {d: d.stat().st_mtime for d in invocations}
    except OSError:
        return []
    cutoff = ((now or datetime.now(UTC)) - INVOCATION_GRACE).timestamp()
    newest_first = sorted(stamps, key=stamps.__getitem__, reverse=True)
    removed = []
    for folder in newest_first[INVOCATIONS_KEPT:]:
        if stamps[folder] < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            if not folder.exists():
                removed.append(folder)
    return removed


def reuse_partial_parse(cache_dir: Path, target_path: Path, environment: str) -> None:
    """Give the invocation about to write to `target_path` the partial parse the last invocation in
    `environment` wrote, and point the next one at this invocation's. dbt checks the file itself (the
    profile, the project's files, its own version) and parses again what changed: this only spares it
    the whole parse. A cache that cannot be written (a read-only image) costs nothing but the reuse."""
    pointer = cache_dir / f"partial-parse-{environment}"
    try:
        if pointer.is_file() and (previous := Path(pointer.read_text()) / PARTIAL_PARSE).is_file():
            target_path.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(previous, target_path / PARTIAL_PARSE)
        cache_dir.mkdir(parents=True, exist_ok=True)
        pointer.write_text(str(target_path))
    except OSError:
        return


def dbt_command(project_dir, **settings) -> DbtCommand:
    """`DbtCommand` for `project_dir`, running `DBT_EXECUTABLE` tied to its caller (dagster-dbt's constructor
    passes its own default executable, `dbt` on PATH, unless one is given)."""
    tied_dbt = ["-I", "-S", tied_command.__file__, DBT_EXECUTABLE]
    return DbtCommand(
        project_dir=project_dir, dbt_executable=sys.executable, global_config_flags=tied_dbt, **settings
    )


def installed_dbt_core(dbt_executable: Path) -> Version:
    """The version of dbt-core in the environment `dbt_executable` belongs to (`<env>/bin/dbt`)."""
    environment = dbt_executable.resolve().parent.parent
    site_packages = [str(p) for p in environment.glob("lib/python*/site-packages")]
    for distribution in distributions(path=site_packages):
        if distribution.metadata["Name"] == "dbt-core":
            return Version(distribution.version)
    raise FileNotFoundError(f"no dbt-core installed in {environment} (the environment of {dbt_executable})")
