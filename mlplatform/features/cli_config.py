"""Writes feature_repo/feature_store.yaml, the `feast` CLI's configuration, from the code that configures
Feast for Dagster (`LocalFeastFeatureStore`): the CLI and Dagster then name the same registry, stores and
paths, so `feast plan` after a Dagster run reports no change. `make env` runs it on its checkout's folder:
`python -m mlplatform.features.cli_config feature_repo`."""

import sys
from pathlib import Path
from typing import cast

from mlplatform.profiles import build_resources
from mlplatform.resources import FeastFeatureStore
from mlplatform.settings import state_dir

HEADER = (
    "# Written by `make env` (mlplatform/features/cli_config.py) for {state}: edit the code, not this file.\n"
)


def write_cli_config(feature_repo: Path) -> Path:
    """The local profile's configuration, for the state folder in force (MLPLATFORM_STATE_DIR or state/)."""
    feature_store = cast(FeastFeatureStore, build_resources(profile="local", with_dbt=False)["feature_store"])
    written = feature_store.write_serving_repo(feature_repo) / "feature_store.yaml"
    written.write_text(HEADER.format(state=state_dir()) + written.read_text())
    return written


if __name__ == "__main__":
    write_cli_config(Path(sys.argv[1]))
