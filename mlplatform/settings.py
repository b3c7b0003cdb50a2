"""Where things live. Paths only: which services to use is decided in `profiles.py`."""

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
FEATURE_REPO_DIR = PROJECT_ROOT / "feature_repo"


def state_dir() -> Path:
    """The folder holding all local state (landing zone, warehouse, Dagster storage)."""
    return Path(os.environ.get("MLPLATFORM_STATE_DIR", PROJECT_ROOT / "state")).resolve()
