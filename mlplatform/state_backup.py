"""Backup and restore of the local profile's state folder (landing zone, quarantine, warehouse, MLflow,
Feast, Dagster storage, audit trail, prediction log): one `.tar.gz`, restorable anywhere.

A restored (or copied) state folder re-roots itself on first use: MLflow artifact locations and Feast
file sources are rewritten to the folder in use (`ModelRegistry.reroot_artifacts`,
`LocalFeastFeatureStore.store`), so it never reads or writes the original. Stop `make dev` (and the API)
before a backup: SQLite and DuckDB files are copied as they are on disk.
"""

import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ARCHIVE_ROOT = "state"


class StateError(RuntimeError):
    """A backup or restore that cannot be done as asked; nothing was changed."""


def backup_state(state: Path, archive: Path) -> int:
    """Write `state` into `archive` (.tar.gz); returns the number of files. Refuses to overwrite."""
    if not state.is_dir():
        raise StateError(f"no state folder at {state}: nothing to back up")
    if archive.exists():
        raise StateError(f"{archive} exists: choose a new file name (a backup never overwrites one)")
    if archive.resolve().is_relative_to(state.resolve()):
        raise StateError(f"{archive} is inside the state folder {state}: write the backup elsewhere")
    archive.parent.mkdir(parents=True, exist_ok=True)
    files = 0
    partial = archive.with_name(archive.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        for path in sorted(state.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=f"{ARCHIVE_ROOT}/{path.relative_to(state)}", recursive=False)
                files += 1
    partial.rename(archive)
    return files


def restore_state(archive: Path, state: Path, *, force: bool = False) -> Path | None:
    """Unpack `archive` as the state folder `state`, then re-root it (see the module docstring).

    An existing, non-empty state is kept aside (`<state>.replaced-<time>`) with `force`, refused without.
    Returns where the previous state was moved, if anywhere."""
    if not archive.is_file():
        raise StateError(f"no backup file at {archive}")
    if state.exists() and any(state.iterdir()) and not force:
        raise StateError(
            f"{state} is not empty: pass --force to restore over it (it is kept aside, not deleted)"
        )
    state.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".restore-", dir=state.parent) as scratch:
        with tarfile.open(archive, "r:gz") as tar:
            names = tar.getnames()
            if not names or any(n != ARCHIVE_ROOT and not n.startswith(f"{ARCHIVE_ROOT}/") for n in names):
                raise StateError(f"{archive} is not an mlplatform state backup")
            tar.extractall(scratch, filter="data")  # no absolute paths, links or `..` out of scratch
        kept = None
        if state.exists():
            if any(state.iterdir()):
                kept = state.with_name(f"{state.name}.replaced-{datetime.now(UTC):%Y%m%dT%H%M%S}")
                state.rename(kept)
            else:
                state.rmdir()
        (Path(scratch) / ARCHIVE_ROOT).rename(state)
    reroot(state)
    return kept


def reroot(state: Path) -> None:
    """Point MLflow artifact locations and Feast file sources at `state` now (else: on first use)."""
    from mlplatform.profiles import build_resources
    from mlplatform.resources import FeastFeatureStore, ModelRegistry

    resources = build_resources(profile="local", state=state, with_dbt=False)
    registry, features = resources["model_registry"], resources["feature_store"]
    if not isinstance(registry, ModelRegistry) or not isinstance(features, FeastFeatureStore):
        raise TypeError("the local profile's resources are not a ModelRegistry and a FeastFeatureStore")
    registry.reroot_artifacts()
    features.store()
